"""Projection.effective_synapses: the synapses of some output rows cut from the stored form (kernel, CSR, matrix)
equal the non-zero entries of the dense expansion (`effective_matrix()[rows]`), in the same order, for every
convolution geometry (stride, padding, dilation, groups, 1-D and 2-D), CSR rows in any order with entries that the
sign mode truncates to zero, and dense matrices."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from nmcompile.ir import arraymath
from nmcompile.lowered import ConvWeights, CsrWeights, DenseWeights, Projection


def projection(weights, *, integer=True, sign_mode="mixed", num_weight_bits=9) -> Projection:
    op = SimpleNamespace(numeric="integer" if integer else "float")
    n_out, n_in = weights.shape
    return Projection(name="p", op=op, source="a", dest="b", source_shape=(n_in,), in_shape=(n_in,),
                      out_shape=(n_out,), weights=weights, delay=np.asarray(1), sign_mode=sign_mode,
                      num_weight_bits=num_weight_bits)


def dense_reference(p: Projection, rows: np.ndarray):
    matrix = p.effective_matrix()[rows]
    post, pre = np.nonzero(matrix)
    return post, pre, matrix[post, pre]


def assert_same(p: Projection, rows: np.ndarray) -> None:
    got = p.effective_synapses(rows)
    want = dense_reference(p, rows)
    for name, a, b in zip(("post", "pre", "value"), got, want, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


def conv_weights(rng, cin, cout, kernel, spatial, stride, padding, dilation, groups) -> ConvWeights:
    k = rng.integers(-9, 10, (cout, cin // groups, *kernel)) * (rng.random((cout, cin // groups, *kernel)) < 0.7)
    x = np.zeros((1, cin, *spatial))
    out = arraymath.conv(x, k.astype(np.float64), stride, padding, dilation, groups).shape[1:]
    return ConvWeights(k.astype(np.int64), stride, padding, dilation, groups, (cin, *spatial), tuple(out))


@pytest.mark.parametrize("geometry", [
    dict(cin=2, cout=3, kernel=(3, 3), spatial=(7, 6), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(cin=4, cout=6, kernel=(10, 10), spatial=(16, 16), stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(cin=4, cout=4, kernel=(3, 2), spatial=(9, 8), stride=(2, 3), padding=(2, 1), dilation=(2, 1), groups=2),
    dict(cin=3, cout=6, kernel=(5,), spatial=(17,), stride=(3,), padding=(4,), dilation=(2,), groups=3),
], ids=["padded", "pool-folded", "grouped-dilated", "conv1d"])
def test_convolution_rows_equal_the_dense_expansion(geometry):
    rng = np.random.default_rng(0)
    w = conv_weights(rng, **geometry)
    p = projection(w)
    n_out = w.shape[0]
    assert_same(p, np.arange(n_out))
    assert_same(p, np.sort(rng.choice(n_out, size=n_out // 3, replace=False)))
    assert_same(p, np.zeros(0, dtype=np.int64))


@pytest.mark.parametrize("sign_mode,bits", [("mixed", 9), ("mixed", 6), ("excitatory", 7), ("inhibitory", 8)])
def test_csr_rows_in_any_order_and_truncated_entries(sign_mode, bits):
    """Column indices unsorted within a row, and small values that the sign mode's truncation makes 0 (dropped)."""
    rng = np.random.default_rng(1)
    n_out, n_in = 40, 50
    counts = rng.integers(0, 12, n_out)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate([rng.choice(n_in, size=c, replace=False) for c in counts]).astype(np.int32)
    values = rng.integers(-300, 300, indices.size) * (rng.random(indices.size) < 0.9)
    values[rng.random(values.size) < 0.2] = 1                     # truncated to 0 below 9 bits
    p = projection(CsrWeights(indptr, indices, values.astype(np.int64), n_in), sign_mode=sign_mode,
                   num_weight_bits=bits)
    assert_same(p, np.arange(n_out))
    assert_same(p, np.sort(rng.choice(n_out, size=13, replace=False)))


def test_csr_repeated_index_keeps_both_entries():
    """The integer model sums repeated entries of a CSR row; both stay synapses (the dense expansion sums them)."""
    p = projection(CsrWeights(np.array([0, 3]), np.array([2, 0, 2], dtype=np.int32), np.array([5, 7, -3]), 4))
    post, pre, values = p.effective_synapses()
    assert post.tolist() == [0, 0, 0] and pre.tolist() == [0, 2, 2] and values.tolist() == [7, 5, -3]


def test_dense_rows_and_float_values():
    rng = np.random.default_rng(2)
    matrix = rng.integers(-200, 200, (12, 9)) * (rng.random((12, 9)) < 0.5)
    assert_same(projection(DenseWeights(matrix), num_weight_bits=5), np.array([0, 3, 4, 11]))
    floats = rng.normal(0, 1, (5, 7)) * (rng.random((5, 7)) < 0.5)
    assert_same(projection(DenseWeights(floats), integer=False), np.arange(5))


def test_weight_range_check_reads_csr_entries_like_the_dense_expansion():
    """The target check's weight span of a CSR projection (no expansion) is the dense matrix's: with its zeros
    where a row leaves inputs out, without them where every input is present."""
    from nmcompile.lowered.limits import _weight_span

    rng = np.random.default_rng(3)
    sparse = CsrWeights(np.array([0, 2, 3]), np.array([1, 3, 0], dtype=np.int32), np.array([40, 90, 7]), 4)
    full = CsrWeights(np.array([0, 3, 6]), np.tile(np.arange(3, dtype=np.int32), 2), rng.integers(5, 200, 6), 3)
    for weights in (sparse, full):
        for mode in ("mixed", "excitatory"):
            p = projection(weights, sign_mode=mode, num_weight_bits=7)
            dense = p.effective_matrix()
            assert _weight_span(p) == (int(dense.min()), int(dense.max()))
    assert _weight_span(projection(full))[0] > 0


def test_csr_dense_expansion_sums_a_repeated_index_and_never_wraps():
    """The integer model sums a repeated input index of a row: so does the dense matrix (loihi2 and fpga read it);
    a sum beyond the values' dtype stays wide so the target's weight check refuses it instead of wrapping."""
    fits = CsrWeights(np.array([0, 3]), np.array([2, 0, 2], dtype=np.int32), np.array([5, 7, -3], dtype=np.int8), 4)
    assert fits.to_dense().dtype == np.int8
    assert fits.to_dense().tolist() == [[7, 0, 2, 0]]
    overflow = CsrWeights(np.array([0, 2]), np.array([1, 1], dtype=np.int32), np.array([100, 100], dtype=np.int8), 2)
    assert overflow.to_dense().tolist() == [[0, 200]]
