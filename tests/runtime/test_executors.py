"""Executors and sharded runs: serial, a local process pool and a Dask cluster give the arrays of one run_all."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from nmcompile.errors import BoardError, NmcWarning, ToolMissingError, UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.runtime.board import open_board
from nmcompile.runtime.executors import (
    ExecutorError,
    SerialExecutor,
    open_executor,
    run_sharded,
    run_shards,
    shard_bounds,
)
from nmcompile.runtime.hil import verify_artifact
from tests.backends.networks import compile_graph, dense, recurrent

ROOT = Path(__file__).resolve().parents[2]


def nmcompile(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmcompile", *args], capture_output=True, text=True, cwd=ROOT)


# -- jobs (top level: pickled by reference to worker processes) ---------------------------------------------------

def square_or_fail(x: int) -> int:
    if x == 3:
        raise BoardError(f"no answer from the board for item {x}\n(second line of a long message)")
    return x * x


def crash(x: int) -> int:
    raise KeyError(x)


def stdp_network(rng) -> Graph:
    g = Graph("stdp")
    g.add("in", O.Input(shape=(16,)))
    g.add("fc1", dense(rng, 16, 12, mean=0.2, std=0.4))
    g.add("l1", O.LIF(shape=(12,), beta=0.9, threshold=1.0))
    g.add("fc2", dense(rng, 12, 6, mean=0.3, std=0.4))
    g.add("l2", O.LIF(shape=(6,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc1", "l1", "fc2", "l2", "out")
    return g


# -- fixtures ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """A recurrent network compiled for loihi2 and a network with two STDP projections compiled for fpga."""
    work = tmp_path_factory.mktemp("executors")
    rng = np.random.default_rng(7)
    (work / "rnn").mkdir()
    (work / "stdp").mkdir()
    with warnings.catch_warnings():           # loihi2 writes no lava-dl netx file for a recurrent layer: expected
        warnings.filterwarnings("ignore", "model.net not written", NmcWarning)
        rnn = compile_graph(recurrent(rng), work / "rnn", (rng.random((30, 3, 12)) < 0.3).astype(np.int64),
                            "loihi2", reference_samples=3)
    stdp = compile_graph(stdp_network(rng), work / "stdp", (rng.random((40, 2, 16)) < 0.35).astype(np.int64), "fpga",
                         reference_samples=2, stdp={"fc1": {"ltp_shift": 4, "ltd_shift": 4}, "fc2": {}})
    return {"rnn": rnn, "stdp": stdp}


@pytest.fixture(scope="module")
def dask_cluster():
    """A two-process Dask cluster on this machine, shut down at the end of the module."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                                       silence_logs=logging.ERROR)
    try:
        yield cluster.scheduler_address.replace("tcp://", "dask://")
    finally:
        cluster.close()


def inputs(seed: int, batch: int, width: int, steps: int = 25) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, batch, width)) < 0.3).astype(np.int64)


def run_all(source: Path, spikes: np.ndarray) -> dict[str, np.ndarray]:
    with open_board("ref://") as board:
        board.load(source)
        return board.run_all(spikes)


def assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(got) == list(expected)
    for name in expected:
        assert got[name].shape == expected[name].shape, name
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


# -- the premise: on ref:// every sample of a run_all starts fresh and is independent ------------------------------

def test_ref_run_all_resets_per_call_and_samples_are_independent(artifacts):
    x = inputs(1, 5, 12)
    with open_board("ref://") as board:
        board.load(artifacts["rnn"])
        first = board.run_all(x)
        streamed = board.stream([x[:10], x[10:17]])    # leave a stream half-way: its state must not leak
        next(streamed)
        assert_same(board.run_all(x), first)
        halves = [board.run_all(x[:, :2]), board.run_all(x[:, 2:])]
    assert_same({k: np.concatenate([h[k] for h in halves], axis=1) for k in first}, first)

    x = inputs(2, 4, 16)                                    # learning: each sample learns on its own copy
    with open_board("ref://") as board:
        board.load(artifacts["stdp"])
        first = board.run_all(x)
        assert_same(board.run_all(x), first)
        halves = [board.run_all(x[:, :1]), board.run_all(x[:, 1:])]
    assert {"weight:fc1", "weight:fc2"} <= set(first) and first["weight:fc1"].shape[0] == 4
    assert_same({k: np.concatenate([h[k] for h in halves], axis=0 if k.startswith("weight:") else 1) for k in first},
                first)


