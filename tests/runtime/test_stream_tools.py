"""Event lists and event-camera recordings as board inputs, the progress bar, rate-coded accuracy and rasters of
`nmcompile run`, and the pytest plugin a lab runs on its own board (ref:// stands in for the board here)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nmcompile.errors import ShapeError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.runtime.board import open_board
from nmcompile.runtime.events import bin_recording, events_to_spikes, spikes_to_events
from nmcompile.runtime.progress import ProgressBar, run_in_slices
from nmcompile.runtime.readout import accuracy, predictions

ROOT = Path(__file__).resolve().parents[2]


def sensor_net(rng) -> Graph:
    g = Graph("dvs")
    g.add("in", O.Input(shape=(2, 4, 5)))
    g.add("flat", O.Flatten())
    g.add("fc", O.Linear(weight=rng.normal(0.3, 0.5, (6, 40))))
    g.add("lif", O.LIF(shape=(6,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "flat", "fc", "lif", "out")
    return g


def test_events_round_trip_and_are_checked():
    x = (np.random.default_rng(0).random((9, 1, 7)) < 0.3).astype(np.int8)
    events = spikes_to_events(x)
    assert events.shape[1] == 2 and np.array_equal(events_to_spikes(events, 9, 7), x)
    with pytest.raises(ShapeError, match="outside 0..6"):
        events_to_spikes([[0, 7]], 9, 7)


def test_a_recording_binned_by_the_documented_rule_streams_like_frames():
    """x, y, p, t (us) as tonic writes them; step = floor(t / step_us), channel = p*H*W + y*W + x (ToFrame's
    [P, H, W] layout); a repeated pixel in a step is one spike."""
    rng = np.random.default_rng(1)
    rec = np.zeros(300, dtype=[("x", "<i2"), ("y", "<i2"), ("p", "<i1"), ("t", "<i8")])
    rec["x"], rec["y"], rec["p"] = rng.integers(0, 5, 300), rng.integers(0, 4, 300), rng.integers(0, 2, 300)
    rec["t"] = np.sort(rng.integers(0, 20_000, 300))
    frames = np.zeros((20, 1, 2, 4, 5), dtype=np.int8)
    frames[rec["t"] // 1000, 0, rec["p"], rec["y"], rec["x"]] = 1
    chunks = list(bin_recording(rec, sensor_size=(5, 4, 2), step_us=1000, steps=20, chunk_steps=8))
    assert [c.steps for c in chunks] == [8, 8, 4]
    g = sensor_net(rng)
    with open_board("ref://") as board:
        board.load(g)
        expected = board.run(frames)
        streamed = np.concatenate(list(board.stream(chunks)))
    np.testing.assert_array_equal(streamed, expected)
    bad = rec.copy()
    bad["x"][0] = 5
    with pytest.raises(ShapeError, match="outside sensor_size"):
        list(bin_recording(bad, (5, 4, 2), 1000))


def test_progress_bar_and_slices(tmp_path):
    rng = np.random.default_rng(2)
    g = sensor_net(rng)
    x = (rng.random((12, 7, 2, 4, 5)) < 0.3).astype(np.int8)
    out = io.StringIO()
    bar = ProgressBar(12 * 7, stream=out, enabled=True)
    with open_board("ref://") as board:
        board.load(g)
        sliced = run_in_slices(board, x, bar, updates=3)["out"]
        np.testing.assert_array_equal(sliced, board.run_all(x)["out"])
    bar.close()
    assert out.getvalue().count("\r") >= 3 and "84/84 sample-steps" in out.getvalue() and "ETA" in out.getvalue()
    assert not ProgressBar(5, stream=io.StringIO()).enabled             # not a terminal: silent
    one = ProgressBar(12, stream=io.StringIO(), enabled=True)             # one sample: streamed in slices of steps
    with open_board("ref://") as board:
        board.load(g)
        streamed = run_in_slices(board, x[:, :1], one, updates=4)["out"]
        np.testing.assert_array_equal(streamed.reshape(12, 1, -1), board.run(x[:, :1]))
    assert one.stream.getvalue().count("\r") == 4


def test_readout_is_rate_coded_argmax():
    out = np.zeros((4, 2, 3), dtype=np.int64)
    out[:, 0, 2] = 1
    out[:2, 1, 0] = out[:2, 1, 1] = 1                                  # a tie goes to the lowest index
    assert predictions(out).tolist() == [2, 0] and accuracy(out, np.array([2, 1])) == (1, 2)


def test_run_prints_accuracy_and_draws_rasters(tmp_path):
    rng = np.random.default_rng(3)
    source = save(sensor_net(rng), tmp_path / "dvs.nmir")
    x = (rng.random((15, 4, 2, 4, 5)) < 0.3).astype(np.int8)
    np.savez(tmp_path / "in.npz", spikes=x)
    with open_board("ref://") as board:
        board.load(sensor_net(np.random.default_rng(3)))
        labels = predictions(board.run(x))
    labels[0] = (labels[0] + 1) % 6
    np.save(tmp_path / "labels.npy", labels)
    cli = [sys.executable, "-m", "nmcompile", "run", str(source), "--input", str(tmp_path / "in.npz"),
           "--output", str(tmp_path / "out.npz")]
    done = subprocess.run([*cli, "--labels", str(tmp_path / "labels.npy"), "--plot", str(tmp_path / "r.png")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "accuracy 3/4 = 75.00%" in done.stdout and (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "\r" not in done.stderr                                       # no bar when stderr is not a terminal
    np.save(tmp_path / "short.npy", labels[:2])
    bad = subprocess.run([*cli, "--labels", str(tmp_path / "short.npy")], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.strip().endswith("2 labels for 4 samples")


def test_the_pytest_plugin_runs_the_conformance_suite_on_a_board(tmp_path):
    from nmcompile.api import CompileRequest, compile_network

    rng = np.random.default_rng(4)
    g = Graph("t")
    g.add("in", O.Input(shape=(6,)))
    g.add("fc", O.Linear(weight=rng.normal(0.5, 0.5, (4, 6))))
    g.add("lif", O.LIF(shape=(4,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(4,)))
    g.chain("in", "fc", "lif", "out")
    art = tmp_path / "art"
    compile_network(CompileRequest(source=save(g, tmp_path / "t.nmir"), target="fpga", out=art,
                                   reference_samples=2), log=lambda m: None)
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "nmcompile.testing.pytest_plugin", "--pyargs",
            "nmcompile.testing.test_board_conformance", "-p", "no:cacheprovider"]
    done = subprocess.run([*base, "--board", "ref://", "--artifact", str(art)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr
    skipped = subprocess.run(base, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert skipped.returncode == 0 and "2 skipped" in skipped.stdout and "needs a board" in skipped.stdout


def test_run_shows_a_progress_bar_on_a_terminal(tmp_path):
    """stderr on a pseudo-terminal: the bar (sample-steps, their rate, ETA) is drawn; the output file is the
    same."""
    import pty

    rng = np.random.default_rng(5)
    source = save(sensor_net(rng), tmp_path / "dvs.nmir")
    np.savez(tmp_path / "in.npz", spikes=(rng.random((20, 6, 2, 4, 5)) < 0.3).astype(np.int8))
    master, slave = pty.openpty()
    try:
        try:
            done = subprocess.run([sys.executable, "-m", "nmcompile", "run", str(source), "--input",
                                   str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz")],
                                  stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120, cwd=ROOT)
        finally:
            os.close(slave)
        shown = b""
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            shown += data
    finally:
        os.close(master)
    assert done.returncode == 0
    text = shown.decode()
    assert "120/120 sample-steps" in text and "sample-steps/s" in text and "ETA" in text and "\r" in text
