"""Fused float32 dense chains (nmcompile.ir.dense_chain): which nodes form one, and that a fused run gives the unfused
engine's bits exactly, with real weights (the same product per row and the same neuron update: no summation order
changes), spikes and final membrane potentials, whatever the batch, blocks of samples, chunks or threads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.ir import dense_chain, jit
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator


def neuron(rng: np.random.Generator, size: int, kind: str):
    """A LIF or IF layer of `size` neurons with random per-neuron parameters, reset mode, timing and comparison."""
    reset_mode = str(rng.choice(["zero", "subtract", "none"]))
    timings = ["immediate", "immediate", "delayed"] + (["snntorch_immediate"] if reset_mode == "subtract" else [])
    params = {"threshold": rng.choice([-0.5, 0.5, 1.0, 2.5], size), "reset_mode": reset_mode,
              "reset_timing": str(rng.choice(timings)), "compare": str(rng.choice([">", ">="])),
              "v_reset": rng.choice([0.0, -0.25], size), "gain": rng.choice([1.0, 0.5, 2.0], size),
              "bias": rng.choice([0.0, 0.25, -0.5], size), "v_init": rng.choice([0.0, 0.5], size)}
    if kind == "LIF":
        return O.LIF(shape=(size,), beta=rng.choice([0.9, 0.5, 1.0], size), **params)
    return O.IF(shape=(size,), **params)


def mlp(rng: np.random.Generator, sizes: list[int], kinds: list[str] | None = None) -> Graph:
    """in [sizes[0]] -> (Linear (real weights) -> LIF/IF) per further size -> out."""
    g = Graph("dense_chain")
    prev = g.add("in", O.Input(shape=(sizes[0],)))
    for index, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        bias = rng.normal(0, 0.3, n_out) if rng.random() < 0.5 else None
        projection = g.add(f"p{index}", O.Linear(weight=rng.normal(0, 0.7, (n_out, n_in)), bias=bias))
        g.connect(prev, projection)
        kind = kinds[index] if kinds else str(rng.choice(["LIF", "IF"]))
        prev = g.add(f"n{index}", neuron(rng, n_out, kind))
        g.connect(projection, prev)
    g.connect(prev, g.add("out", O.Output(shape=(sizes[-1],))))
    g.verify()
    return g


def inputs(rng: np.random.Generator, steps: int, batch: int, size: int, graded: bool) -> np.ndarray:
    x = (rng.random((steps, batch, size)) < 0.3).astype(np.float32)
    return x * rng.normal(1, 1, x.shape).astype(np.float32) if graded else x


def assert_fused_equals_unfused(g: Graph, x: np.ndarray, **options) -> None:
    """A run through the dense chain equals the unfused compiled engine (a recording run: no chains) bit for bit:
    outputs and every neuron's final v."""
    fused = Simulator(g, "float32", **options)
    assert any(isinstance(c, dense_chain.DenseChain) for c in fused._chains().values()), "no dense chain"
    unfused = Simulator(g, "float32").run(x, record=True)
    np.testing.assert_array_equal(fused.run(x).output, unfused.output)
    for name, kernel in fused._kernels().items():
        if name in unfused.states:
            np.testing.assert_array_equal(np.asarray(kernel.v), unfused.states[name]["v"][-1], err_msg=name)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.sampled_from([1, 3, 10, 16, 31, 32, 40, 64, 65, 100]), min_size=2,
                                           max_size=4),
       st.sampled_from([1, 2, 5, 33]), st.booleans())
def test_a_dense_chain_gives_the_unfused_bits(seed, sizes, batch, graded):
    rng = np.random.default_rng(seed)
    g = mlp(rng, sizes)
    assert_fused_equals_unfused(g, inputs(rng, 12, batch, sizes[0], graded))


def test_blocks_chunks_threads_and_streams_change_nothing(monkeypatch):
    rng = np.random.default_rng(1)
    g = mlp(rng, [40, 64, 24, 10], ["LIF", "IF", "LIF"])
    x = inputs(rng, 30, 37, 40, graded=False)
    whole = Simulator(g, "float32").run(x).output
    assert whole.sum() > 0
    np.testing.assert_array_equal(Simulator(g, "float32", chunk_steps=7).run(x).output, whole)
    sim = Simulator(g, "float32")
    sim.start(37)
    np.testing.assert_array_equal(np.concatenate([sim.feed(x[t:t + 4])["out"] for t in range(0, 30, 4)]), whole)
    np.testing.assert_array_equal(Simulator(g, "float32").run(x[:, 5:6]).output, whole[:, 5:6])  # a sample alone
    monkeypatch.setattr(dense_chain, "BLOCK_VALUES", 200)                  # blocks of 3 samples (64 neurons wide)
    np.testing.assert_array_equal(Simulator(g, "float32").run(x).output, whole)
    monkeypatch.setattr(jit, "PARALLEL_MIN_ADDS", 0)                        # samples split over two threads
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    np.testing.assert_array_equal(Simulator(g, "float32").run(x).output, whole)
    assert_fused_equals_unfused(g, x)


