"""Recurrent float32 components as one compiled loop per chunk (nmcompile.ir.recurrent_float): taken, equal to the
numpy engine where every sum is exact in float32, close to a float64 reference otherwise, identical to itself
across chunkings and streams; other forms and float64 keep the step loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.ir import ops as O
from nmcompile.ir import recurrent_float
from nmcompile.ir import simulate as simulate_module
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator
from tests.conftest import random_spikes

NEURONS = ("LIF", "IF", "CubaLIF", "MPBNLIF")


def dyadic(rng: np.random.Generator, shape, top: int = 16) -> np.ndarray:
    """Multiples of 1/8 in [-top/8, top/8]: sums of a few thousand of them are exact in float32."""
    return rng.integers(-top, top + 1, shape) / 8.0


def neuron_op(rng: np.random.Generator, kind: str, size: int, start_step: int = 0) -> O.Op:
    """A float neuron layer of `kind` with random reset, timing, comparison, refractory period and bias."""
    timing = str(rng.choice(["immediate", "delayed", "snntorch_immediate"])) if kind != "MPBNLIF" else "immediate"
    mode = "subtract" if timing == "snntorch_immediate" else str(rng.choice(["zero", "subtract", "none"]))
    common = dict(shape=(size,), threshold=rng.uniform(0.5, 2.0, size), compare=str(rng.choice([">", ">="])),
                  reset_mode=mode, reset_timing=timing, bias=rng.choice([0.0, 0.05]) * rng.standard_normal(size),
                  gain=float(rng.choice([1.0, 0.8])), start_step=start_step,
                  refractory=int(rng.choice([0, 0, 2])) if timing == "immediate" else 0)
    if kind == "IF":
        return O.IF(**common)
    if kind == "CubaLIF":
        return O.CubaLIF(alpha=rng.uniform(0.3, 0.9, size), beta=rng.uniform(0.6, 1.0, size), **common)
    if kind == "MPBNLIF":
        return O.MPBNLIF(beta=0.9, bn_mean=rng.normal(0, 0.1, size), bn_var=rng.uniform(0.5, 2, size),
                         bn_weight=rng.uniform(0.5, 1.5, size), bn_bias=rng.normal(0, 0.1, size), **common)
    return O.LIF(beta=rng.uniform(0.6, 1.0, size), **common)


def recurrent_net(rng: np.random.Generator, size: int, *, kind: str = "LIF", exact: bool = False,
                  projections: int = 1, start_step: int = 0, inputs: int = 12) -> Graph:
    """Input -> Linear (-> or ~>) N with `projections` feedback projections N -> P_k -> N (a Linear with or without
    bias, every second one a Scale, random recurrent edge placements) -> Output. `exact`: Linear weights and biases
    are multiples of 1/8, so every product sum is exact in float32 whatever its order."""
    def weights(shape, spread):
        return dyadic(rng, shape) if exact else rng.normal(0, spread, shape)

    g = Graph("recurrent")
    g.add("in", O.Input(shape=(inputs,)))
    g.add("fc", O.Linear(weight=weights((size, inputs), 0.8)))
    g.add("n", neuron_op(rng, kind, size, start_step))
    g.add("out", O.Output(shape=(size,)))
    g.chain("in", "fc")
    g.connect("fc", "n", recurrent=bool(rng.integers(0, 2)))           # an outside input may lag a step too
    g.connect("n", "out")
    for k in range(projections):
        if k % 2:
            op: O.Op = O.Scale(scale=weights(size, 0.5))
        else:
            op = O.Linear(weight=weights((size, size), 0.3), bias=weights(size, 0.1) if rng.integers(0, 2) else None)
        recurrent_in = bool(rng.integers(0, 2))
        g.add(f"rec{k}", op)
        g.connect("n", f"rec{k}", recurrent=recurrent_in)
        g.connect(f"rec{k}", "n", recurrent=not recurrent_in or bool(rng.integers(0, 2)))
    g.verify()
    return g


def streamed(graph: Graph, x: np.ndarray, chunks: list[int]) -> np.ndarray:
    """The output of a float32 stream fed in chunks of the given sizes (cycled)."""
    sim = Simulator(graph, "float32")
    sim.start(x.shape[1])
    parts, t, k = [], 0, 0
    while t < x.shape[0]:
        parts.append(sim.feed(x[t : t + chunks[k % len(chunks)]])["out"])
        t, k = t + chunks[k % len(chunks)], k + 1
    return np.concatenate(parts)


@pytest.fixture
def loop_runs(monkeypatch):
    """Counts the float loop's runs and fails any recurrent component that goes to the step loop."""
    runs = []
    original = recurrent_float.FloatRecurrentLoop.run

    def counted(self, *args, **kwargs):
        runs.append(self.neuron)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(recurrent_float.FloatRecurrentLoop, "run", counted)
    monkeypatch.setattr(simulate_module, "_run_stepwise",
                        lambda *a, **k: pytest.fail("a recurrent component went to _run_stepwise"))
    return runs


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 3]), st.integers(1, 3), st.sampled_from(NEURONS))
def test_exact_sums_equal_the_numpy_engine(seed, batch, projections, kind):
    """Weights in 1/8 steps (every sum exact in float32): the compiled loop's spikes and states equal the numpy
    engine's bits, for every neuron kind, reset, timing, refractory period, start step and edge placement."""
    rng = np.random.default_rng(seed)
    g = recurrent_net(rng, int(rng.integers(3, 60)), kind=kind, exact=True, projections=projections,
                      start_step=int(rng.choice([0, 0, 4])))
    x = random_spikes(rng, 20, batch, 12, rate=float(rng.uniform(0.1, 0.6))).astype(np.float32)
    ours = Simulator(g, "float32").run(x, record=True)
    reference = Simulator(g, "float32", engine="numpy").run(x, record=True)
    np.testing.assert_array_equal(ours.output, reference.output)
    for state in reference.states["n"]:
        np.testing.assert_array_equal(ours.states["n"][state], reference.states["n"][state])


