"""The Board protocol: URL schemes from the backend registry, option checks, the artifact check naming the right
boards, context-manager use, run/run_all/stream on ref://, one error type for board failures (no hardware needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nmcompile.api import CompileRequest, compile_network
from nmcompile.backends import BACKENDS, board_schemes, load_object
from nmcompile.errors import BoardError, NmcError, ShapeError, ToolMissingError, UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.ir.simulate import simulate
from nmcompile.protocols.fpga_uart import ProtocolError
from nmcompile.runtime.board import BaseBoard, RefBoard, known_schemes, open_board
from nmcompile.runtime.lava_board import LavaBoard, lava_python


def tiny(rng) -> Graph:
    g = Graph("tiny")
    g.add("in", O.Input(shape=(12,)))
    g.add("fc", O.Linear(weight=rng.normal(0.4, 0.5, (8, 12))))
    g.add("lif", O.LIF(shape=(8,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(8,)))
    g.chain("in", "fc", "lif", "out")
    return g


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """The tiny network compiled for loihi2 and fpga, for spinnaker2 (passes only) and a loihi2 compile stopped
    before emitting."""
    work = tmp_path_factory.mktemp("boards")
    source = save(tiny(np.random.default_rng(0)), work / "tiny.nmir")
    out = {}
    for key, target, stop in [("loihi2", "loihi2", None), ("fpga", "fpga", None),
                              ("spinnaker2", "spinnaker2", "analyse"), ("stopped", "loihi2", "partition")]:
        out[key] = work / key
        compile_network(CompileRequest(source=source, target=target, out=out[key], stop_after=stop,
                                       reference_samples=2), log=lambda m: None)
    return out


def test_schemes_come_from_the_backend_registry():
    schemes = board_schemes()
    assert {"lava", "verilator", "serial"} <= set(schemes)
    assert set(known_schemes()) == {"ref", *schemes}
    for scheme, (target, spec) in schemes.items():
        cls = load_object(spec)
        assert issubclass(cls, BaseBoard) and cls.scheme == scheme and cls.target == target, spec
        assert scheme in BACKENDS[target].boards


def test_ref_board_runs_graphs_as_a_context_manager():
    rng = np.random.default_rng(1)
    g = tiny(rng)
    x = (rng.random((20, 3, 12)) < 0.4).astype(np.int8)
    expected = simulate(g, x).output
    with open_board("ref://") as board:
        board.load(g)
        np.testing.assert_array_equal(board.run(x), expected)
        np.testing.assert_array_equal(board.run_all(x)["out"], expected)
        chunks = list(board.stream([x[:7], x[7:]]))
        np.testing.assert_array_equal(np.concatenate(chunks), expected)
    with pytest.raises(NmcError, match="no network loaded"):
        board.run(x)


def test_ref_board_reports_learned_weights(tmp_path):
    """run_all gives every output and the final weights of plastic projections, as hardware boards do."""
    rng = np.random.default_rng(2)
    out = tmp_path / "stdp"
    compile_network(CompileRequest(source=save(tiny(rng), tmp_path / "t.nmir"), target="fpga", out=out,
                                   stdp={"fc": {}}, reference_samples=2), log=lambda m: None)
    from nmcompile import artifact

    inputs, expected = artifact.read(out).reference()
    with open_board("ref://") as board:
        board.load(out)
        got = board.run_all(np.concatenate([inputs, np.zeros((board.latency, *inputs.shape[1:]), inputs.dtype)]))
    assert set(got) == set(expected) and "weight:fc" in got
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize(("url", "message"), [
    ("verilator://?program=2", "verilator://?program=2: 'program' must be 0|1 (options of verilator://: "
                               "program=0|1, blank=0|1)"),
    ("verilator://?speed=fast", "verilator:// has no option 'speed'; accepted: program=0|1, blank=0|1"),
    ("verilator://?program", "malformed options 'program'"),
    ("verilator://?program=0&program=1", "option 'program' is given twice"),
    ("verilator://somehost", "verilator:// takes no host or path"),
    ("serial:///dev/x?baud=abc", "serial://?baud=abc: 'baud' must be N (a positive integer) (options of serial://: "
                                 "baud=N (a positive integer), program=0|1, timeout=SECONDS (a positive number))"),
    ("serial:///dev/x?baud=0", "'baud' must be N (a positive integer)"),
    ("serial:///dev/x?timeout=-1", "'timeout' must be SECONDS"),
    ("serial://", "serial:// needs a device path, e.g. serial:///dev/ttyUSB0?baud=1000000"),
    ("serial://dev/ttyUSB0", "the device must be an absolute path after 'serial://' (three slashes)"),
    ("lava://?states=yes", "'states' must be 0|1"),
    ("lava://?program=0", "lava:// has no option 'program'; accepted: states=0|1"),
    ("ref://?precision=float16", "'precision' must be float64|float32"),
    ("smoke://", "unknown board scheme 'smoke://'; known: ref://, lava://, qemu://, udp://, verilator://, serial://"),
    ("verilator", "is not a URL; known schemes: ref://"),
])
def test_malformed_urls_are_refused_naming_the_option(url, message):
    with pytest.raises(UnsupportedError) as info:
        open_board(url)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_valid_options_reach_the_board():
    board = open_board("serial:///dev/ttyUSB3?baud=115200&program=0&timeout=2.5")
    assert (board.port, board.baud, board.program, board.timeout) == ("/dev/ttyUSB3", 115200, False, 2.5)
    board = open_board("verilator://?blank=1")
    assert board.blank and board.program
    assert open_board("lava://?states=1").states
    assert open_board("ref://?integer=1").integer


@pytest.mark.parametrize(("url", "kind", "message"), [
    ("verilator://", "loihi2", "verilator:// runs artifacts compiled with --target fpga; this one is for loihi2: "
                               "run it on lava:// (or ref:// for its integer reference)"),
    ("serial:///dev/null", "loihi2", "serial:// runs artifacts compiled with --target fpga; this one is for loihi2"),
    ("lava://", "fpga", "lava:// runs artifacts compiled with --target loihi2; this one is for fpga: run it on "
                        "verilator:// or serial:// (or ref:// for its integer reference)"),
    ("lava://", "spinnaker2", "this one is for spinnaker2: run it on qemu:// or udp:// (or ref:// for its integer "
                              "reference)"),
    ("lava://", "stopped", "lava:// needs the artifact's lava_network.py, network.npz, but its compile stopped after "
                           "partition (before emitting target files)"),
])
def test_an_artifact_of_another_target_names_the_boards_that_run_it(artifacts, url, kind, message):
    with open_board(url) as board, pytest.raises(UnsupportedError) as info:
        board.load(artifacts[kind])
    assert message in str(info.value)


def test_hardware_boards_load_artifacts_only(artifacts, tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(UnsupportedError, match=r"lava:// loads compiled artifact directories .* not a Graph"):
        LavaBoard().load(tiny(rng))
    network = save(tiny(rng), tmp_path / "t.nmir")
    with pytest.raises(UnsupportedError, match="not network files; ref:// simulates network files"):
        open_board("verilator://").load(network)


def test_every_board_refuses_wrong_input_shapes(artifacts):
    board = LavaBoard()
    board.load(artifacts["loihi2"])
    with pytest.raises(ShapeError, match=r"spikes have 5 values per step but the network expects shape \(12,\)"):
        board.run(np.zeros((4, 1, 5)))
    with pytest.raises(ShapeError, match="spikes must be"):
        board.run(np.zeros((4, 12)))


def fake_python(tmp_path: Path, body: str) -> Path:
    """An 'interpreter' that passes the `import lava.magma` probe and then runs `body` (shell)."""
    script = tmp_path / "python"
    script.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then exit 0; fi\n{body}\n')
    script.chmod(0o755)
    return script


def test_lava_failures_raise_board_error(artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("NMC_LAVA_PYTHON", str(fake_python(tmp_path, 'echo "lava exploded" >&2; exit 7')))
    with open_board("lava://") as board:
        board.load(artifacts["loihi2"])
        with pytest.raises(BoardError, match=r"Lava run failed \(exit status 7\): lava exploded"):
            board.run(np.zeros((4, 1, 12)))
    assert issubclass(ProtocolError, BoardError)


def test_lava_runs_the_installed_runner_not_the_artifacts(artifacts, tmp_path, monkeypatch):
    """lava:// executes nmcompile/backends/loihi/lava_runner.py from the package, whatever run_lava.py holds."""
    log = tmp_path / "argv"
    monkeypatch.setenv("NMC_LAVA_PYTHON", str(fake_python(tmp_path, f'echo "$1" > {log}; exit 1')))
    with open_board("lava://") as board:
        board.load(artifacts["loihi2"])
        with pytest.raises(BoardError):
            board.run(np.zeros((4, 1, 12)))
    runner = Path(log.read_text().strip())
    import nmcompile.backends.loihi as loihi

    assert runner == Path(loihi.__file__).parent / "lava_runner.py"


