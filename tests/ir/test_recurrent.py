"""Recurrent integer components as one compiled loop per chunk (nmcompile.ir.recurrent): bit-identical to the numpy
engine's step loop on random networks, in whole runs, chunks and streams, and actually taken."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix

from nmcompile.ir import ops as O
from nmcompile.ir import recurrent
from nmcompile.ir import simulate as simulate_module
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator, simulate
from nmcompile.ir.sparse import QSparseLinear
from tests.conftest import random_spikes


def recurrent_net(rng: np.random.Generator, size: int, *, projections: int = 1, sparse: bool = False,
                  weight: int = 120, spiking: bool = True, start_step: int = 0, neuron: dict | None = None,
                  inputs: int = 12, per_synapse_delays: bool = False) -> Graph:
    """Input -> QLinear (-> or ~>) N (QNeuron) with `projections` feedback projections N -> P_k -> N of random delays
    and
    recurrent edge placements (the last one a QSparseLinear when `sparse`; with `per_synapse_delays` the QLinears
    have delays 1..2 per synapse) -> Output."""
    g = Graph("recurrent")
    g.add("in", O.Input(shape=(inputs,)))
    g.add("fc", O.QLinear(weight=rng.integers(-120, 121, (size, inputs)), delay=int(rng.integers(0, 2))))
    params = dict(du=int(rng.integers(0, 4096)), dv=rng.integers(0, 600, size), vth=rng.integers(20, 90, size),
                  bias_mant=rng.integers(-20, 40, size), reset_mode=str(rng.choice(["zero", "subtract", "none"])),
                  reset_timing=str(rng.choice(["immediate", "delayed"])), compare=str(rng.choice([">", ">="])),
                  spiking=spiking, start_step=start_step)
    params["refractory"] = int(rng.choice([0, 0, 2])) if params["reset_timing"] == "immediate" else 0
    g.add("n", O.QNeuron(shape=(size,), **{**params, **(neuron or {})}))
    g.add("out", O.Output(shape=(size,)))
    g.chain("in", "fc")
    g.connect("fc", "n", recurrent=bool(rng.integers(0, 2)))           # an outside input may lag a step too
    g.connect("n", "out")
    for k in range(projections):
        w = rng.integers(-weight, weight + 1, (size, size)) * (rng.random((size, size)) < 0.5)
        delay = int(rng.integers(0, 3))
        recurrent_in = bool(rng.integers(0, 2))
        recurrent_out = (delay == 0 and not recurrent_in) or bool(rng.integers(0, 2))
        if sparse and k == projections - 1:
            m = csr_matrix(w)
            op = QSparseLinear(indptr=m.indptr, indices=m.indices, values=m.data, in_features=size, delay=delay,
                               weight_exp=int(rng.integers(-2, 2)))
        else:
            delays = rng.integers(1, 3, w.shape) if per_synapse_delays else delay
            op = O.QLinear(weight=w, delay=delays, weight_exp=int(rng.integers(-2, 2)))
        g.add(f"rec{k}", op)
        g.connect("n", f"rec{k}", recurrent=recurrent_in)
        g.connect(f"rec{k}", "n", recurrent=recurrent_out)
    g.verify()
    return g


def streamed(graph: Graph, x: np.ndarray, chunk: int) -> np.ndarray:
    sim = Simulator(graph)
    sim.start(x.shape[1])
    return np.concatenate([sim.feed(x[t : t + chunk])["out"] for t in range(0, x.shape[0], chunk)])


@pytest.fixture
def loop_runs(monkeypatch):
    """Counts the compiled loop's runs and fails any recurrent component that goes to the step loop."""
    runs = []
    original = recurrent.RecurrentLoop.run

    def counted(self, *args, **kwargs):
        runs.append(self.neuron)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(recurrent.RecurrentLoop, "run", counted)
    monkeypatch.setattr(simulate_module, "_run_stepwise",
                        lambda *a, **k: pytest.fail("a recurrent component went to _run_stepwise"))
    return runs


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 3]), st.integers(1, 3), st.booleans(), st.integers(1, 9))
def test_compiled_loop_equals_numpy_engine(seed, batch, projections, sparse, chunk):
    """Random recurrent networks (delays 0..2, either edge recurrent, weight_exp, resets, timing, refractory,
    compare, bias): whole runs with states, chunked runs and streams equal the numpy engine's bits."""
    rng = np.random.default_rng(seed)
    g = recurrent_net(rng, int(rng.integers(3, 80)), projections=projections, sparse=sparse,
                      start_step=int(rng.choice([0, 0, 5])))
    x = random_spikes(rng, 25, batch, 12, rate=float(rng.uniform(0.1, 0.6))).astype(np.int64)
    reference = simulate(g, x, engine="numpy", record=True)
    compiled = simulate(g, x, record=True)
    np.testing.assert_array_equal(compiled.output, reference.output)
    for key, value in reference.states["n"].items():
        np.testing.assert_array_equal(compiled.states["n"][key], value)
    np.testing.assert_array_equal(Simulator(g, chunk_steps=chunk).run(x).output, reference.output)
    np.testing.assert_array_equal(streamed(g, x, chunk), reference.output)