def test_shard_bounds_are_contiguous_and_balanced():
    assert shard_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert shard_bounds(2, 5) == [(0, 1), (1, 2)]          # never an empty shard while there are samples
    assert shard_bounds(0, 4) == [(0, 0)]
    assert shard_bounds(7, 1) == [(0, 7)]


# -- serial, local://2 and a Dask cluster give the arrays of one run_all -------------------------------------------

def test_serial_and_local_pool_equal_one_run(artifacts):
    rnn_x, stdp_x = inputs(3, 7, 12), inputs(4, 5, 16)
    rnn, stdp = run_all(artifacts["rnn"], rnn_x), run_all(artifacts["stdp"], stdp_x)
    messages: list[str] = []
    with open_executor(None) as serial:
        assert isinstance(serial, SerialExecutor) and serial.workers == 1
        assert_same(run_sharded("ref://", {}, artifacts["rnn"], rnn_x, serial), rnn)
        assert_same(run_sharded("ref://", {}, artifacts["stdp"], stdp_x, serial, shards=3), stdp)
    with open_executor("local://2") as local:
        assert local.workers == 2 and local.spec == "local://2"
        run = run_shards("ref://", {}, artifacts["rnn"], rnn_x, local, progress=messages.append)
        assert run.shards == [(0, 4), (4, 7)] and run.latency == 2
        assert_same(run.outputs, rnn)
        assert_same(run_sharded("ref://", {"integer": "1"}, artifacts["stdp"], stdp_x, local, shards=4), stdp)
    assert messages[0] == "running 7 samples on ref:// in 2 shards on local://2 (2 workers)"
    assert {m.split(" done")[0] for m in messages[1:]} == {"shard 1/2 (samples 0..3)", "shard 2/2 (samples 4..6)"}


@pytest.mark.parametrize("spec", ["serial", "local://2", "dask"])
def test_workers_advance_the_progress_bar(artifacts, spec, request):
    """Each worker runs its shard in slices and reports the sample-steps it finished: the bar reaches the total
    in several updates, and the outputs are those of one run."""
    import io

    from nmcompile.runtime.progress import ProgressBar

    if spec == "dask":
        spec = request.getfixturevalue("dask_cluster")
    x = inputs(12, 9, 12)
    stream = io.StringIO()
    bar = ProgressBar(x.shape[0] * x.shape[1], stream=stream, enabled=True)
    with open_executor(spec) as executor:
        run = run_shards("ref://", {}, artifacts["rnn"], x, executor, bar=bar)
    assert_same(run.outputs, run_all(artifacts["rnn"], x))
    lines = stream.getvalue().split("\r")[1:]
    assert bar.done == 25 * 9 and lines[-1].startswith(f"[{'#' * 30}] 225/225 sample-steps")
    assert len(lines) >= 3, "progress came in one piece"       # per shard: slices of 1, 2 and the rest
    silent = ProgressBar(225, stream=io.StringIO())                # not a terminal: off, and no slicing
    with open_executor("serial") as executor:
        run_shards("ref://", {}, artifacts["rnn"], x, executor, bar=silent)
    assert silent.stream.getvalue() == ""


