"""The register-tiled product of spikes (nmcompile.ir.event_product, jit.spike_product) equals the numpy engine's
exact product bit for bit: random shapes (tiles cut inside the last 64 columns), int8 and int16 weights, int16 sums
right at 2^15 and past it (int32 lanes), inputs it must hand over (graded, dense), row splits over threads, and
whole networks with batches and delays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.ir import event_product, fixed, jit
from nmcompile.ir import ops as O
from nmcompile.ir.event_product import SpikeProduct
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator, simulate


def tiled_only(product: SpikeProduct, x: np.ndarray) -> np.ndarray:
    out = product.spikes(x)
    assert out is not None, "the tiled path refused an input it should take"
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.03, 0.2]), st.sampled_from([127, 128, 256]),
       st.integers(-3, 2))
def test_spike_product_equals_numpy_product(seed, density, weight_max, exp):
    rng = np.random.default_rng(seed)
    n_out, n_in, rows = int(rng.integers(1, 200)), int(rng.integers(1, 150)), int(rng.integers(1, 40))
    weight = rng.integers(-weight_max, weight_max + 1, (n_out, n_in))
    x = (rng.random((rows, n_in)) < density).astype(np.int64)
    product = SpikeProduct(weight, exp)
    if np.count_nonzero(x) <= 0.25 * x.size:       # else (small arrays at 20 %) the BLAS product takes it
        np.testing.assert_array_equal(tiled_only(product, x), x @ weight.T)
    reference = SpikeProduct(weight, exp)
    reference.set_engine("numpy")
    np.testing.assert_array_equal(product(x), reference(x))
    np.testing.assert_array_equal(product(x), fixed.floor_shift(x @ weight.T, exp))


@pytest.mark.parametrize("weight", [127, -128, 255, -256])
@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_sums_at_the_int16_edge(weight, extra):
    """Rows whose sum is the largest an int16 lane holds, and one more active input: the int32 lanes take over
    exactly where the bound count * |w|max reaches 2^15."""
    count = (1 << 15) // abs(weight) + extra
    inputs = 4 * count                              # at most 25 % active: still the event-driven path
    x = np.zeros((3, inputs), dtype=np.int64)
    x[0, :count] = 1
    x[1, ::4] = 1
    x[2, 1] = 1
    w = np.full((70, inputs), weight)
    w[5] = -w[5]
    expected = x @ w.T
    np.testing.assert_array_equal(tiled_only(SpikeProduct(w, 0), x), expected)


def test_inputs_the_tiled_path_hands_over():
    rng = np.random.default_rng(1)
    weight = rng.integers(-128, 128, (30, 40))
    product = SpikeProduct(weight, -2)
    graded = (rng.random((5, 40)) < 0.1) * rng.integers(-9, 10, (5, 40))
    graded[0, 0] = 3
    dense = (rng.random((5, 40)) < 0.6).astype(np.int64)
    for x in (graded, dense):
        assert product.spikes(x) is None
        np.testing.assert_array_equal(product(x), fixed.floor_shift(x @ weight.T, -2))
    wide = SpikeProduct(rng.integers(-(1 << 20), 1 << 20, (30, 40)), 0)     # int32 weights: never tiled
    x = (rng.random((5, 40)) < 0.1).astype(np.int64)
    assert not wide.tiled
    np.testing.assert_array_equal(wide(x), x @ wide.general.weight_t)


def test_sums_that_could_reach_2_to_31_are_handed_over():
    x = np.zeros((1, 8), dtype=np.int64)
    x[0, 0] = 1
    tiles = np.zeros((1, 8, jit.TILE_WIDTH), dtype=np.int8)
    active, starts, out = np.empty(9, np.int32), np.empty(2, np.int64), np.empty((1, 4), np.int64)
    assert not jit.spike_product(x, active, starts, tiles, out, 1 << 31, 8)
    assert not jit.spike_product(x, active, starts, tiles, out, 1, 0)           # more active than allowed
    assert jit.spike_product(x, active, starts, tiles, out, 1, 1)


def test_rows_split_over_threads_equal_one_thread(monkeypatch):
    rng = np.random.default_rng(5)
    weight = rng.integers(-256, 256, (100, 90))
    x = (rng.random((41, 90)) < 0.1).astype(np.int64)
    monkeypatch.setattr(event_product, "PARALLEL_MIN_SYNAPSES", 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    np.testing.assert_array_equal(tiled_only(SpikeProduct(weight, 0), x), x @ weight.T)


def layer_stack(rng: np.random.Generator, n: int, delay: int) -> Graph:
    """bench_lava's network, smaller: input -> 3 x (QLinear -> QNeuron)."""
    g = Graph("stack")
    prev = g.add("in", O.Input(shape=(n,)))
    for k in range(3):
        proj = g.add(f"fc{k}", O.QLinear(weight=rng.integers(-40, 41, (n, n)) * 2, delay=delay))
        g.connect(prev, proj)
        prev = g.add(f"lif{k}", O.QNeuron(shape=(n,), du=4095, dv=410, vth=300))
        g.connect(proj, prev)
    g.connect(prev, g.add("out", O.Output(shape=(n,))))
    g.verify()
    return g


@pytest.mark.parametrize("delay, chunk", [(1, None), (2, 3), (0, 1), (5, 2)])
def test_network_with_a_batch_equals_numpy_engine(delay, chunk):
    rng = np.random.default_rng(delay)
    g = layer_stack(rng, 150, delay)
    x = (rng.random((30, 4, 150)) < 0.1).astype(np.int64)
    reference = simulate(g, x, engine="numpy", record=True).values
    values = Simulator(g, chunk_steps=chunk).run(x).output
    np.testing.assert_array_equal(values, reference["out"])
    assert reference["lif2"].any()                 # spikes reached the last layer
