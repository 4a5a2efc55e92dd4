"""The spinnaker2 emitter: PE images, placement and routing tables that, stepped tick by tick with the kernel's
rules (`ModelPe`) and routed through the emitted tables, equal the integer reference bit for bit (outputs and every
layer's u and v), on one PE, on many PEs and across chips. The QEMU conformance (the C kernel itself) is in
test_conformance.py and test_spinnaker2_kernel.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nmcompile.backends import get_backend
from nmcompile.backends.spinnaker2.emit import network_files
from nmcompile.backends.spinnaker2.lower import lower
from nmcompile.errors import BoardError, NmcError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.lowered import lower_network
from nmcompile.passes import PassContext, run_pipeline
from nmcompile.runtime.spinnaker2_net import ModelPe, Spinnaker2Network, parse_image
from nmcompile.targets import get_target
from tests.backends.networks import NETWORKS


def compiled(graph: Graph, x: np.ndarray, **overrides) -> tuple[Graph, object, object]:
    target = get_target("spinnaker2", **overrides)
    passes = list(get_backend("spinnaker2").pipeline)
    g = run_pipeline(graph, passes, PassContext(target=target, calibration=x))
    return g, lower_network(g), target


def write(view, target, out: Path) -> Path:
    for rel, data in network_files(view, lower(view, target)).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return out


def model_network(out: Path) -> Spinnaker2Network:
    return Spinnaker2Network(out, lambda name, data: ModelPe(parse_image(data, name)))


@pytest.mark.parametrize("layout", [{}, {"neurons_per_core": 7}, {"neurons_per_core": 7, "cores_per_chip": 3}],
                         ids=["one-pe", "many-pes", "many-chips"])
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_pe_images_and_routes_equal_the_reference(network, layout, tmp_path):
    rng = np.random.default_rng(0)
    graph = NETWORKS[network](rng)
    x = (rng.random((30, 2, *graph.node("in").shape)) < 0.3).astype(np.int64)
    g, view, target = compiled(graph, x, **layout)
    net = model_network(write(view, target, tmp_path))
    net.check_routes()
    got = net.run(x, record=True)
    reference = simulate(g, x, record=True)
    for name, expected in reference.outputs.items():
        assert expected.any(), "silent reference"
        np.testing.assert_array_equal(got[name], expected, err_msg=name)
    for layer, states in reference.states.items():
        for var in ("u", "v"):
            np.testing.assert_array_equal(got[f"{layer}.{var}"], states[var], err_msg=f"{layer}.{var}")
    if layout.get("cores_per_chip") and network == "conv":
        assert len(net.tables) > 2, "the conv network should span several chips here"


def readout_network() -> Graph:
    rng = np.random.default_rng(5)
    g = Graph("readout")
    g.add("in", O.Input(shape=(10,)))
    g.add("fc1", O.Linear(weight=rng.normal(0.4, 0.5, (12, 10))))
    g.add("l1", O.LIF(shape=(12,), beta=0.9, threshold=1.0, reset_mode="subtract", reset_timing="delayed"))
    g.add("fc2", O.Linear(weight=rng.normal(0.2, 0.5, (3, 12))))
    g.add("ro", O.LI(shape=(3,), beta=0.8, reset_mode="none"))
    g.add("out", O.Output(shape=(3,)))
    g.chain("in", "fc1", "l1", "fc2", "ro", "out")
    return g


def test_readouts_and_delayed_subtraction(tmp_path):
    """snnTorch's default reset (subtraction, delayed) and a non-spiking readout: spinnaker2 takes both."""
    x = (np.random.default_rng(1).random((25, 3, 10)) < 0.3).astype(np.int64)
    g, view, target = compiled(readout_network(), x, neurons_per_core=5)
    got = model_network(write(view, target, tmp_path)).run(x)
    expected = simulate(g, x).output
    assert np.abs(expected).sum() > 0 and np.array_equal(got["out"], expected)