def test_run_with_a_local_pool_shows_the_bar_on_a_terminal_only(artifacts, tmp_path):
    import os
    import pty

    np.savez(tmp_path / "in.npz", spikes=inputs(13, 6, 12).astype(np.uint8))
    command = [sys.executable, "-m", "nmcompile", "run", str(artifacts["rnn"]), "--input", str(tmp_path / "in.npz"),
               "--output", str(tmp_path / "out.npz"), "--jobs", "2"]
    piped = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert piped.returncode == 0 and "steps/s" not in piped.stderr, piped.stderr
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=slave, cwd=ROOT, timeout=300)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "150/150 sample-steps" in text, seen[-500:]     # 25 steps (13 + 12 silent) x 6 samples: named as such
    shard_lines = [line for line in on_screen(text) if "done in" in line]
    assert len(shard_lines) == 2, text
    for line in shard_lines:                                # each on a line of its own, never glued onto the bar
        assert re.fullmatch(r"shard [12]/2 \(samples \d\.\.\d\) done in [\d.]+ s", line), repr(line)


def on_screen(text: str) -> list[str]:
    """The lines a terminal shows for `text`: a carriage return moves to column 0, later characters overwrite."""
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        row: list[str] = []
        column = 0
        for char in raw:
            if char == "\r":
                column = 0
                continue
            if column < len(row):
                row[column] = char
            else:
                row.append(char)
            column += 1
        lines.append("".join(row).rstrip())
    return lines


def test_a_message_above_the_bar_blanks_its_line_first():
    import io

    from nmcompile.runtime.progress import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(5000, stream=stream, enabled=True)
    bar.update(2500)
    bar.above(lambda message: stream.write(message + "\n"))("shard 1/2 (samples 0..99) done in 1.0 s")
    bar.update(2500)
    bar.close()
    shown = on_screen(stream.getvalue())
    assert shown[0] == "shard 1/2 (samples 0..99) done in 1.0 s"
    assert shown[1].startswith(f"[{'#' * 30}] 5000/5000 sample-steps") and shown[2:] == [""]


def test_dask_cluster_equals_one_run(artifacts, dask_cluster):
    rnn_x, stdp_x = inputs(5, 6, 12), inputs(6, 3, 16)
    with open_executor(dask_cluster) as cluster:
        assert cluster.workers == 2 and cluster.remote
        assert_same(run_sharded("ref://", {}, artifacts["rnn"], rnn_x, cluster), run_all(artifacts["rnn"], rnn_x))
        assert_same(run_sharded("ref://", {}, artifacts["stdp"], stdp_x, cluster, shards=3),
                    run_all(artifacts["stdp"], stdp_x))
        result = verify_artifact(artifacts["stdp"], "ref://", executor=cluster)
        assert result.passed, result.lines()
        assert [c.name for c in result.checks] == ["output out", "weights fc1", "weights fc2"]
        with pytest.raises(BoardError, match=r"^job 2/3: no answer from the board for item 3 \(second line"):
            cluster.map(square_or_fail, [1, 3, 4])
        assert cluster.map(square_or_fail, [4, 1, 2]) == [16, 1, 4]


# -- errors ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [None, "local://2"])
def test_a_job_raising_nmc_error_comes_back_as_one_line_naming_it(spec):
    with open_executor(spec) as executor:
        assert executor.map(square_or_fail, [2, 0, 5]) == [4, 0, 25]
        with pytest.raises(BoardError) as info:
            executor.map(square_or_fail, [1, 2, 3, 4], labels=["a", "b", "shard 3/4 (samples 6..8)", "d"])
        assert str(info.value) == ("shard 3/4 (samples 6..8): no answer from the board for item 3 (second line of a "
                                   "long message)")
        with pytest.raises(KeyError) as bug:                 # not a user error: re-raised, the job in a note
            executor.map(crash, [1])
        assert "in job 1/1" in " ".join(bug.value.__notes__)