def test_the_compiled_loop_is_taken(loop_runs, rng):
    g = recurrent_net(rng, 20, projections=2)
    Simulator(g, "float32", chunk_steps=4).run(random_spikes(rng, 10, 2, 12).astype(np.float32))
    assert loop_runs == ["n"] * 3


def test_close_to_a_float64_reference(rng):
    """Gaussian weights: the float32 loop's membrane stays within float32 rounding of the float64 numpy engine's
    while their spikes agree (a spike may flip once a membrane lands within those bits of the threshold)."""
    g = recurrent_net(rng, 200, projections=2)
    x = random_spikes(rng, 60, 2, 12, rate=0.3).astype(np.float32)
    ours = Simulator(g, "float32").run(x, record=True)
    exact = Simulator(g, "float64", engine="numpy").run(x.astype(np.float64), record=True)
    differs = np.flatnonzero((ours.output != exact.output).any(axis=(1, 2)))
    agreed = int(differs[0]) if differs.size else x.shape[0]
    assert agreed >= 30 and ours.output[:agreed].any()
    np.testing.assert_allclose(ours.states["n"]["v"][:agreed], exact.states["n"]["v"][:agreed], rtol=1e-5,
                               atol=1e-4)


@pytest.mark.parametrize("kind", ["LIF", "CubaLIF"])
def test_chunks_and_streams_agree_bit_for_bit(kind, rng):
    """Gaussian weights (sums rounded): whole runs, runs in chunks of 1, 3 and 7 steps and streams of uneven chunks
    give the compiled loop's same bits, start step included."""
    g = recurrent_net(rng, 64, kind=kind, projections=3, start_step=5)
    x = random_spikes(rng, 40, 3, 12, rate=0.4).astype(np.float32)
    whole = Simulator(g, "float32").run(x).output
    assert whole.any()
    for chunk in (1, 3, 7):
        np.testing.assert_array_equal(Simulator(g, "float32", chunk_steps=chunk).run(x).output, whole)
    np.testing.assert_array_equal(streamed(g, x, [2, 9, 1, 5]), whole)


def test_samples_split_over_threads(monkeypatch):
    """A chunk large enough to split samples over threads (OMP_NUM_THREADS=2) gives the one-thread bits."""
    rng = np.random.default_rng(5)
    g = recurrent_net(rng, 256)
    x = random_spikes(rng, 64, 9, 12).astype(np.float32)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    alone = Simulator(g, "float32").run(x).output
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    np.testing.assert_array_equal(Simulator(g, "float32").run(x).output, alone)


