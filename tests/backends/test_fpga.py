"""FPGA conformance: the emitted Verilog, Verilated and driven through its UART pins, equals the integer reference
bit for bit: output spikes at every step and, with STDP, the learned weights."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.errors import NmcError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.ir.simulate import simulate
from nmcompile.protocols.fpga_uart import Region
from nmcompile.runtime.fpga_board import VerilatorBoard
from nmcompile.runtime.hil import verify_artifact
from tests.backends import networks
from tests.backends.networks import dense, mlp

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2)

pytestmark = pytest.mark.skipif(shutil.which("verilator") is None,
                                reason="verilator is not installed (make installs it with apt-get when run as root)")


def compile_graph(graph: Graph, tmp: Path, calibration: np.ndarray, **request) -> Path:
    return networks.compile_graph(graph, tmp, calibration, "fpga", **request)


def assert_verified(out: Path, url: str = "verilator://", board=None) -> dict:
    result = verify_artifact(out, url, board=board)
    assert result.passed, "\n".join(result.lines())
    _, expected = artifact.read(out).reference()
    for name, ref in expected.items():
        if not name.startswith("weight:"):
            assert ref.any(), "the reference network is silent: the comparison would be vacuous"
    return expected


def test_fpga_project_files(tmp_path):
    """The project an fpga artifact carries (the suite in test_conformance.py runs it under Verilator)."""
    rng = np.random.default_rng(0)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((10, 2, 20)) < 0.3).astype(np.int64))
    files = set(artifact.read(out).manifest["files"])
    assert {"fpga/nmc_top.v", "fpga/program.bin", "fpga/syn.hex", "fpga/synth.ys", "fpga/tb/nmc_harness.cpp"} <= files


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


@pytest.mark.parametrize("seed", SEEDS)
def test_stdp_weights_equal_reference(seed, tmp_path):
    rng = np.random.default_rng(seed)
    calibration = (rng.random((60, 2, 16)) < 0.35).astype(np.int64)
    out = compile_graph(stdp_network(rng), tmp_path, calibration, reference_samples=2,
                        stdp={"fc1": {"ltp_shift": 4, "ltd_shift": 4},
                              "fc2": {"pre_decay": 1, "post_decay": 3}})
    art = artifact.read(out)
    assert art.graph.node("fc1").kind == "QPlasticLinear"
    expected = assert_verified(out)
    initial = art.graph.node("fc1").weight
    learned = expected["weight:fc1"]
    assert learned.shape == (2, *initial.shape) and np.any(learned != initial), "the weights did not change"


def test_digits_example_on_the_rtl(tmp_path):
    sys.path.insert(0, str(ROOT / "examples" / "digits"))
    from model import encode, load_digits_split

    x = load_digits_split()[1][:6]
    np.savez(tmp_path / "calib.npz", spikes=encode(x).astype(np.int64))
    out = tmp_path / "digits"
    compile_network(CompileRequest(source=ROOT / "examples/digits/digits.pt", target="fpga", out=out,
                                   options=SourceOptions(model=str(ROOT / "examples/digits/model.py") + ":make_model"),
                                   calibration_spikes=tmp_path / "calib.npz", reference_samples=6),
                    log=lambda m: None)
    expected = assert_verified(out)
    assert int(expected["output"].sum()) > 20


def test_images_alone_and_programming_alone_both_work(tmp_path):
    """The $readmemh images (a bitstream built with them) and program.bin (a blank design loaded over the UART)
    each hold the whole network; the CLI exits 0 and writes JUnit XML."""
    import subprocess

    rng = np.random.default_rng(5)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((20, 2, 20)) < 0.3).astype(np.int64))
    assert_verified(out, "verilator://?program=0")
    proc = subprocess.run([sys.executable, "-m", "nmcompile", "verify", str(out), "--board", "verilator://?blank=1",
                           "--junit", str(tmp_path / "v.xml")], capture_output=True, text=True)
    assert proc.returncode == 0 and "PASS output out" in proc.stdout, proc.stdout + proc.stderr
    assert 'failures="0"' in (tmp_path / "v.xml").read_text()


def test_reprogramming_a_built_design_with_other_weights(tmp_path):
    """Two networks of the same size share one Verilated build; the second is loaded over the UART."""
    from nmcompile.runtime.verilator_build import build_key

    outs = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        (tmp_path / str(seed)).mkdir()
        outs.append(compile_graph(mlp(rng), tmp_path / str(seed), (rng.random((20, 2, 20)) < 0.3).astype(np.int64)))
    a, b = outs
    assert build_key(a / "fpga") == build_key(b / "fpga")
    assert (a / "fpga" / "syn.hex").read_bytes() != (b / "fpga" / "syn.hex").read_bytes()
    assert_verified(b, board=VerilatorBoard(blank=True))


def test_stdp_option_errors_are_one_line(tmp_path):
    import subprocess

    rng = np.random.default_rng(0)
    source = save(mlp(rng), tmp_path / "m.nmir")
    base = [sys.executable, "-m", "nmcompile", "compile", str(source), "--target", "fpga", "-o", str(tmp_path / "o")]
    for extra, message in [(["--stdp", "l1"], "'l1' is a neuron layer; name one of the projections feeding it: fc1"),
                           (["--stdp", "fc2", "--stdp-param", "tau=3"], "unknown STDP parameter(s) tau"),
                           (["--stdp", "fc2", "--stdp-param", "ltp_shift"], "expected KEY=INTEGER"),
                           (["--stdp", "nope"], "--stdp nope: no node of that name")]:
        proc = subprocess.run(base + extra, capture_output=True, text=True)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda g: g.replace_node("l1", g.node("l1").replace(reset_mode="none")),
     "layer 'l1': no reset is not supported by fpga"),
    (lambda g: g.replace_node("fc1", g.node("fc1").replace(delays=np.arange(600).reshape(30, 20) % 40)),
     r"projection 'fc1': a delay of 1\.\.40 steps is not supported by fpga \(supported by: loihi2; fpga "
     r"delay_range: 1\.\.31\)"),
])
def test_refusals_name_the_layer(mutate, message, tmp_path):
    rng = np.random.default_rng(0)
    g = mlp(rng)
    mutate(g)
    with pytest.raises(NmcError, match=message):
        compile_graph(g, tmp_path, (rng.random((10, 2, 20)) < 0.3).astype(np.int64))


def test_network_too_big_names_the_numbers(tmp_path):
    rng = np.random.default_rng(0)
    g = Graph("big")
    g.add("in", O.Input(shape=(8,)))
    g.add("fc", dense(rng, 8, 66_000))
    g.add("l", O.LIF(shape=(66_000,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(66_000,)))
    g.chain("in", "fc", "l", "out")
    with pytest.raises(NmcError, match="66,000"):
        compile_graph(g, tmp_path, (rng.random((10, 2, 8)) < 0.3).astype(np.int64))


def test_stdp_is_refused_on_other_targets(tmp_path):
    rng = np.random.default_rng(0)
    source = save(mlp(rng), tmp_path / "m.nmir")
    message = r"--stdp: STDP is not supported by loihi2 \(supported by: fpga; loihi2 stdp: False\)"
    with pytest.raises(NmcError, match=message):
        compile_network(CompileRequest(source=source, target="loihi2", out=tmp_path / "o", stdp={"fc1": {}}),
                        log=lambda m: None)


def test_verilog_is_lint_clean(tmp_path):
    """The emulator and a generated top pass `verilator --lint-only -Wall` (every warning enabled)."""
    rng = np.random.default_rng(0)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((10, 2, 20)) < 0.3).astype(np.int64))
    import subprocess

    fpga = out / "fpga"
    sources = [str(p) for p in sorted((fpga / "hdl").glob("*.v"))] + [str(fpga / "nmc_top.v")]
    proc = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", "nmc_top", *sources],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not installed")
def test_report_synthesizes_with_yosys(tmp_path):
    import subprocess

    rng = np.random.default_rng(0)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((10, 2, 20)) < 0.3).astype(np.int64))
    proc = subprocess.run([sys.executable, "-m", "nmcompile", "report", str(out), "--part", "xc7a35t"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "| BRAM (36 Kb tiles) |" in proc.stdout and "NeuroCoreX" in proc.stdout
    assert "The design fits the xc7a35t" in proc.stdout
    from nmcompile.backends.fpga.synth import synthesize

    util = synthesize(out / "fpga")             # cached now
    assert util.lut > 500 and util.bram >= 0.5 and util.dsp >= 2    # a 2-slot spike ring: small memories


def test_parse_yosys_statistics():
    from nmcompile.backends.fpga.synth import parse_stat

    log = """
   Number of cells:                 20
     DSP48E1                         2
     FDRE                           10
     FDSE                            1
     LUT2                            3
     LUT6                            2
     RAM32M                          1
     RAMB18E1                        3
     RAMB36E1                        1