def test_a_failing_shard_names_itself(artifacts):
    with open_executor("local://2") as local, pytest.raises(UnsupportedError) as info:
        run_sharded("verilator://", {}, artifacts["rnn"], inputs(8, 4, 12), local)
    assert str(info.value).startswith("shard ") and "samples" in str(info.value)
    assert "verilator:// runs artifacts compiled with --target fpga" in str(info.value)
    with open_executor("local://2") as local, pytest.raises(UnsupportedError, match="names one device"):
        run_sharded("serial:///dev/ttyUSB9", {}, artifacts["stdp"], inputs(8, 4, 16), local)
    with pytest.raises(UnsupportedError, match="unknown board scheme 'nope://'"):
        run_sharded("nope://", {}, artifacts["rnn"], inputs(8, 4, 12), SerialExecutor())
    with pytest.raises(UnsupportedError, match="an opened board runs in this process"):
        verify_artifact(artifacts["rnn"], "ref://", board=open_board("ref://"), executor="local://2")


def test_a_script_without_a_main_guard_is_named_when_its_workers_die(tmp_path):
    """local:// spawns its workers, which re-run an unguarded script and die starting an executor of their own."""
    script = tmp_path / "unguarded.py"
    script.write_text("from nmcompile.runtime.executors import open_executor\n"
                      "with open_executor('local://2') as pool:\n"
                      "    pool.map(abs, [-1, -2])\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode != 0
    assert "a worker process of local://2 died" in run.stderr and "if __name__ ==" in run.stderr


@pytest.mark.parametrize(("spec", "message"), [
    ("local://0", "the number of workers must be a positive integer"),
    ("local://many", "the number of workers must be a positive integer"),
    ("ray://head:10001", "unknown executor 'ray://head:10001'; use serial"),
    ("dask://", "write dask://HOST:PORT"),
    ("dask://host:port", "the port must be a number"),
    ("dask://host:8786?retries=3", "dask:// has no option 'retries'; accepted: timeout=SECONDS"),
])
def test_executor_specs_are_checked(spec, message):
    with pytest.raises(UnsupportedError, match=message):
        open_executor(spec)


def test_dask_not_installed_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)     # import distributed -> ImportError
    with pytest.raises(ToolMissingError, match=r"pip install 'nmcompile\[cluster\]'"):
        open_executor("dask://127.0.0.1:8786")


def test_a_silent_dask_address_is_one_error_naming_it():
    import socket

    with socket.socket() as silent:                      # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        start = time.perf_counter()
        with pytest.raises(ExecutorError, match=f"no Dask scheduler answered at 127.0.0.1:{port} within 1 s"):
            open_executor(f"dask://127.0.0.1:{port}?timeout=1")
        assert time.perf_counter() - start < 5


def test_a_dask_scheduler_without_workers_is_one_error():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        address = cluster.scheduler_address.replace("tcp://", "")
        with pytest.raises(ExecutorError, match=f"the Dask scheduler at {address} has no workers .*dask worker"):
            open_executor(f"dask://{address}?timeout=1")
    finally:
        cluster.close()


# -- the command line --------------------------------------------------------------------------------------------

def test_verify_with_a_local_pool(artifacts, tmp_path):
    proc = nmcompile("verify", str(artifacts["rnn"]), "--board", "ref://", "--executor", "local://2",
                     "--junit", str(tmp_path / "r.xml"))
    assert proc.returncode == 0, proc.stderr
    assert "PASS output out: 32 steps x 3 samples x 6 neurons equal" in proc.stdout
    assert "running 3 samples on ref:// in 2 shards on local://2 (2 workers)" in proc.stderr
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"


@pytest.mark.parametrize("network", ["artifact", "float source"])
def test_run_with_a_local_pool_writes_the_same_spikes(artifacts, tmp_path, network):
    source = artifacts["rnn"] if network == "artifact" else artifacts["rnn"].parent / "rnn.nmir"
    np.savez(tmp_path / "in.npz", spikes=inputs(9, 5, 12).astype(np.uint8))
    common = ("run", str(source), "--input", str(tmp_path / "in.npz"), "--output")
    plain = nmcompile(*common, str(tmp_path / "a.npz"))
    sharded = nmcompile(*common, str(tmp_path / "b.npz"), "--executor", "local://2")
    assert plain.returncode == 0 and sharded.returncode == 0, plain.stderr + sharded.stderr
    assert "on ref:// (2 shards on local://2)" in sharded.stdout
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["spikes"].shape == (25, 5, 6) and a["latency"] == b["latency"]
    np.testing.assert_array_equal(a["spikes"], b["spikes"])


