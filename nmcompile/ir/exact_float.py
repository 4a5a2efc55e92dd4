"""Integer arrays as float32 operands of an exact product, in one pass.

An integer convolution runs in float32 when every partial sum provably stays below 2^24 (arraymath.Convolution):
the bound needs max|x| and the product needs x as float32. `as_float32` gives both from one read of x, split over
the process's cores, instead of numpy's abs, max and astype (three passes over an int64 array that is as large as a
chunk of a layer's spikes: at batch 32 on a 12x30x30 layer, 69 MB per chunk of 25 steps). Where max|x| >= 2^24 the
float32 values are not exact; the caller then does not use them.
"""

from __future__ import annotations

import numpy as np

from nmcompile.ir import jit

INT64_MAX = (1 << 63) - 1


@jit.jit
def _convert_rows(x, out):
    """out[r, k] = float32(x[r, k]) for int64 x [rows, n]; returns max |x| (2^63 - 1 for x = -2^63, whose |x| has
    no int64)."""
    most = 0
    for r in range(x.shape[0]):
        row, out_row = x[r], out[r]
        for k in range(x.shape[1]):
            value = row[k]
            out_row[k] = value
            magnitude = -value if value < 0 else value
            most = max(most, magnitude if magnitude >= 0 else INT64_MAX)
    return most


def as_float32(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(x as a new C-contiguous float32 array of x's shape, max|x|) for an int64 array x."""
    if not x.size:
        return np.empty(x.shape, dtype=np.float32), 0
    rows = jit.as_rows(np.asarray(x, dtype=np.int64).reshape(x.shape[0] if x.ndim else 1, -1))
    out = np.empty(rows.shape, dtype=np.float32)
    parts = jit.split_rows(rows.shape[0], rows.size >= jit.PARALLEL_MIN_FLOAT_UPDATES,
                           lambda a, b: _convert_rows(rows[a:b], out[a:b]))
    return out.reshape(x.shape), int(max(parts))