def test_missing_lava_says_where_it_looked_and_how_to_set_it_up(tmp_path, monkeypatch):
    monkeypatch.delenv("NMC_LAVA_PYTHON", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with pytest.raises(ToolMissingError) as info:
        lava_python()
    text = str(info.value)
    venv = tmp_path / "data" / "nmcompile" / "lava-venv"
    assert f"looked for {venv}/bin/python (NMC_LAVA_PYTHON is not set)" in text
    assert "make lava-env" in text and f"python3.10 -m venv {venv}" in text and "lava-nc==0.10.0" in text
    monkeypatch.setenv("NMC_LAVA_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(ToolMissingError, match=f"looked for NMC_LAVA_PYTHON={tmp_path}/nowhere/python"):
        lava_python()


def test_cli_refuses_bad_board_options_in_one_line(artifacts):
    for args, message in [(["verify", str(artifacts["fpga"]), "--board", "verilator://?program=2"],
                           "'program' must be 0|1"),
                          (["verify", str(artifacts["loihi2"]), "--board", "verilator://"],
                           "this one is for loihi2: run it on lava://")]:
        proc = subprocess.run([sys.executable, "-m", "nmcompile", *args], capture_output=True, text=True)
        assert proc.returncode == 1 and proc.stderr.startswith("error:"), proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_ref_board_is_a_base_board():
    assert isinstance(open_board("ref://"), RefBoard) and isinstance(RefBoard(), BaseBoard)
