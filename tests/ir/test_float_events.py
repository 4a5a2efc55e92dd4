"""The event-driven float32 convolution (nmcompile.ir.float_events) against the dense one, the routing between them,
and the splitting of rows, samples and torch calls over threads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.ir import arraymath, jit
from nmcompile.ir import ops as O
from nmcompile.ir.float_events import EventConvolution
from nmcompile.ir.kernels import FloatNeuron

EPS32 = float(np.finfo(np.float32).eps)


@st.composite
def conv_cases(draw):
    """A random 1-D or 2-D convolution geometry (strides up to 3, larger than the kernel too), weight and input."""
    seed = draw(st.integers(0, 2**32 - 1))
    one_d = draw(st.booleans())
    rng = np.random.default_rng(seed)
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 40))     # c_out crosses 16 and 32 lanes
    nd = 1 if one_d else 2
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(nd))
    dilation = (1,) if one_d else (draw(st.integers(1, 2)), 1)
    spans = [d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True)]   # a valid output needs S >= span
    spatial = tuple(draw(st.integers(max(8, span), 12)) for span in spans)
    x = (rng.random((3, c_in, *spatial)) < draw(st.sampled_from([0.05, 0.3]))).astype(np.float32)
    if draw(st.booleans()):                                                  # graded values, not only spikes
        x *= rng.integers(-3, 4, x.shape).astype(np.float32)
    return rng, x, (c_out, c_in, *kernel), stride, padding, dilation, draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(conv_cases())
def test_event_convolution_of_integer_weights_is_exact(case):
    """Integer-valued weights, bias and inputs: every partial sum is a small integer, exact in float32 in any order,
    so the scatter must equal the exact integer convolution value for value (geometry and indexing)."""
    rng, x, shape, stride, padding, dilation, with_bias = case
    weight = rng.integers(-40, 41, shape)
    bias = rng.integers(-5, 6, shape[0]) if with_bias else None
    events = EventConvolution(weight.astype(np.float32), stride, padding, dilation,
                              None if bias is None else bias.astype(np.float32))
    expected = arraymath.int_conv(x.astype(np.int64), weight, stride, padding, dilation, 1)
    if bias is not None:
        expected = expected + bias.reshape(-1, *(1,) * len(stride))
    result = events(x)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, expected.astype(np.float32))


@settings(max_examples=30, deadline=None)
@given(conv_cases())
def test_event_convolution_of_float_weights_is_within_the_summation_bound(case):
    """Real weights: |float32 result - exact| <= (terms + 1) * eps32 * (|x| conv |w| + |bias|), the bound of recursive
    float32 summation of `terms` products (each product of a 0/1 or small-integer input is exact)."""
    rng, x, shape, stride, padding, dilation, with_bias = case
    weight = rng.normal(0, 1, shape).astype(np.float32)
    bias = rng.normal(0, 1, shape[0]).astype(np.float32) if with_bias else None
    geometry = (stride, padding, dilation, 1)
    exact = arraymath.conv(x.astype(np.float64), weight.astype(np.float64), *geometry)
    magnitude = arraymath.conv(np.abs(x).astype(np.float64), np.abs(weight).astype(np.float64), *geometry)
    if bias is not None:
        exact = exact + bias.reshape(-1, *(1,) * len(stride))
        magnitude = magnitude + np.abs(bias).reshape(-1, *(1,) * len(stride))
    terms = int(np.prod(shape[1:])) + 1
    error = np.abs(EventConvolution(weight, stride, padding, dilation, bias)(x) - exact)
    assert np.all(error <= (terms + 1) * EPS32 * magnitude)


def test_float32_convolutions_take_events_over_sparse_inputs_only_and_float64_is_unchanged():
    rng = np.random.default_rng(3)
    weight, bias = rng.normal(0, 1, (8, 2, 5, 5)), rng.normal(0, 1, (8, 1, 1))
    geometry = ((1, 1), (2, 2), (1, 1), 1)
    sparse = (rng.random((4, 2, 20, 20)) < 0.01).astype(np.float32)
    dense = (rng.random((4, 2, 20, 20)) < 0.5).astype(np.float32)
    conv32 = arraymath.Convolution(weight, *geometry, np.dtype(np.float32), bias.astype(np.float32))
    events = EventConvolution(weight, *geometry[:3], bias)
    scatter, torch_dense = events.costs(sparse, int(np.count_nonzero(sparse)))
    assert scatter <= torch_dense
    scatter, torch_dense = events.costs(dense, int(np.count_nonzero(dense)))
    assert scatter > torch_dense
    np.testing.assert_array_equal(conv32(sparse), events(sparse))
    np.testing.assert_array_equal(conv32(dense), conv32._torch(dense, with_bias=True))
    conv64 = arraymath.Convolution(weight, *geometry, np.dtype(np.float64), bias)
    for x in (sparse, dense):
        x64 = x.astype(np.float64)
        np.testing.assert_array_equal(conv64(x64), arraymath.conv(x64, weight, *geometry) + bias)


def test_grouped_and_width_dilated_convolutions_have_no_event_form():
    assert not EventConvolution.applies((1, 1), groups=2)
    assert not EventConvolution.applies((1, 2), groups=1)
    conv = arraymath.Convolution(np.ones((4, 1, 3, 3)), (1, 1), (0, 0), (1, 1), 2, np.dtype(np.float32))
    assert conv._events() is None
    x = np.zeros((1, 2, 6, 6), np.float32)
    x[0, 1, 2, 2] = 1
    np.testing.assert_array_equal(conv(x), arraymath.conv(x.astype(np.float64), np.ones((4, 1, 3, 3)), (1, 1),
                                                          (0, 0), (1, 1), 2))


def test_rows_split_over_threads_equal_one_thread(monkeypatch):
    """Rows are independent: the event convolution and torch's convolution (integer, exact) give the same values
    split over threads as on one."""
    rng = np.random.default_rng(4)
    weight = rng.normal(0, 1, (20, 3, 3, 3)).astype(np.float32)
    x = (rng.random((7, 3, 9, 9)) < 0.1).astype(np.float32)
    events = EventConvolution(weight, (2, 1), (1, 0), (1, 1), None)
    int_weight = rng.integers(-100, 101, (4, 3, 3, 3))
    int_conv = arraymath.Convolution(int_weight, (1, 1), (1, 1), (1, 1), 1, np.dtype(np.int64))
    one_thread = events(x)
    monkeypatch.setattr(jit, "PARALLEL_MIN_ADDS", 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    np.testing.assert_array_equal(events(x), one_thread)
    int_x = rng.integers(0, 2, (5, 3, 8, 8))
    np.testing.assert_array_equal(int_conv(int_x), arraymath.int_conv(int_x, int_weight, (1, 1), (1, 1), (1, 1), 1))


def test_torch_runs_on_the_calling_thread_and_its_thread_count_is_restored():
    import torch

    before = torch.get_num_threads()
    with arraymath.one_torch_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_neuron_split_over_samples_equals_numpy(monkeypatch, dtype):
    monkeypatch.setattr(jit, "PARALLEL_MIN_FLOAT_UPDATES", 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    rng = np.random.default_rng(7)
    op = O.LIF(shape=(4, 5), beta=rng.uniform(0.5, 1.0, (4, 5)), threshold=1.0, reset_mode="zero")
    x = rng.normal(0.3, 0.6, (6, 7, 4, 5)).astype(dtype)
    results = []
    for engine in ("numpy", "compiled"):
        kernel = FloatNeuron(op, (4, 5), np.dtype(dtype))
        kernel.set_engine(engine)
        results.append((kernel.run(x[:3]), kernel.run_chunk(x[3:]), kernel.v.copy()))
    for numpy_part, compiled_part in zip(*results, strict=True):
        np.testing.assert_array_equal(compiled_part, numpy_part)
