"""The py-spinnaker2 script (nmcompile/backends/spinnaker2/pyspinnaker2.py): a convenience export, not a verified
path. The script is compiled and executed against a small fake `spinnaker2` package written into tmp_path: its
Population/Projection/Network record their arguments and its chip's run() records the network and steps it with a
float LIF update as the research notes describe py-spinnaker2's (so the scaling can be sanity-checked, loosely,
against nmcompile's integer reference)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from nmcompile.artifact import reference_run
from nmcompile.backends import get_backend
from nmcompile.backends.spinnaker2.pyspinnaker2 import RULES, script
from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.lowered import lower_network
from nmcompile.passes import PassContext, run_pipeline
from nmcompile.targets import get_target
from tests.backends.networks import NETWORKS, dense
from tests.backends.test_spinnaker2 import readout_network

FAKE_SNN = '''
CREATED = []


class Population:
    def __init__(self, size, neuron_model, params=None, name="", record=None):
        self.size, self.neuron_model, self.params, self.name = size, neuron_model, params, name
        self.record = list(record or [])
        self.max_atoms_per_core = None
        self.spikes, self.voltages = {}, {}
        CREATED.append(self)

    def set_max_atoms_per_core(self, n):
        self.max_atoms_per_core = n

    def get_spikes(self):
        assert "spikes" in self.record, self.name
        return self.spikes

    def get_voltages(self):
        assert "v" in self.record, self.name
        return self.voltages


class Projection:
    def __init__(self, pre, post, connections):
        self.pre, self.post, self.connections = pre, post, connections


class Network:
    def __init__(self, name):
        self.name, self.populations, self.projections = name, [], []

    def add(self, *objects):
        for o in objects:
            (self.projections if isinstance(o, Projection) else self.populations).append(o)
'''

FAKE_HARDWARE = '''
import numpy as np

RUNS = []


class SpiNNaker2Chip:
    def __init__(self, eth_ip=None):
        self.eth_ip = eth_ip

    def run(self, net, timesteps, sys_tick_in_s=1.0e-3, debug=False):
        RUNS.append({"chip": self, "network": net, "timesteps": timesteps, "sys_tick_in_s": sys_tick_in_s})
        simulate(net, timesteps)


def per_neuron(params, key, n, default=0.0):
    return np.broadcast_to(np.asarray(params.get(key, default), dtype=np.float64), (n,)).copy()


def simulate(net, steps):
    """v = alpha_decay * v + i_offset + input (lif) or + current (lif_curr_exp, current = decay * current + input);
    fire on v > threshold; a synapse with delay field d delivers d + 1 steps later (research notes section 2)."""
    spikes = {id(p): np.zeros((steps, p.size), dtype=bool) for p in net.populations}
    for p in net.populations:
        if p.neuron_model == "spike_list":
            for i, times in p.params.items():
                spikes[id(p)][[t for t in times if t < steps], i] = True
    into = {}
    for proj in net.projections:
        into.setdefault(id(proj.post), []).append(proj)
    state = {}
    for t in range(steps):
        for p in net.populations:
            if p.neuron_model == "spike_list":
                continue
            n, q = p.size, p.params
            if id(p) not in state:
                state[id(p)] = {"v": per_neuron(q, "v_init", n), "i": np.zeros(n), "refr": np.zeros(n, dtype=int)}
                p.voltages = {k: np.zeros(steps) for k in range(n)}
            s = state[id(p)]
            x = np.zeros(n)
            for proj in into.get(id(p), []):
                for pre, post, w, d in proj.connections:
                    if t - d - 1 >= 0 and spikes[id(proj.pre)][t - d - 1, pre]:
                        x[post] += w
            if p.neuron_model == "lif_curr_exp":
                s["i"] = per_neuron(q, "exc_decay", n) * s["i"] + x
                x = s["i"]
            v = per_neuron(q, "alpha_decay", n) * s["v"] + per_neuron(q, "i_offset", n) + x
            refr = s["refr"] > 0
            v[refr] = q.get("v_reset", 0.0)
            fired = (v > per_neuron(q, "threshold", n)) & ~refr
            if q["reset"] == "reset_by_subtraction":
                v = v - fired * per_neuron(q, "threshold", n)
            else:
                v = np.where(fired, q.get("v_reset", 0.0), v)
            s["refr"] = np.where(fired, int(q.get("t_refrac", 0)), np.maximum(s["refr"] - 1, 0))
            s["v"] = v
            spikes[id(p)][t] = fired
            for k in range(n):
                p.voltages[k][t] = v[k]
    for p in net.populations:
        p.spikes = {k: np.flatnonzero(spikes[id(p)][:, k]).tolist() for k in range(p.size)}
'''


@pytest.fixture
def fake_spinnaker2(tmp_path, monkeypatch):
    """The fake package on sys.path; yields its (snn, hardware) modules; removed from sys.modules afterwards."""
    package = tmp_path / "fake" / "spinnaker2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "snn.py").write_text(FAKE_SNN)
    (package / "hardware.py").write_text(FAKE_HARDWARE)
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    for name in ("spinnaker2", "spinnaker2.snn", "spinnaker2.hardware"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import spinnaker2.hardware
    import spinnaker2.snn

    yield spinnaker2.snn, spinnaker2.hardware
    for name in ("spinnaker2", "spinnaker2.snn", "spinnaker2.hardware"):
        sys.modules.pop(name, None)


def compiled(graph: Graph, x: np.ndarray, **overrides):
    target = get_target("spinnaker2", **overrides)
    g = run_pipeline(graph, list(get_backend("spinnaker2").pipeline), PassContext(target=target, calibration=x))
    return g, lower_network(g)


def network(name: str, steps: int = 30, batch: int = 2, **overrides):
    rng = np.random.default_rng(0)
    graph = readout_network() if name == "readout" else long_delays() if name == "long_delays" else NETWORKS[name](rng)
    x = (rng.random((steps, batch, *graph.node("in").shape)) < 0.3).astype(np.int64)
    if name == "long_delays":               # the spinnaker2 target stops at 8 steps (as py-spinnaker2's field does)
        overrides["delay_range"] = (1, 16)
    g, view = compiled(graph, x, **overrides)
    return g, view, x


def long_delays() -> Graph:
    """Per-synapse delays up to 12 steps: py-spinnaker2's field holds 1..8."""
    rng = np.random.default_rng(3)
    g = Graph("long_delays")
    g.add("in", O.Input(shape=(10,)))
    g.add("fc", dense(rng, 10, 6, delays=np.arange(60).reshape(6, 10) % 12))
    g.add("l", O.LIF(shape=(6,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc", "l", "out")
    return g


def run_script(text: str, tmp_path: Path, x: np.ndarray, hardware) -> tuple[object, dict[str, np.ndarray]]:
    """Write the script and spikes.npz next to it, run main(); returns (the script module, the saved outputs)."""
    folder = tmp_path / "art" / "spinnaker2"
    folder.mkdir(parents=True)
    path = folder / "py_spinnaker2_network.py"
    path.write_text(text)
    np.savez(folder / "spikes.npz", spikes=x)
    spec = importlib.util.spec_from_file_location("generated_pys2_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hardware.RUNS.clear()
    module.main(["10.1.2.3", "--out", str(tmp_path / "result.npz")])
    with np.load(tmp_path / "result.npz") as f:
        return module, {k: f[k] for k in f.files}


def header(text: str) -> str:
    return ast.get_docstring(ast.parse(text))


def notes(text: str) -> str:
    """The header's per-network list, lines joined (wrapped notes become one line each)."""
    part = header(text).split("cannot express exactly:", 1)[1].split("Populations (s:", 1)[0]
    return "\n".join(" ".join(item.split()) for item in part.split("\n- "))


def check_network(view, module, hardware, x: np.ndarray) -> None:
    """The recorded network matches the view: populations, sizes, models, conn lists."""
    steps, batch = x.shape[0] + view.latency, x.shape[1]
    runs = hardware.RUNS
    assert len(runs) == batch and all(r["timesteps"] == steps for r in runs)
    assert runs[0]["chip"].eth_ip == "10.1.2.3" and runs[0]["sys_tick_in_s"] == RULES["run"].value
    for b, run in enumerate(runs):
        net = run["network"]
        pops = {p.name: p for p in net.populations}
        assert list(pops) == [*view.inputs, *view.layers]
        for name, src in view.inputs.items():
            p = pops[name]
            assert p.neuron_model == "spike_list" and p.size == src.size
            flat = x[:, b].reshape(x.shape[0], -1)
            assert p.params == {n: np.flatnonzero(flat[:, n]).tolist() for n in range(src.size)}
        for name, layer in view.layers.items():
            p = pops[name]
            assert p.size == layer.size and p.neuron_model in ("lif", "lif_curr_exp")
            assert 1 <= p.max_atoms_per_core <= min(layer.size, 250)
            assert p.params["reset"] in ("reset_by_subtraction", "reset_to_v_reset")
            if layer.op.spiking:   # (vth << 6) * s with s > 0: the sign of vth (negative: fires at rest)
                vth = np.broadcast_to(layer.op.vth, layer.shape).reshape(-1)
                assert np.array_equal(np.sign(np.broadcast_to(p.params["threshold"], vth.shape)), np.sign(vth))
        weighted = [q for q in view.projections if q.source not in view.constants]
        assert len(net.projections) == len(weighted)
        largest = {}
        for proj, q in zip(net.projections, weighted, strict=True):
            assert (proj.pre.name, proj.post.name) == (q.source, q.dest)
            conns = np.asarray(proj.connections, dtype=np.int64).reshape(-1, 4)
            matrix = q.effective_matrix()
            pre, post, w, d = conns.T
            assert 0 < len(conns) <= np.count_nonzero(matrix)
            assert np.all((w != 0) & (np.abs(w) <= 15))
            assert np.array_equal(np.sign(w), np.sign(matrix[post, pre])), q.name
            assert np.all((d >= 0) & (d <= 7))
            assert np.array_equal(d, np.clip(np.broadcast_to(q.delay, matrix.shape)[post, pre] - 1, 0, 7)), q.name
            assert len({(a, b) for a, b in zip(pre.tolist(), post.tolist(), strict=True)}) == len(conns)
            largest[q.dest] = max(largest.get(q.dest, 0), int(np.abs(w).max()))
        assert all(v == 15 for v in largest.values()), largest      # each population's scale maps its largest to 15
    assert {name: tuple(src.shape) for name, src in view.inputs.items()} == module.INPUTS


CASES = sorted([*NETWORKS, "readout", "long_delays"])


@pytest.mark.parametrize("name", CASES)
def test_the_script_builds_and_runs_the_network(name, tmp_path, fake_spinnaker2):
    _, hardware = fake_spinnaker2
    _, view, x = network(name, neurons_per_core=7)
    text = script(view)
    compile(text, "py_spinnaker2_network.py", "exec")
    module, result = run_script(text, tmp_path, x, hardware)
    check_network(view, module, hardware, x)
    steps = x.shape[0] + view.latency
    assert sorted(result) == sorted(view.outputs)
    for out, tap in view.outputs.items():
        assert result[out].shape == (steps, x.shape[1], *tap.shape)


@pytest.mark.parametrize("name", CASES)
def test_the_script_is_deterministic_and_does_not_import_nmcompile(name):
    _, view, _ = network(name)
    text = script(view)
    assert script(view) == text
    assert script(network(name)[1]) == text                   # a fresh compile of the same network: same bytes
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported == {"argparse", "pathlib", "numpy", "spinnaker2"}


def test_the_header_states_every_general_difference_and_the_verified_path():
    _, view, _ = network("mlp")
    text = header(script(view))
    assert "nmcompile verify ART --board qemu://" in text and "NOT verified" in text
    for phrase in ("own neuron models (lif, lif_curr_exp) with float32", "truncate toward zero",
                   "Float parameters", "4-bit weights", "[-15, 15]", "No weight exponent", "delay field is 0..7",
                   "delayed reset", "Refractory periods", "t_refrac", "Biases", "i_offset", "Readouts",
                   "v > threshold or v >= threshold", "sys_tick_in_s", "T + 2 steps"):
        assert phrase in text, phrase
    assert "none beyond the above" in notes(script(view))


def test_reset_by_subtraction_compare_and_refractory(tmp_path, fake_spinnaker2):
    """subtract: l1 resets by subtraction with '>=' (listed), l2 has a refractory period (lif_curr_exp, t_refrac)."""
    _, hardware = fake_spinnaker2
    _, view, x = network("subtract")
    text = script(view)
    listed = notes(text)
    assert "layer 'l1': compare '>='" in listed
    assert "layer 'l2': refractory 2 steps; built as lif_curr_exp with t_refrac = 2" in listed
    assert "layer 'l1'" in listed and "reset_timing" not in listed
    run_script(text, tmp_path, x, hardware)
    pops = {p.name: p for p in hardware.RUNS[0]["network"].populations}
    l1, l2 = pops["l1"], pops["l2"]
    assert l1.neuron_model == "lif" and l1.params["reset"] == "reset_by_subtraction"
    assert l2.neuron_model == "lif_curr_exp" and l2.params["t_refrac"] == 2
    assert l2.params["exc_decay"] == l2.params["inh_decay"] == 0.0           # du = 4095: no current kept
    op = view.layers["l1"].op
    ratio = np.asarray(l1.params["threshold"]) / np.broadcast_to(op.vth, (24,))   # per-neuron thresholds stay
    assert len(ratio) == 24 and np.allclose(ratio, ratio[0])                        # per neuron, on one scale
    assert l1.params["alpha_decay"] == (4096 - int(np.unique(op.dv)[0])) / 4096
    # the bias sources (fc1.bias, fc2.bias) are folded into i_offset, not projections
    assert np.any(np.asarray(l1.params["i_offset"]) != 0) and np.any(np.asarray(l2.params["i_offset"]) != 0)
    assert "bias sources folded into i_offset: fc1.bias" in text


def test_per_synapse_delays_are_clipped_to_the_field_and_listed(tmp_path, fake_spinnaker2):
    _, hardware = fake_spinnaker2
    _, view, x = network("long_delays")
    fc = view.projection("fc")
    assert fc.per_synapse_delays and fc.delay_range()[1] > 8
    text = script(view)
    run_script(text, tmp_path, x, hardware)
    conns = np.asarray(hardware.RUNS[0]["network"].projections[0].connections)
    over = int((np.broadcast_to(fc.delay, fc.effective_matrix().shape)[conns[:, 1], conns[:, 0]] > 8).sum())
    assert over > 0
    assert f"projection 'fc': {over} synapses have delays above 8 steps (up to 12); clipped to 8" in notes(text)
    assert conns[:, 3].max() == 7 and conns[:, 3].min() == 0
    assert len(np.unique(conns[:, 3])) == 8


def test_the_delays_network_keeps_its_per_synapse_delays(tmp_path, fake_spinnaker2):
    _, hardware = fake_spinnaker2
    _, view, x = network("delays")
    run_script(script(view), tmp_path, x, hardware)
    fc1 = np.asarray(hardware.RUNS[0]["network"].projections[0].connections)
    assert len(np.unique(fc1[:, 3])) > 3                                       # several delays, not one
    assert "above 8 steps" not in notes(script(view))


def test_readout_and_delayed_reset_are_listed_and_the_voltage_is_saved(tmp_path, fake_spinnaker2):
    _, hardware = fake_spinnaker2
    g, view, x = network("readout")
    text = script(view)
    listed = notes(text)
    assert "layer 'l1': reset_timing 'delayed'" in listed
    assert "layer 'ro': a non-spiking readout; built as a lif population that never fires" in listed
    _, result = run_script(text, tmp_path, x, hardware)
    ro = {p.name: p for p in hardware.RUNS[0]["network"].populations}["ro"]
    assert ro.record == ["v"] and ro.params["threshold"] == RULES["model.readout"].value
    assert result["out"].dtype == np.float64
    # the saved voltage is back in nmcompile's units: once clipped to 24 bits like nmcompile's v (a listed
    # difference), the fake's float trace follows the integer reference closely
    want = reference_run(g, x)["out"].astype(np.float64)
    got = np.clip(result["out"], -(2**23 - 1), 2**23 - 1)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95
    assert 0.8 < np.abs(got).sum() / np.abs(want).sum() < 1.25


def test_a_persisting_current_maps_to_lif_curr_exp(tmp_path, fake_spinnaker2):
    _, hardware = fake_spinnaker2
    _, view, x = network("recurrent")
    run_script(script(view), tmp_path, x, hardware)
    cuba = {p.name: p for p in hardware.RUNS[0]["network"].populations}["cuba"]
    du = int(np.unique(view.layers["cuba"].op.du)[0])
    assert cuba.neuron_model == "lif_curr_exp" and cuba.params["t_refrac"] == 0
    assert cuba.params["exc_decay"] == cuba.params["inh_decay"] == (4096 - (du + 1)) / 4096
    rec = [p for p in hardware.RUNS[0]["network"].projections if p.pre is p.post]
    assert len(rec) == 1 and rec[0].pre.name == "cuba"


@pytest.mark.parametrize("name", ["mlp", "mlp_bias"])
def test_the_float_model_roughly_follows_the_integer_reference(name, tmp_path, fake_spinnaker2):
    """Not an equality (the script is not the verified path): with the notes' float LIF update the output spike
    counts per neuron follow nmcompile's; a wrong scale (threshold vs weights, biases) would not."""
    _, hardware = fake_spinnaker2
    g, view, x = network(name, steps=60, batch=3)
    _, result = run_script(script(view), tmp_path, x, hardware)
    got, want = result["out"].sum(axis=0).ravel(), reference_run(g, x)["out"].sum(axis=0).ravel()
    assert want.sum() > 0
    assert np.corrcoef(got, want)[0, 1] > 0.8, (got, want)
    assert 0.5 < got.sum() / want.sum() < 2.0


def test_an_unquantized_network_is_refused():
    rng = np.random.default_rng(0)
    g = NETWORKS["mlp"](rng)
    with pytest.raises(UnsupportedError, match="quantized"):
        script(lower_network(g))
