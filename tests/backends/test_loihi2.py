"""Loihi 2 conformance: the emitted Lava process graph, run in Lava 0.10's own fixed_pt models, equals the integer
reference bit for bit: output spikes and every layer's u and v at every step."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.errors import NmcError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.runtime.lava_board import LavaBoard, lava_python
from tests.backends import networks
from tests.backends.networks import conv, mlp

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def lava_available():
    lava_python()  # fails (not skips) with the setup command when Lava is missing


def compile_graph(graph: Graph, tmp: Path, calibration: np.ndarray) -> Path:
    return networks.compile_graph(graph, tmp, calibration, "loihi2")


def assert_conformant(out: Path) -> dict:
    art = artifact.read(out)
    inputs, expected = art.reference()
    padded = np.concatenate([inputs, np.zeros((art.latency, *inputs.shape[1:]), dtype=inputs.dtype)])
    board = LavaBoard(states=True)
    board.load(out)
    outputs = board.run_all(padded)
    reference = simulate(art.graph, padded, record=True)
    for name, ref in expected.items():
        np.testing.assert_array_equal(outputs[name], ref, err_msg=f"output {name}")
        assert ref.any(), "the reference network is silent: the comparison would be vacuous"
    for layer, states in reference.states.items():
        for var in ("u", "v"):
            np.testing.assert_array_equal(board.last_states[f"{layer}.{var}"], states[var], err_msg=f"{layer}.{var}")
    return {k: int(np.count_nonzero(v)) for k, v in expected.items()}


def test_lava_files_use_delay_and_conv_processes(tmp_path):
    """DelayDense/DelaySparse carry per-synapse delays and Conv a convolution (the suite in test_conformance.py
    checks that they run bit-exactly)."""
    rng = np.random.default_rng(0)
    for graph in (networks.delays(rng), conv(rng)):
        out = compile_graph(graph, tmp_path, (rng.random((10, 2, *graph.node("in").shape)) < 0.3).astype(np.int64))
        files = set(artifact.read(out).manifest["files"])
        assert {"lava_network.py", "network.npz", "run_lava.py"} <= files
        text = (out / "lava_network.py").read_text()
        assert ("DelayDense(" in text and "DelaySparse(" in text) if graph.name == "delays" else "Conv(" in text


def test_digits_example_in_lava(tmp_path):
    out = tmp_path / "digits"
    sys.path.insert(0, str(ROOT / "examples" / "digits"))
    from model import encode, load_digits_split

    x = load_digits_split()[1][:4]
    np.savez(tmp_path / "calib.npz", spikes=encode(x).astype(np.int64))
    compile_network(CompileRequest(source=ROOT / "examples/digits/digits.pt", target="loihi2", out=out,
                                   options=SourceOptions(model=str(ROOT / "examples/digits/model.py") + ":make_model"),
                                   calibration_spikes=tmp_path / "calib.npz"), log=lambda m: None)
    counts = assert_conformant(out)
    assert counts["output"] > 10


def test_model_net_follows_the_netx_layout(tmp_path):
    rng = np.random.default_rng(0)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((10, 2, 20)) < 0.3).astype(np.int64))
    art = artifact.read(out)
    with h5py.File(out / "model.net", "r") as f:
        layers = f["layer"]
        assert sorted(layers, key=int) == ["0", "1", "2"]
        assert layers["0"]["type"][0] == b"input" and list(layers["0"]["shape"][()]) == [20]
        for k, (name, n_in, n_out) in enumerate([("fc1", 20, 30), ("fc2", 30, 10)], start=1):
            layer = layers[str(k)]
            assert layer["type"][0] == b"dense"
            assert layer["inFeatures"][()] == n_in and layer["outFeatures"][()] == n_out
            weight = layer["weight"][()]
            q = art.graph.node(name)
            np.testing.assert_array_equal(weight, q.effective_weight() << q.weight_exp)
            assert np.all(weight == np.round(weight)), "netx truncates non-integer weights"
            neuron = layer["neuron"]
            assert neuron["type"][()] == b"CUBA"
            lif = art.graph.node("l1" if k == 1 else "l2")
            assert neuron["iDecay"][()] == int(lif.du) + 1 and neuron["vDecay"][()] == int(lif.dv)
            assert neuron["vThMant"][()] == int(lif.vth)


def test_netx_loads_in_lava_dl_when_installed(tmp_path):
    import subprocess

    python = lava_python()
    probe = subprocess.run([str(python), "-c", "import lava.lib.dl.netx"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"lava-dl is not installed in the Lava venv (it pulls a CUDA torch of several GB); to run this "
                    f"check: {python.parent / 'pip'} install lava-dl==0.6.0")
    rng = np.random.default_rng(0)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((10, 2, 20)) < 0.3).astype(np.int64))
    script = f"""