def test_a_tampered_routing_table_is_detected(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((10, 1, 20)) < 0.3).astype(np.int64)
    _, view, target = compiled(NETWORKS["mlp"](rng), x, neurons_per_core=7)
    out = write(view, target, tmp_path)
    table = out / "spinnaker2" / "routing_0_0.bin"
    words = np.frombuffer(table.read_bytes(), dtype="<u4").copy()
    words[5 + 3] ^= 1                               # the first entry's PE bits: one PE more or less
    table.write_bytes(words.tobytes())
    with pytest.raises(BoardError, match="routing: source"):
        model_network(out).check_routes()


def test_a_pe_that_overflows_its_memory_is_refused_with_numbers():
    rng = np.random.default_rng(0)
    g = Graph("wide")
    g.add("in", O.Input(shape=(1000,)))
    g.add("fc", O.Linear(weight=rng.normal(0.01, 0.05, (200, 1000))))
    g.add("l", O.LIF(shape=(200,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(200,)))
    g.chain("in", "fc", "l", "out")
    x = (rng.random((5, 1, 1000)) < 0.1).astype(np.int64)
    # a partitioner that thinks PEs have 4x the memory places too much on one PE; the emitter's own check refuses
    _, view, target = compiled(g, x, synapse_memory_bits=4 * 67328 * 8)
    with pytest.raises(NmcError, match=r"PE pe_0_0_0 \(layer 'l'\): image and state need [\d,]+ bytes, more than the "
                                       r"67,328 of a PE's data memory"):
        lower(view, target)


# -- under QEMU: the C kernel as a network of PEs ------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]


def verify_on_qemu(out: Path) -> None:
    from nmcompile.runtime.board import open_board
    from nmcompile.runtime.hil import verify_artifact

    board = open_board("qemu://?record=1")
    result = verify_artifact(out, "qemu://?record=1", board=board)
    assert result.passed, "\n".join(result.lines())


def test_qemu_network_across_pes_and_chips(tmp_path):
    """The conv network on 38 PEs over 13 chips (3 PEs per chip): kernels under QEMU, spikes through the tables."""
    from tests.backends.networks import compile_graph

    rng = np.random.default_rng(1)
    graph = NETWORKS["conv"](rng)
    x = (rng.random((25, 2, *graph.node("in").shape)) < 0.3).astype(np.int64)
    out = compile_graph(graph, tmp_path, x, "spinnaker2",
                        target_overrides={"neurons_per_core": 7, "cores_per_chip": 3})
    placement = __import__("json").loads((out / "spinnaker2" / "placement.json").read_text())
    assert len(placement["pes"]) > 10 and len(placement["chips"]) > 2
    verify_on_qemu(out)


@pytest.mark.parametrize("factory", ["small", "rleaky"])
def test_snntorch_defaults_compile_and_verify(factory, tmp_path):
    """snnTorch Leaky with its defaults (reset by subtraction, delayed) and RLeaky with reset to zero."""
    import torch

    from nmcompile.api import CompileRequest, SourceOptions, compile_network
    from tests.frontend import factories

    torch.save(getattr(factories, factory)().state_dict(), tmp_path / "net.pt")
    x = (np.random.default_rng(3).random((30, 3, 6)) < 0.4).astype(np.int64)
    np.savez(tmp_path / "calib.npz", spikes=x)
    out = tmp_path / "art"
    compile_network(CompileRequest(source=tmp_path / "net.pt", target="spinnaker2", out=out,
                                   options=SourceOptions(model=f"tests.frontend.factories:{factory}"),
                                   calibration_spikes=tmp_path / "calib.npz"))
    graph = __import__("nmcompile.artifact", fromlist=["read"]).read(out).graph
    timings = {graph.node(n).reset_timing for n in graph if graph.node(n).kind == "QNeuron"}
    assert "delayed" in timings
    verify_on_qemu(out)


def test_digits_example_on_qemu(tmp_path):
    import sys

    from nmcompile.api import CompileRequest, SourceOptions, compile_network

    sys.path.insert(0, str(ROOT / "examples" / "digits"))
    from model import encode, load_digits_split

    np.savez(tmp_path / "calib.npz", spikes=encode(load_digits_split()[1][:4]).astype(np.int64))
    out = tmp_path / "digits"
    compile_network(CompileRequest(source=ROOT / "examples/digits/digits.pt", target="spinnaker2", out=out,
                                   options=SourceOptions(model=str(ROOT / "examples/digits/model.py") + ":make_model"),
                                   calibration_spikes=tmp_path / "calib.npz"))
    verify_on_qemu(out)


@pytest.mark.parametrize(("tamper", "message"), [
    (lambda art: (art / "spinnaker2" / "kernel.elf").write_bytes(b"not an elf"),
     "spinnaker2/kernel.elf differs from the file rebuilt from network.nmir"),
    (lambda art: (art / "spinnaker2" / "pe_0_0_0.bin").write_bytes(b"XXXX" + (art / "spinnaker2" /
                                                                              "pe_0_0_0.bin").read_bytes()[4:]),
     "spinnaker2/pe_0_0_0.bin differs from the file rebuilt from network.nmir"),
])
def test_a_corrupt_kernel_or_image_is_one_error_line(tamper, message, tmp_path):
    """Even behind a re-hashed manifest (what the digest check cannot catch), the file rebuilt from network.nmir
    differs and is named (docs/formats/artifact.md, trust model)."""
    import hashlib
    import json
    import subprocess
    import sys

    from tests.backends.networks import compile_graph

    rng = np.random.default_rng(0)
    out = compile_graph(NETWORKS["mlp"](rng), tmp_path, (rng.random((10, 1, 20)) < 0.3).astype(np.int64),
                        "spinnaker2")
    tamper(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"] = {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in manifest["files"]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    proc = subprocess.run([sys.executable, "-m", "nmcompile", "verify", str(out), "--board", "qemu://"],
                          capture_output=True, text=True)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_run_on_qemu_equals_ref(tmp_path):
    import subprocess
    import sys

    from tests.backends.networks import compile_graph

    rng = np.random.default_rng(4)
    out = compile_graph(NETWORKS["recurrent"](rng), tmp_path, (rng.random((20, 2, 12)) < 0.3).astype(np.int64),
                        "spinnaker2", target_overrides={"neurons_per_core": 9})
    np.savez(tmp_path / "in.npz", spikes=(rng.random((25, 3, 12)) < 0.3).astype(np.int8))
    for board in ("ref://", "qemu://"):
        proc = subprocess.run([sys.executable, "-m", "nmcompile", "run", str(out), "--board", board, "--input",
                               str(tmp_path / "in.npz"), "--output", str(tmp_path / f"{board[:3]}.npz")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    ours, theirs = (np.load(tmp_path / f"{b}.npz")["spikes"] for b in ("ref", "qem"))
    assert ours.any() and np.array_equal(ours, theirs)


def test_too_many_routing_entries_are_refused_with_numbers():
    rng = np.random.default_rng(0)
    x = (rng.random((10, 1, 20)) < 0.3).astype(np.int64)
    with pytest.raises(NmcError, match=r"chip 3 needs 6 routing entries, more than the 1 of a spinnaker2 router"):
        compiled(NETWORKS["mlp"](rng), x, neurons_per_core=5, cores_per_chip=2, router_entries=1)   # partition
    _, view, _ = compiled(NETWORKS["mlp"](rng), x, neurons_per_core=5, cores_per_chip=2)
    with pytest.raises(NmcError, match=r"chip \(\d, \d\) needs \d+ routing entries after merging, more than the 1 of "
                                       r"a spinnaker2 router"):                                    # the emitter's own
        lower(view, get_target("spinnaker2", neurons_per_core=5, cores_per_chip=2, router_entries=1))


def test_routes_of_consecutive_sources_merge_exactly():
    from nmcompile.backends.spinnaker2.lower import _merge

    same = (1, 1 << 3)
    entries = {0: same, 1: same, 2: same, 3: same, 4: (0, 1), 6: same}
    merged = _merge(entries)
    assert merged[0] == (0, 0xFFFFFC00, *same)                  # ids 0..3: one entry, mask over 4 ids
    assert [(key >> 8, mask) for key, mask, _, _ in merged[1:]] == [(4, 0xFFFFFF00), (6, 0xFFFFFF00)]


def run_board(url: str, out: Path, x: np.ndarray) -> tuple[dict, dict]:
    from nmcompile.runtime.board import open_board

    with open_board(url) as board:
        board.load(out)
        return board.run_all(x), dict(board.last_states)


@pytest.mark.parametrize(("network", "layout"), [("conv", {"neurons_per_core": 7, "cores_per_chip": 3}),
                                                 ("recurrent", {"neurons_per_core": 5})],
                         ids=["acyclic-many-chips", "pe-cycle"])
def test_pes_as_jobs_of_a_local_pool(network, layout, tmp_path):
    """qemu://?pes=local://2: PE groups in dependency order on two worker processes (a cycle of PEs in lock step,
    every other PE over all its ticks at once) equal the reference in outputs and every layer's u and v."""
    from nmcompile.artifact import read
    from tests.backends.networks import compile_graph

    rng = np.random.default_rng(2)
    graph = NETWORKS[network](rng)
    x = (rng.random((20, 2, *graph.node("in").shape)) < 0.3).astype(np.int64)
    out = compile_graph(graph, tmp_path, x, "spinnaker2", target_overrides=layout)
    outputs, states = run_board("qemu://?pes=local://2&record=1", out, x)
    reference = simulate(read(out).graph, x, record=True)
    for name, expected in reference.outputs.items():
        assert expected.any()
        np.testing.assert_array_equal(outputs[name], expected, err_msg=name)
    for layer, values in reference.states.items():
        for var in ("u", "v"):
            np.testing.assert_array_equal(states[f"{layer}.{var}"], values[var], err_msg=f"{layer}.{var}")


@pytest.mark.parametrize("distributed", [False, True], ids=["in-process", "pes-as-jobs"])
def test_readout_voltages_under_qemu(distributed, tmp_path):
    """A non-spiking readout's output is its voltage, read from the PE's readout record (no u/v recording)."""
    from nmcompile.backends.spinnaker2.build import build_kernel
    from nmcompile.runtime.executors import open_executor
    from nmcompile.runtime.spinnaker2_board import _QemuPe
    from nmcompile.runtime.spinnaker2_net import run_distributed

    x = (np.random.default_rng(1).random((25, 3, 10)) < 0.3).astype(np.int64)
    g, view, target = compiled(readout_network(), x, neurons_per_core=5)
    out = write(view, target, tmp_path)
    elf = out / "spinnaker2" / "kernel.elf"
    elf.write_bytes(build_kernel().elf.read_bytes())
    net = Spinnaker2Network(out, lambda name, image: _QemuPe(elf, name, image, False, 30.0))
    try:
        if distributed:
            with open_executor("serial") as executor:
                got = run_distributed(net, x, executor)
        else:
            got = net.run(x)
    finally:
        net.close()
    expected = simulate(g, x).output
    assert np.abs(expected).sum() > 0 and np.array_equal(got["out"], expected)


def test_a_pe_without_synapses_and_multi_delay_rings_run_under_qemu(tmp_path):
    """Review cases: a PE whose neurons receive no synapse (0 accumulator groups) is a valid image, and two layers
    with per-synapse delays 1..8 get PEs of their own (rings span every neuron of a PE), so what the partitioner
    budgets is what the images hold."""
    from tests.backends.networks import compile_graph, dense

    rng = np.random.default_rng(0)
    g = Graph("rings")
    g.add("in", O.Input(shape=(8,)))
    w = rng.normal(0.4, 0.6, (14, 8))
    w[7:] = 0                                                  # neurons 7..13 (their own PE) receive nothing
    g.add("fc1", O.Linear(weight=w, delays=rng.integers(0, 8, (14, 8))))
    g.add("a", O.LIF(shape=(14,), beta=0.9, threshold=1.0))
    g.add("fc2", dense(rng, 14, 6, delays=7))
    g.add("b", O.LIF(shape=(6,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc1", "a", "fc2", "b", "out")
    x = (rng.random((20, 2, 8)) < 0.4).astype(np.int64)
    out = compile_graph(g, tmp_path, x, "spinnaker2", target_overrides={"neurons_per_core": 7})
    placement = __import__("json").loads((out / "spinnaker2" / "placement.json").read_text())
    assert all(len({layer for layer, _ in pe["neurons"]}) == 1 for pe in placement["pes"])
    assert any(not pe["groups"] for pe in placement["pes"])
    verify_on_qemu(out)