def test_other_forms_keep_the_step_loop(monkeypatch, rng):
    """A recurrent readout (fed-back values not 0/1), a Linear with delays (weights in 1/8 steps: exact sums),
    float64 and the numpy engine run step by step; float64 under the compiled engine keeps the numpy engine's
    bits."""
    taken = []
    monkeypatch.setattr(recurrent_float.FloatRecurrentLoop, "run", lambda *a, **k: taken.append(a))
    x = random_spikes(rng, 20, 2, 12).astype(np.float32)
    delayed = Graph("delayed")
    delayed.add("in", O.Input(shape=(12,)))
    delayed.add("fc", O.Linear(weight=dyadic(rng, (10, 12))))
    delayed.add("n", O.LIF(shape=(10,), beta=0.9))
    delayed.add("rec", O.Linear(weight=dyadic(rng, (10, 10), 4), delays=np.ones((10, 10), dtype=np.int64)))
    delayed.add("out", O.Output(shape=(10,)))
    delayed.chain("in", "fc", "n", "out")
    delayed.chain("n", "rec", "n")
    delayed.verify()
    li = Graph("readout")
    li.add("in", O.Input(shape=(12,)))
    li.add("fc", O.Linear(weight=rng.normal(0, 1, (10, 12))))
    li.add("n", O.LI(shape=(10,), beta=0.9, reset_mode="none"))
    li.add("rec", O.Linear(weight=rng.normal(0, 0.3, (10, 10))))
    li.add("out", O.Output(shape=(10,)))
    li.chain("in", "fc", "n", "out")
    li.connect("n", "rec", recurrent=True)
    li.connect("rec", "n")
    li.verify()
    # float32 step loops multiply with torch's sgemm under the compiled engine and numpy's under the numpy engine
    np.testing.assert_allclose(Simulator(li, "float32").run(x).output,
                               Simulator(li, "float32", engine="numpy").run(x).output, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(Simulator(delayed, "float32").run(x).output,
                                  Simulator(delayed, "float32", engine="numpy").run(x).output)
    spiking = recurrent_net(rng, 30, projections=2)
    np.testing.assert_array_equal(Simulator(spiking, "float64").run(x.astype(np.float64)).output,
                                  Simulator(spiking, "float64", engine="numpy").run(x.astype(np.float64)).output)
    Simulator(spiking, "float32", engine="numpy").run(x)
    assert not taken


def test_dense_sums_are_in_input_order(rng):
    """Gaussian weights, 150 outputs (three tiles, the last one padded): each output is the sequential float32 sum
    of the active inputs' weights in increasing input index, then + bias, bit for bit."""
    inputs, outputs, batch = 90, 150, 5
    weight_t = rng.normal(0, 1, (inputs, outputs)).astype(np.float32)
    bias = rng.normal(0, 1, outputs).astype(np.float32)
    spikes = random_spikes(rng, 1, batch, inputs, rate=0.4)[0].astype(np.float32)
    tiles = -(-outputs // recurrent_float.TILE_COLUMNS)
    out = np.zeros((batch, outputs), dtype=np.float32)
    recurrent_float._project(spikes, 1, batch, recurrent_float.DENSE, recurrent_float._tiles(weight_t, tiles), bias,
                             bias, True, np.empty((batch, inputs), np.int32), np.empty(batch, np.int64),
                             np.empty((batch, tiles * recurrent_float.TILE_COLUMNS), np.float32), out)
    expected = np.zeros((batch, outputs), dtype=np.float32)
    for b in range(1, batch):
        for i in np.flatnonzero(spikes[b]):
            expected[b] += weight_t[i]
        expected[b] += bias
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(("neuron", "feedback", "reset", "delay"), [
    ("RLeaky", "all_to_all", "zero", True), ("RLeaky", "one_to_one", "subtract", False),
    ("RSynaptic", "all_to_all", "subtract", True)])
def test_snntorch_recurrent_layers_run_in_the_loop(loop_runs, neuron, feedback, reset, delay):
    """snnTorch's RLeaky (all-to-all and one-to-one feedback) and RSynaptic, lowered by the frontend: both layers
    run in the compiled loop and their float32 spikes equal snnTorch's own float32 forward."""
    from nmcompile.frontend.check import compare
    from nmcompile.frontend.trace import graph_from_module
    from tests.frontend import models

    model = models.snntorch_dense(neuron, reset, delay, feedback)
    graph, trace = graph_from_module(model, (12,))
    x = random_spikes(np.random.default_rng(0), 50, 4, 12).astype(np.float32)
    agreement = compare(model, graph, trace, x, "float32")
    assert sorted(set(loop_runs)) == sorted(n for n in graph.nodes if graph.node(n).role == "neuron")
    assert agreement.mismatches == 0, agreement
