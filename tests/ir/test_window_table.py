"""The table form of a first convolution over binary planes (nmcompile.ir.window_table): its table entries are the
sequential float32 sums it documents, its outputs are the documented order bit for bit (real weights) and equal the
scatter's exactly where every sum is exact (integer weights); a graded step is left to the scatter untouched."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.ir import window_table
from nmcompile.ir.event_product import aligned_copy
from nmcompile.ir.float_events import EventConvolution
from nmcompile.ir.vector_ops import VECTOR


def test_table_entries_are_sums_in_ascending_bit_order():
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 1, (5, 2, 3, 3)).astype(np.float32)            # C_out 5, C_in 2, 3 x 3: 6 bits
    table = window_table.build_table(weight, 16)
    assert table.shape == (3, 64, 16)
    for ky in range(3):
        for pattern in range(64):
            expected = np.full(16, -0.0, np.float32)
            for bit in range(6):                                         # bit = c KW + kx, ascending
                if pattern >> bit & 1:
                    piece = np.zeros(16, np.float32)
                    piece[:5] = weight[:, bit // 3, ky, bit % 3]
                    expected = expected + piece
            np.testing.assert_array_equal(table[ky, pattern], expected)
    assert np.signbit(table[:, 0]).all()                                 # the empty pattern adds an exact -0.0


@numba.njit
def table_products(planes, table, bias, sums, in_h, in_w, out_h, out_w, kh, kw, sh, sw, ph, pw, dh, lanes):
    """window_table's pieces as the fused chain runs them (float_chain._layer_update, less the neuron update): the
    sums of every output position for one step's planes [C_in, H * W] if they are binary (True), else False."""
    patterns = np.zeros((in_h + 1) * out_w, np.int64)             # the last row: a padding row's patterns, 0
    if not window_table.find_patterns(planes, in_h, in_w, out_w, kw, sw, pw, lanes,
                                      np.empty((planes.shape[0], in_h), np.int64), patterns):
        return False
    rows = np.empty((kh, 2), np.int64)
    for oy in range(out_h):
        window_table.kernel_rows(oy, in_h, out_w, kh, sh, ph, dh, 1 << (planes.shape[0] * kw), lanes, rows)
        window_table.table_row_sums(sums, oy * out_w * lanes, bias, table, patterns, rows, kh, out_w, lanes)
    return True


def run_table(x_planes, weight, bias, stride, padding, dilation_h, lanes):
    """window_table's sums [OH, OW, lanes] and its return value for one step's planes [C_in, H, W]."""
    c_in, height, width = x_planes.shape
    kh, kw = weight.shape[2:]
    out_h = (height + 2 * padding[0] - dilation_h * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - kw) // stride[1] + 1
    table = aligned_copy(window_table.build_table(weight, lanes).reshape(-1))
    bias_lanes = aligned_copy(np.zeros(lanes, np.float32))
    bias_lanes[:weight.shape[0]] = bias
    sums = aligned_copy(np.full(out_h * out_w * lanes + VECTOR, 7.0, np.float32))
    done = table_products(np.ascontiguousarray(x_planes.reshape(c_in, -1), np.float32), table, bias_lanes, sums,
                          height, width, out_h, out_w, kh, kw, stride[0], stride[1], padding[0], padding[1],
                          dilation_h, lanes)
    return done, sums[:out_h * out_w * lanes].reshape(out_h, out_w, lanes)


def documented_sums(x_planes, weight, bias, stride, padding, dilation_h, out_shape):
    """bias + table[0, pattern_0] + ... + table[KH - 1, pattern_KH-1] in float32, in numpy, output by output."""
    c_in, height, width = x_planes.shape
    c_out, _, kh, kw = weight.shape
    table = window_table.build_table(weight, c_out)
    out = np.empty((*out_shape, c_out), np.float32)
    for oy in range(out_shape[0]):
        for ox in range(out_shape[1]):
            acc = bias.astype(np.float32)
            for ky in range(kh):
                y = oy * stride[0] - padding[0] + ky * dilation_h
                pattern = 0
                for c in range(c_in):
                    for kx in range(kw):
                        xx = ox * stride[1] - padding[1] + kx
                        if 0 <= y < height and 0 <= xx < width and x_planes[c, y, xx] != 0:
                            pattern |= 1 << (c * kw + kx)
                acc = acc + table[ky, pattern]
            out[oy, ox] = acc
    return out