def test_run_with_jobs_and_over_a_dask_cluster_writes_the_same_spikes(artifacts, tmp_path, dask_cluster):
    """`run --jobs 2` (a local pool) and `run --executor dask://...` (a LocalCluster) equal one in-process run."""
    np.savez(tmp_path / "in.npz", spikes=inputs(11, 6, 12).astype(np.uint8))
    common = ("run", str(artifacts["rnn"].parent / "rnn.nmir"), "--input", str(tmp_path / "in.npz"), "--output")
    plain = nmcompile(*common, str(tmp_path / "a.npz"))
    jobs = nmcompile(*common, str(tmp_path / "b.npz"), "--jobs", "2")
    dask = nmcompile(*common, str(tmp_path / "c.npz"), "--executor", dask_cluster)
    for proc in (plain, jobs, dask):
        assert proc.returncode == 0, proc.stderr
    assert "(2 shards on local://2)" in jobs.stdout and f"on {dask_cluster})" in dask.stdout
    expected = np.load(tmp_path / "a.npz")["spikes"]
    for name in ("b.npz", "c.npz"):
        np.testing.assert_array_equal(np.load(tmp_path / name)["spikes"], expected)
    both = nmcompile(*common, str(tmp_path / "d.npz"), "--jobs", "2", "--executor", "local://2")
    assert both.returncode == 2 and "give either --jobs or --executor, not both" in both.stderr


def test_a_dask_address_with_nothing_listening_is_one_line_and_exit_1(artifacts):
    import socket

    with socket.socket() as probe:                       # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    proc = nmcompile("verify", str(artifacts["rnn"]), "--board", "ref://", "--executor", f"dask://127.0.0.1:{port}")
    assert time.perf_counter() - start < 10
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: no Dask scheduler answers at 127.0.0.1:{port} (connection refused); "
                                  "start one with `dask scheduler")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_run_and_verify_help_teach_the_executor():
    for command in ("run", "verify"):
        text = " ".join(nmcompile(command, "--help").stdout.split())
        for part in ("--executor SPEC", "serial (the default", "local://N", "dask://HOST:PORT", "dask scheduler",
                     "contiguous shards"):
            assert part in text, (command, part)


def test_qemu_network_sharded_over_a_dask_cluster(dask_cluster, tmp_path):
    """A spinnaker2 network on several PEs under QEMU, its samples sharded over the two Dask workers (each runs
    the whole PE network for its samples), equals one qemu:// run and the reference."""
    from tests.backends.networks import mlp

    rng = np.random.default_rng(3)
    art = compile_graph(mlp(rng), tmp_path, (rng.random((20, 2, 20)) < 0.3).astype(np.int64), "spinnaker2",
                        target_overrides={"neurons_per_core": 12})
    x = inputs(8, 4, 20)
    with open_board("qemu://") as board:
        board.load(art)
        one = board.run_all(x)
    with open_executor(dask_cluster) as cluster:
        assert_same(run_sharded("qemu://", {}, art, x, cluster), one)
    assert_same(one, run_all(art, x))


def test_qemu_pes_as_jobs_of_a_dask_cluster(dask_cluster, tmp_path):
    """qemu://?pes=dask://...: one network's PEs (not its samples) spread over the cluster's workers."""
    from tests.backends.networks import recurrent

    rng = np.random.default_rng(5)
    art = compile_graph(recurrent(rng, hidden=24), tmp_path, (rng.random((20, 2, 12)) < 0.3).astype(np.int64),
                        "spinnaker2", target_overrides={"neurons_per_core": 7})
    x = inputs(9, 3, 12)
    with open_board(f"qemu://?pes={dask_cluster}") as board:
        board.load(art)
        assert_same(board.run_all(x), run_all(art, x))