"""
    util = parse_stat(log)
    assert (util.lut, util.lut_memory, util.ff, util.bram, util.dsp) == (9, 4, 11, 2.5, 2)


def random_integer_network(rng) -> Graph:
    """An integer network with every feature the design has, drawn at random: layer sizes that do not align to 32,
    delays 1..16, exponents, biases through constant sources, recurrent edges, skip projections, both resets,
    immediate and delayed reset timing (refractory 0 with delayed: QNeuron refuses the combination), both
    comparisons, refractory periods, non-zero initial states, decaying and held currents."""
    g = Graph("random")
    n_in = int(rng.integers(1, 70))
    g.add("in", O.Input(shape=(n_in,)))
    sizes = [int(s) for s in rng.integers(1, 40, int(rng.integers(1, 4)))]

    def projection(name, src, dst, n_src, n_dst, recurrent=False):
        exp = int(rng.integers(-3, 3))
        weight = rng.integers(-128, 128, (n_dst, n_src)) // int(rng.choice([1, 2, 8]))
        g.add(name, O.QLinear(weight=weight, weight_exp=exp, num_weight_bits=9, delay=int(rng.integers(1, 17))))
        g.connect(src, name, recurrent=recurrent)
        g.connect(name, dst)

    prev, n_prev = "in", n_in
    for k, n in enumerate(sizes):
        layer = f"l{k}"
        timing = str(rng.choice(["immediate", "delayed"]))
        g.add(layer, O.QNeuron(
            shape=(n,), du=int(rng.choice([4095, -1, int(rng.integers(0, 4096))])), dv=int(rng.integers(0, 4097)),
            vth=rng.integers(1, 400, n), bias_mant=rng.integers(-300, 300, n), bias_exp=int(rng.integers(0, 4)),
            compare=str(rng.choice([">", ">="])), reset_mode=str(rng.choice(["zero", "subtract"])),
            reset_timing=timing, refractory=int(rng.integers(0, 4)) if timing == "immediate" else 0,
            u_init=rng.integers(-5000, 5000, n), v_init=rng.integers(-9000, 9000, n)))
        projection(f"p{k}", prev, layer, n_prev, n)
        if rng.random() < 0.5:
            projection(f"r{k}", layer, layer, n, n, recurrent=bool(rng.random() < 0.5))
        if rng.random() < 0.5:
            g.add(f"b{k}.src", O.Constant(shape=(1,), value=1.0))
            projection(f"b{k}", f"b{k}.src", layer, 1, n)
        if k and rng.random() < 0.5:
            projection(f"s{k}", "in", layer, n_in, n)
        prev, n_prev = layer, n
    g.add("out", O.Output(shape=(n_prev,)))
    g.connect(prev, "out")
    g.verify()
    return g


@pytest.mark.parametrize("seed", range(8))
def test_random_integer_networks(seed, tmp_path):
    rng = np.random.default_rng(100 + seed)
    g = random_integer_network(rng)
    x = (rng.random((40, 2, g.node("in").shape[0])) < rng.uniform(0.05, 0.5)).astype(np.int64)
    assert_states_equal_reference(g, x, tmp_path / "random")


def assert_states_equal_reference(g: Graph, x: np.ndarray, out: Path) -> None:
    """Emit `g` for fpga into the artifact `out`, verify it under Verilator, then read every layer's u and v after
    the last step of sample 0 back from the STATE memory and compare with the reference's."""
    from nmcompile.backends.fpga.emit import emit
    from nmcompile.lowered import lower_network
    from nmcompile.targets import get_target

    files = emit(lower_network(g), get_target("fpga"), {}, None).files
    artifact.write(out, graph=g, target="fpga", source=Path(out.name), pipeline=[], inputs=x, report="", files=files)
    result = verify_artifact(out, "verilator://")
    assert result.passed, "\n".join(result.lines())
    reference = simulate(g, x[:, :1], record=True)
    assert sum(int(reference.values[n].sum()) for n in reference.states) > 0, "no layer spiked: vacuous"
    board = VerilatorBoard(program=False)
    board.load(out)
    try:
        board.link.reset()
        board.link.run_sample(x[:, 0], board.layout["design"]["in_words"], board.layout["output"]["size"])
        for name, layer in board.layout["layers"].items():
            raw = board.link.read(Region.STATE, layer["base"], layer["size"])
            words = [int.from_bytes(raw[7 * k:7 * k + 7], "little") for k in range(layer["size"])]
            u = np.array([_signed(w & (1 << 25) - 1, 25) for w in words])
            v = np.array([_signed(w >> 25 & (1 << 24) - 1, 24) for w in words])
            np.testing.assert_array_equal(u, reference.states[name]["u"][-1, 0], err_msg=f"{name}.u")
            np.testing.assert_array_equal(v, reference.states[name]["v"][-1, 0], err_msg=f"{name}.v")
    finally:
        board.close()


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def test_cli_run_on_the_rtl_equals_the_reference(tmp_path):
    import subprocess

    rng = np.random.default_rng(4)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((20, 2, 20)) < 0.3).astype(np.int64))
    np.savez(tmp_path / "in.npz", spikes=(rng.random((25, 3, 20)) < 0.3).astype(np.int8))
    for board in ("ref://", "verilator://"):
        proc = subprocess.run([sys.executable, "-m", "nmcompile", "run", str(out), "--board", board, "--input",
                               str(tmp_path / "in.npz"), "--output", str(tmp_path / f"{board[:3]}.npz")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    ours, theirs = (np.load(tmp_path / f"{b}.npz")["spikes"] for b in ("ref", "ver"))
    assert ours.any() and np.array_equal(ours, theirs)


def test_stream_in_chunks_equals_run(tmp_path):
    """stream() feeds one sample in chunks; the RTL keeps its state between them."""
    from nmcompile.runtime.board import open_board

    rng = np.random.default_rng(6)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((20, 2, 20)) < 0.3).astype(np.int64))
    x = (rng.random((30, 1, 20)) < 0.3).astype(np.int8)
    with open_board("verilator://?program=0") as board:
        board.load(out)
        whole = board.run(x)
        parts = list(board.stream([x[:11], x[11:12], x[12:]]))
        with pytest.raises(NmcError, match="streams one sample at a time"):
            list(board.stream([np.zeros((3, 2, 20))]))
    assert whole.any()
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_build_progress_goes_to_the_callback(tmp_path, monkeypatch, capfd):
    """A fresh Verilator build is announced through `progress`, not printed."""
    from nmcompile.runtime.board import open_board

    monkeypatch.setenv("NMC_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(7)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((20, 2, 20)) < 0.3).astype(np.int64))
    messages = []
    with open_board("verilator://", progress=messages.append) as board:
        board.load(out)
    assert any("building the Verilated model" in m for m in messages), messages
    assert capfd.readouterr().out == ""