def test_the_digits_mlp_shape_runs_fused():
    """bench_simulate's digits MLP shape (64 -> 64 LIF -> 10 LIF): one dense chain from the first Linear to the
    output layer, writing the Output directly."""
    g = mlp(np.random.default_rng(2), [64, 64, 10], ["LIF", "LIF"])
    chains = Simulator(g, "float32")._chains()
    assert list(chains) == ["p0"]
    chain = chains["p0"]
    assert isinstance(chain, dense_chain.DenseChain) and chain.last == "n1" and chain.output == "out"
    assert list(chain.geometry[:, dense_chain.SHORT]) == [0, 1]       # the 10-neuron layer: a block as one row


def test_what_does_not_fuse(monkeypatch):
    rng = np.random.default_rng(3)
    g = mlp(rng, [20, 30, 5], ["LIF", "LIF"])
    monkeypatch.setattr(dense_chain, "MAX_WEIGHT_BYTES", 30 * 32 * 4 - 1)   # p1's tiled weights fit, p0's do not
    chains = Simulator(g, "float32")._chains()
    assert list(chains) == ["p1"] and chains["p1"].last == "n1"            # the wide layer runs unfused
    x = inputs(rng, 10, 4, 20, graded=True)
    assert_fused_equals_unfused(g, x)
    monkeypatch.setattr(dense_chain, "MAX_WEIGHT_BYTES", 0)
    assert Simulator(g, "float32")._chains() == {}
    np.testing.assert_array_equal(Simulator(g, "float32").run(x).output, Simulator(g, "float32").run(
        x, record=True).output)

    cuba = Graph("cuba")                                                  # a synaptic current: not fused
    cuba.connect(cuba.add("in", O.Input(shape=(6,))), cuba.add("p", O.Linear(weight=np.ones((4, 6)))))
    cuba.connect("p", cuba.add("n", O.CubaLIF(shape=(4,), alpha=0.5, beta=0.9)))
    cuba.connect("n", cuba.add("out", O.Output(shape=(4,))))
    assert Simulator(cuba, "float32")._chains() == {}
    assert Simulator(mlp(rng, [8, 8, 4]), "float64")._chains() == {}     # float32 runs only


def test_a_flatten_between_layers_and_the_chunk_length():
    """A Flatten between a neuron layer and the next Linear joins the chain; the chain's inner nodes hold no values, so
    a chunk's length is set by the input and output alone (the float32 bound, FLOAT32_CHUNK_BYTES: a dense chain needs
    no long chunks)."""
    from nmcompile.ir.simulate import FLOAT32_CHUNK_BYTES

    rng = np.random.default_rng(5)
    g = Graph("flattened")
    g.connect(g.add("in", O.Input(shape=(12,))), g.add("p0", O.Linear(weight=rng.normal(0, 0.7, (30, 12)))))
    g.connect("p0", g.add("n0", neuron(rng, 30, "LIF")))
    g.connect("n0", g.add("flat", O.Flatten()))
    g.connect("flat", g.add("p1", O.Linear(weight=rng.normal(0, 0.7, (7, 30)), bias=rng.normal(0, 0.3, 7))))
    g.connect("p1", g.add("n1", neuron(rng, 7, "IF")))
    g.connect("n1", g.add("out", O.Output(shape=(7,))))
    sim = Simulator(g, "float32")
    chain = sim._chains()["p0"]
    assert chain.followers == ["n0", "flat", "p1", "n1"] and not chain.long_chunks
    assert sim._chunk(10**6, 50, False) == -(-10**6 // -(-10**6 // (FLOAT32_CHUNK_BYTES // (50 * 12 * 4))))
    assert_fused_equals_unfused(g, inputs(rng, 15, 6, 12, graded=True), chunk_steps=4)


def test_nan_or_inf_in_its_input_is_refused():
    """A dense chain does not check its input itself: the simulator's pass over each chunk does."""
    from nmcompile.errors import ShapeError

    g = mlp(np.random.default_rng(6), [8, 16, 4])
    x = inputs(np.random.default_rng(7), 10, 3, 8, graded=True)
    x[7, 2, 5] = np.nan
    with pytest.raises(ShapeError, match="input 'in' holds NaN or inf"):
        Simulator(g, "float32", chunk_steps=4).run(x)


@pytest.mark.parametrize("steps, batch", [(0, 3), (5, 0)])
def test_empty_runs(steps, batch):
    g = mlp(np.random.default_rng(4), [6, 7, 3])
    assert Simulator(g, "float32").run(np.zeros((steps, batch, 6), np.float32)).output.shape == (steps, batch, 3)
