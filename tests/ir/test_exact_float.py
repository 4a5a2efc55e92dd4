"""exact_float.as_float32: int64 arrays to float32 and max|x| in one pass (what an exact integer convolution needs)."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.ir.exact_float import INT64_MAX, as_float32


@pytest.mark.parametrize("shape", [(3, 2, 5, 5), (7, 11), (1,), (4, 0)])
def test_values_and_the_largest_magnitude(shape):
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 20), 1 << 20, shape)
    converted, most = as_float32(x)
    assert converted.dtype == np.float32 and converted.shape == x.shape and converted.flags.c_contiguous
    np.testing.assert_array_equal(converted, x.astype(np.float32))
    assert most == (int(np.abs(x).max()) if x.size else 0)


def test_a_negative_extreme_and_rows_split_over_threads():
    x = np.zeros((4096, 300), dtype=np.int64)      # large enough to be split over the cores
    x[4000, 7] = -(1 << 40)
    assert as_float32(x)[1] == 1 << 40
    x[10, 3] = np.iinfo(np.int64).min              # |x| has no int64: reported as the largest int64
    assert as_float32(x)[1] == INT64_MAX
    strided = np.arange(24, dtype=np.int64).reshape(2, 3, 4)[:, ::2]
    np.testing.assert_array_equal(as_float32(strided)[0], strided.astype(np.float32))