def test_the_compiled_loop_is_taken(loop_runs, rng):
    g = recurrent_net(rng, 30, projections=2, sparse=True, start_step=3)
    x = random_spikes(rng, 40, 2, 12).astype(np.int64)
    Simulator(g, chunk_steps=7).run(x)
    assert loop_runs == ["n"] * 6


@pytest.mark.parametrize("weight", [8, 255], ids=["int16-lanes", "int32-lanes"])
def test_lane_widths_at_full_activity(weight):
    """Every neuron fires every step (a strong bias): 150 active inputs times |w| = 8 stays in int16 lanes, times
    254 (> 2^15) needs int32 lanes; both equal the numpy engine."""
    rng = np.random.default_rng(weight)
    neuron = dict(bias_mant=np.full(150, 4000), bias_exp=6, vth=np.full(150, 1), reset_timing="immediate",
                  reset_mode="zero", refractory=0)
    g = recurrent_net(rng, 150, weight=weight, neuron=neuron)
    x = random_spikes(rng, 12, 2, 12).astype(np.int64)
    reference = simulate(g, x, engine="numpy")
    assert reference.output[3:].mean() > 0.9
    np.testing.assert_array_equal(simulate(g, x).output, reference.output)


def test_int64_sums_when_a_row_could_reach_2_31():
    """The projection's scalar int64 path (a row whose active count times the largest |weight| could reach 2^31:
    forced here through the bound) equals the tiled int16 sums and the dense product."""
    rng = np.random.default_rng(5)
    weight = rng.integers(-256, 256, (100, 70)).astype(np.int16)           # [outputs, inputs]
    padded = np.zeros((70, 128), dtype=np.int16)
    padded[:, :100] = weight.T
    tiles = np.ascontiguousarray(padded.reshape(70, 2, 64).transpose(1, 0, 2))
    spikes = (rng.random((3, 70)) < 0.4).astype(np.int64)
    expected = (spikes @ weight.T.astype(np.int64)) >> 1
    dummy = np.zeros(2, dtype=np.int64)
    for bound in (256, 2**31):
        out = np.empty((3, 100), dtype=np.int64)
        recurrent._project(spikes, 0, 3, np.empty((3, 70), np.int32), np.empty(3, np.int64), tiles, bound, True,
                           dummy, dummy, dummy, -1, np.empty((3, 128), np.int64), out)
        np.testing.assert_array_equal(out, expected)


def test_samples_split_over_threads(monkeypatch):
    """A chunk large enough to split samples over threads (OMP_NUM_THREADS=2) gives the numpy engine's bits."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    rng = np.random.default_rng(11)
    g = recurrent_net(rng, 128, neuron=dict(refractory=0, reset_timing="immediate"))
    x = random_spikes(rng, 64, 17, 12).astype(np.int64)
    np.testing.assert_array_equal(simulate(g, x).output, simulate(g, x, engine="numpy").output)


def test_other_forms_keep_the_step_loop(monkeypatch, rng):
    """A recurrent readout (graded, not spikes), the numpy engine and per-synapse delays run step by step, with
    unchanged results."""
    taken = []
    monkeypatch.setattr(recurrent.RecurrentLoop, "run", lambda *a, **k: taken.append(a))
    x = random_spikes(rng, 20, 2, 12).astype(np.int64)
    readout = recurrent_net(rng, 10, spiking=False, weight=5)
    varied = recurrent_net(rng, 10, per_synapse_delays=True)
    for g in (readout, varied):
        np.testing.assert_array_equal(simulate(g, x).output, simulate(g, x, engine="numpy").output)
    Simulator(recurrent_net(rng, 10), engine="numpy").run(x)
    assert not taken