import numpy as np
from lava.lib.dl import netx
from lava.proc.io.source import RingBuffer
from lava.proc.io.sink import RingBuffer as Sink
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
inputs = np.load('{out}/reference/inputs.npz')['spikes']
net = netx.hdf5.Network(net_config='{out}/model.net')
T = inputs.shape[0] + 2
data = np.zeros((20, T), dtype=int); data[:, :inputs.shape[0]] = inputs[:, 0].T
src = RingBuffer(data=data); src.s_out.connect(net.inp)
sink = Sink(shape=net.out.shape, buffer=T); net.out.connect(sink.a_in)
net.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag='fixed_pt'))
np.save('{tmp_path}/netx.npy', sink.data.get()); net.stop()
"""
    subprocess.run([str(python), "-c", script], check=True)
    netx_out = np.load(tmp_path / "netx.npy").T
    expected = artifact.read(out).reference()[1]["output"][:, 0]
    np.testing.assert_array_equal(netx_out, expected)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("beta", "per-neuron", r"layer 'l1': a decay \(du/dv\) per neuron is not supported by loihi2 \(supported by: "
                           r"spinnaker2, fpga; loihi2 per_neuron_decay: False\)"),
    ("reset_mode", "subtract", r"layer 'l1': reset by subtraction is not supported by loihi2 \(supported by: "),
    ("reset_timing", "delayed", "layer 'l1': delayed reset is not supported by loihi2"),
    ("refractory", 2, "layer 'l1': a refractory period of 2 steps is not supported by loihi2"),
])
def test_refusals_name_the_layer(field, value, message, tmp_path):
    rng = np.random.default_rng(0)
    g = mlp(rng)
    g.replace_node("l1", g.node("l1").replace(**{field: rng.uniform(0.5, 0.9, 30) if value == "per-neuron" else value}))
    with pytest.raises(NmcError, match=message):
        compile_graph(g, tmp_path, (rng.random((10, 2, 20)) < 0.3).astype(np.int64))


def test_exact_rewrites_instead_of_refusals(tmp_path):
    """'>=' becomes '>' at the integer threshold below; per-neuron thresholds are co-scaled into the weight rows.
    Both are exact, so the network still runs bit-exactly in Lava."""
    rng = np.random.default_rng(3)
    g = mlp(rng)
    g.replace_node("l1", g.node("l1").replace(compare=">=", threshold=rng.uniform(0.7, 1.3, 30)))
    out = compile_graph(g, tmp_path, (rng.random((30, 2, 20)) < 0.3).astype(np.int64))
    report = (out / "report.md").read_text()
    assert "thresholds co-scaled to one" in report and "'>=' realised as '>'" in report
    assert_conformant(out)


ATRLIF_AS_SUBTRACTION = """
import json
import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.atrlif.process import ATRLIF
from lava.proc.dense.process import Dense
from lava.proc.io.source import RingBuffer
from lava.proc.monitor.process import Monitor

steps, vth, weight = 1100, 200, 126
theta = (vth // 2) << 6                                   # fires on v - r >= theta, then r += 2 theta = vth << 6
src = RingBuffer(data=np.ones((1, steps), dtype=np.int32))
dense = Dense(weights=np.array([[weight]]), num_weight_bits=8)
neuron = ATRLIF(shape=(1,), delta_i=4095 / 4096, delta_v=0, delta_theta=0, delta_r=0, theta_0=vth // 2,
                theta_step=0, r=theta + 1, bias_mant=0, bias_exp=0)   # r0 = theta + 1: '>= theta' is '> vth << 6'
src.s_out.connect(dense.s_in)
dense.a_out.connect(neuron.a_in)
spikes, volts = Monitor(), Monitor()
spikes.probe(neuron.s_out, steps)
volts.probe(neuron.v, steps)
neuron.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
s = spikes.get_data()[neuron.name]["s_out"].reshape(-1)
v = volts.get_data()[neuron.name]["v"].reshape(-1)
neuron.stop()
print(json.dumps({"spikes": [int(x) for x in s], "v": [int(x) for x in v]}))
"""


def test_atrlif_is_reset_by_subtraction_only_until_its_membrane_saturates():
    """Why loihi2 refuses reset by subtraction instead of rewriting it onto Lava's ATRLIF (docs/semantics.md §3.3):
    with no decays, ATRLIF's v - r is an IF membrane reset by subtraction, spike for spike, but v itself keeps
    every input and is clipped to 24 bits, after which the two part."""
    import json
    import subprocess

    proc = subprocess.run([str(lava_python()), "-c", ATRLIF_AS_SUBTRACTION], capture_output=True, text=True,
                          check=True)
    lava = json.loads(proc.stdout.strip().splitlines()[-1])
    g = Graph("if_subtract")
    g.add("in", O.Input(shape=(1,)))
    g.add("fc", O.QLinear(weight=np.array([[126]]), delay=1))
    g.add("n", O.QNeuron(shape=(1,), du=4095, dv=0, vth=200, reset_mode="subtract"))
    g.add("out", O.Output(shape=(1,)))
    g.chain("in", "fc", "n", "out")
    steps = len(lava["spikes"])
    ours = simulate(g, np.ones((steps, 1, 1), dtype=np.int64)).output.reshape(-1)
    differ = np.nonzero(ours != np.array(lava["spikes"]))[0]
    assert differ.size, "ATRLIF would be an exact rewrite over this run"
    first = int(differ[0])
    assert first > 1000 and lava["v"][first - 1] == 2**23 - 1                 # equal until v hits the clip
    assert sum(lava["spikes"][:first]) == (2**23 - 1) // (200 << 6)          # ~2^23 / (vth << 6) spikes


def test_cli_run_in_lava_equals_the_reference(tmp_path):
    import subprocess

    rng = np.random.default_rng(4)
    out = compile_graph(mlp(rng), tmp_path, (rng.random((20, 2, 20)) < 0.3).astype(np.int64))
    np.savez(tmp_path / "in.npz", spikes=(rng.random((15, 2, 20)) < 0.3).astype(np.int8))
    for board in ("ref://", "lava://"):
        proc = subprocess.run([sys.executable, "-m", "nmcompile", "run", str(out), "--board", board, "--input",
                               str(tmp_path / "in.npz"), "--output", str(tmp_path / f"{board[:3]}.npz")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    ours, theirs = (np.load(tmp_path / f"{b}.npz")["spikes"] for b in ("ref", "lav"))
    assert ours.any() and np.array_equal(ours, theirs)
