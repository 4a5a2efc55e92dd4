"""The float32 Linear product of the compiled engine (nmcompile.ir.linear_sums): each output a sum of fused
multiply-adds in input order from zero, then the bias; the events and dense forms give the same bits, and a row's
result depends on nothing but the row (not the call's other rows, its chunking or threads)."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.ir import jit
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.linear_sums import DENSE_ONLY, EVENTS_ONLY, LinearSums
from nmcompile.ir.simulate import Simulator
from tests.conftest import mlp


def bits(values: np.ndarray) -> np.ndarray:
    """The float32 values' bit patterns (NaN and the sign of zero compared exactly)."""
    return np.ascontiguousarray(values).view(np.int32)


def graded(rng: np.random.Generator, rows: int, inputs: int, rate: float) -> np.ndarray:
    """Inputs with zeros, -0, ones, real values, an inf and a NaN."""
    x = rng.normal(0, 1, (rows, inputs)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 1.0
    x[rng.random(x.shape) >= rate] = 0.0
    x[rng.random(x.shape) < 0.05] = -0.0
    if x.size > 8:
        x.flat[3], x.flat[7] = np.inf, np.nan
    x[::3, 0] = 1e-30                                    # rows whose first sum underflows to -0 (weight -1e-30)
    return x


@pytest.mark.parametrize("inputs", [1, 5, 16, 17, 64, 130, 385])
@pytest.mark.parametrize("outputs", [1, 10, 16, 17, 64, 65, 130])
def test_the_events_and_dense_forms_give_the_same_bits(inputs, outputs):
    rng = np.random.default_rng(inputs * 1000 + outputs)
    weight = rng.normal(0, 0.5, (outputs, inputs))
    weight[rng.random(weight.shape) < 0.1] = 0.0
    weight[rng.random(weight.shape) < 0.1] = -0.0
    weight[:, 0] = -1e-30                                # with an input of 1e-30 below: a product that rounds to -0
    bias = rng.normal(0, 0.1, outputs)
    bias[0] = -0.0
    for rate in (0.05, 0.5, 1.0):
        x = graded(rng, 71, inputs, rate)                 # 71 rows: a block of 64, then groups of 4, 2 and 1 rows
        linear = LinearSums(weight, bias)
        events, dense, chosen = linear(x, EVENTS_ONLY), linear(x, DENSE_ONLY), linear(x)
        np.testing.assert_array_equal(bits(events), bits(dense))
        np.testing.assert_array_equal(bits(events), bits(chosen))
        assert events.shape == (71, outputs)


def sequential_sums(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The documented order in numpy float32 for inputs whose products with the weights are exact (0, 1 and powers of
    two): acc = +0, acc = acc + x[:, k] * W[:, k] for k in order, then + bias."""
    acc = np.zeros((x.shape[0], weight.shape[0]), np.float32)
    for k in range(x.shape[1]):
        acc = acc + x[:, k : k + 1] * weight[:, k].astype(np.float32)
    return acc + bias.astype(np.float32)


@pytest.mark.parametrize("dense_from", [EVENTS_ONLY, DENSE_ONLY])
def test_sums_follow_the_documented_order(dense_from):
    rng = np.random.default_rng(3)
    weight, bias = rng.normal(0, 1, (37, 300)), rng.normal(0, 1, 37)
    x = rng.choice(np.array([0, 0, 0, 1, 1, 0.5, 2, -4], np.float32), (23, 300))
    result = LinearSums(weight, bias)(x, dense_from)
    np.testing.assert_array_equal(bits(result), bits(sequential_sums(x, weight, bias)))
    reversed_order = sequential_sums(x[:, ::-1], weight[:, ::-1], bias)
    assert not np.array_equal(result, reversed_order)      # the order is visible in these sums


@pytest.mark.parametrize("dense_from", [EVENTS_ONLY, DENSE_ONLY])
def test_a_product_and_its_sum_round_once(dense_from):
    """(1 + 2^-12)^2 - 1 is 2^-11 + 2^-24 with a fused multiply-add, 2^-11 with a rounded product first."""
    near_one = np.float32(1 + 2**-12)
    weight = np.array([[-1.0, near_one]])
    x = np.array([[1.0, near_one]], np.float32)
    assert LinearSums(weight, None)(x, dense_from)[0, 0] == np.float32(2**-11 + 2**-24)


def test_a_row_does_not_depend_on_its_call(monkeypatch):
    rng = np.random.default_rng(4)
    weight, bias = rng.normal(0, 1, (70, 390)), rng.normal(0, 1, 70)
    x = graded(rng, 203, 390, 0.3)
    linear = LinearSums(weight, bias)
    whole = linear(x)
    for first, stop in ((0, 1), (5, 12), (100, 203), (17, 18)):
        np.testing.assert_array_equal(bits(linear(x[first:stop])), bits(whole[first:stop]))
    for block_rows in (1, 3):                              # blocks of a very wide layer (SCRATCH_BYTES)
        np.testing.assert_array_equal(bits(linear(x, block_rows=block_rows)), bits(whole))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(jit, "PARALLEL_MIN_ADDS", 0)       # rows split over two threads
    np.testing.assert_array_equal(bits(linear(x)), bits(whole))


def test_a_weight_beyond_float32_keeps_the_events_form():
    """1e39 is inf in float32, where fma(0, inf, acc) would be NaN: the layer skips zero inputs in every block, so a
    row's result does not depend on how dense the rest of its block is."""
    linear = LinearSums(np.array([[1e39, 2.0, 1.0]]), None)
    alone = linear(np.array([[0, 1, 0]], np.float32))
    in_a_dense_block = linear(np.array([[0, 1, 0]] + [[1, 1, 1]] * 7, np.float32))
    assert alone[0, 0] == 2.0 and in_a_dense_block[0, 0] == 2.0 and np.isinf(in_a_dense_block[1, 0])
    assert linear(np.array([[0, 1, 0]], np.float32), DENSE_ONLY)[0, 0] == 2.0


def test_a_wrong_input_width_is_refused():
    with pytest.raises(ValueError, match="3 inputs"):
        LinearSums(np.ones((2, 3)), None)(np.ones((4, 5), np.float32))


def test_no_inputs_or_no_rows():
    linear = LinearSums(np.zeros((3, 0)), np.array([1.0, -0.0, 2.0]))
    np.testing.assert_array_equal(bits(linear(np.zeros((4, 0), np.float32))),
                                  bits(np.tile(np.float32([1.0, 0.0, 2.0]), (4, 1))))
    assert LinearSums(np.ones((3, 5)), None)(np.zeros((0, 5), np.float32)).shape == (0, 3)


def test_a_float32_network_gives_the_same_bits_whatever_the_schedule(rng):
    """Linear layers of graded inputs at batch 1, fed a step at a time, in chunks, or in a batch with other samples:
    the same spikes and membrane potentials (torch's kernel, used before, summed calls of fewer than 16 rows in
    another order)."""
    graph = mlp(rng, (40, 30, 20, 7))
    x = rng.normal(0.3, 1.0, (12, 5, 40)).astype(np.float32)
    whole = Simulator(graph, "float32").run(x, record=True)
    for chunk in (1, 5):
        chunked = Simulator(graph, "float32", chunk_steps=chunk)
        np.testing.assert_array_equal(chunked.run(x).output, whole.output)
        for layer in ("lif0", "lif1", "lif2"):
            np.testing.assert_array_equal(bits(chunked._kernels()[layer].v), bits(whole.states[layer]["v"][-1]))
    for sample in range(5):
        alone = Simulator(graph, "float32")
        alone.start(1)
        for t in range(12):
            alone.feed(x[t : t + 1, sample : sample + 1])
        for layer in ("lif0", "lif1", "lif2"):
            np.testing.assert_array_equal(bits(alone._kernels()[layer].v.reshape(-1)),
                                          bits(whole.states[layer]["v"][-1, sample].reshape(-1)))


def test_a_delayed_linear_gives_the_same_bits_whatever_the_schedule():
    """A float32 Linear with per-synapse delays sums each delay group with the same product: a sample alone, fed a
    step at a time, ends with the membrane potentials of the batched run (numpy's product, used before, summed a
    one-row call in another order)."""
    rng = np.random.default_rng(5)
    graph = Graph("delayed")
    graph.connect(graph.add("input", O.Input(shape=(300,))),
                  graph.add("fc", O.Linear(weight=rng.normal(0, 1, (50, 300)), bias=rng.normal(0, 0.1, 50),
                                           delays=rng.integers(0, 3, (50, 300)))))
    graph.connect("fc", graph.add("lif", O.LIF(shape=(50,), beta=0.9, threshold=4.0)))
    graph.connect("lif", graph.add("output", O.Output(shape=(50,))))
    x = rng.normal(0, 1, (6, 9, 300)).astype(np.float32)
    whole = Simulator(graph, "float32").run(x, record=True)
    for sample in range(9):
        alone = Simulator(graph, "float32")
        alone.start(1)
        spikes = [alone.feed(x[t : t + 1, sample : sample + 1])["output"] for t in range(6)]
        np.testing.assert_array_equal(np.concatenate(spikes)[:, 0], whole.output[:, sample])
        np.testing.assert_array_equal(bits(alone._kernels()["lif"].v.reshape(-1)),
                                      bits(whole.states["lif"]["v"][-1, sample]))