@st.composite
def geometries(draw):
    c_in = draw(st.integers(1, 3))
    kw = draw(st.integers(1, window_table.TABLE_BITS // c_in))
    kh = draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, min(2, kw))))
    dilation_h = draw(st.integers(1, 2))
    height = draw(st.integers(max(1, dilation_h * (kh - 1) + 1 - 2 * padding[0]), 12))
    width = draw(st.integers(max(1, kw - 2 * padding[1]), 40))
    c_out = draw(st.sampled_from([1, 12, 17]))
    return draw(st.integers(0, 2**32 - 1)), c_in, c_out, kh, kw, stride, padding, dilation_h, height, width


@settings(max_examples=40, deadline=None)
@given(geometries(), st.sampled_from([0.05, 0.3, 1.0]))
def test_binary_planes_give_the_documented_order_and_the_scatter_exactly(geometry, rate):
    seed, c_in, c_out, kh, kw, stride, padding, dilation_h, height, width = geometry
    rng = np.random.default_rng(seed)
    x = (rng.random((c_in, height, width)) < rate).astype(np.float32)
    lanes = -(-c_out // VECTOR) * VECTOR
    real = rng.normal(0, 1, (c_out, c_in, kh, kw)).astype(np.float32)
    bias = rng.normal(0, 1, c_out).astype(np.float32)
    done, sums = run_table(x, real, bias, stride, padding, dilation_h, lanes)
    assert done
    expected = documented_sums(x, real, bias, stride, padding, dilation_h, sums.shape[:2])
    np.testing.assert_array_equal(sums[..., :c_out], expected)             # bit for bit, real weights
    assert not sums[..., c_out:].any()                                     # padded lanes: 0 weights, 0 bias
    integer = rng.integers(-8, 9, (c_out, c_in, kh, kw)).astype(np.float32)
    integer_bias = rng.integers(-8, 9, c_out).astype(np.float32)
    _, by_table = run_table(x, integer, integer_bias, stride, padding, dilation_h, lanes)
    scatter = EventConvolution(integer, stride, padding, (dilation_h, 1), integer_bias)(x[None])[0].reshape(c_out, -1)
    np.testing.assert_array_equal(by_table[..., :c_out].transpose(2, 0, 1).reshape(c_out, -1), scatter)


@pytest.mark.parametrize("value", [0.5, 2.0, -1.0, np.nan, np.inf])
def test_a_graded_step_is_refused_and_its_sums_left_alone(value):
    rng = np.random.default_rng(1)
    x = (rng.random((2, 9, 34)) < 0.2).astype(np.float32)
    x[1, 8, 33] = value                                                    # the very last value of the planes
    done, sums = run_table(x, rng.normal(0, 1, (12, 2, 5, 5)).astype(np.float32), np.zeros(12, np.float32),
                           (1, 1), (0, 0), 1, 16)
    assert not done and np.all(sums == 7.0)


def test_what_has_a_table():
    assert window_table.applies(2, 5, 5, 34, 0, 16)                          # N-MNIST's 2 x 34 x 34, 5 x 5
    assert not window_table.applies(3, 5, 5, 34, 0, 16)                      # 15 bits
    assert not window_table.applies(2, 5, 5, 128, 0, 16)                     # a row beyond 62 bits
    assert not window_table.applies(2, 5, 5, 34, 0, 64)                      # 5 x 1024 x 64 lanes: 1.3 MB
