"""Event-driven integer products of spikes: the compiled engine's form of a QLinear whose input is sparse 0/1.

    out[r, j] = sum over k with x[r, k] = 1 of W[j, k]          (x binary, at most EVENT_DENSITY of it nonzero)

Two compiled passes per call (nmcompile.ir.jit). `spike_lists` turns each row of x into the list of its active
inputs. `tiled_sums` then walks the weights tile by tile: a tile is jit.TILE_WIDTH (64) output columns, the weights
stored tile-major so that a tile is contiguous and stays in the L1/L2 cache while every row uses it; for one row
and one tile the weight pieces of the active inputs are added in SIMD registers (`jit.tile_sum16/32`: int8 or int16
weights sign-extended into int16 or int32 lanes) and written once. Per active input and tile that is a few vector
loads and adds and no store, where a row-at-a-time accumulation (jit.accumulate_events) loads, adds and stores its
whole partial-sum row for every active input.

Exactness: the lanes are int16 when every partial sum provably stays below 2^15 (the row's active count times the
largest |weight|), else int32 below 2^31; beyond that, and for graded (non 0/1) inputs or wider weights, the
product goes to `arraymath.ExactProduct` (jit.accumulate_events or BLAS). Integer sums are exact in any order, so
every path gives the bits of the numpy engine's product (tests/ir/test_event_product.py).
"""

from __future__ import annotations

import numpy as np

from nmcompile.ir import arraymath, fixed

PARALLEL_MIN_SYNAPSES = 1 << 25  # below this many synapses (rows x inputs x outputs) per call one thread:
                                 # at 10 % activity ~3 M adds, ~60 us at ~60 G adds/s
CACHE_LINE = 64


def aligned_empty(shape: tuple[int, ...], dtype, alignment: int = CACHE_LINE) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a cache line (`aligned_copy`)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_copy(array: np.ndarray, alignment: int = CACHE_LINE) -> np.ndarray:
    """A C-contiguous copy of `array` whose data starts on a cache line: a tile's 64-byte row of int8 weights is then
    one line, not two (measured: 1.5 against 2.3 us per 1000x1000 row product at 10 % activity, 16-byte offset)."""
    copy = aligned_empty(array.shape, array.dtype, alignment)
    copy[...] = array
    return copy



class SpikeProduct:
    """floor_shift(x @ weight.T, exp) for int64 x [rows, in], exact: binary x with at most EVENT_DENSITY nonzero
    through `spike_product` (rows split over jit.worker_threads() threads when the work is large enough),
    everything else, and everything with engine 'numpy', through `arraymath.ExactProduct`."""

    engine = "compiled"

    def __init__(self, weight: np.ndarray, exp: int):
        self.general = arraymath.ExactProduct(weight, exp)
        self.exp = exp
        self.outputs, self.inputs = np.shape(weight)
        self.tiled = self.general.events_weight_t.dtype.itemsize <= 2 and self.general.weight_t.size > 0
        self._weight_tiles: np.ndarray | None = None

    def weight_tiles(self, width: int) -> np.ndarray:
        """The weights [in, out] (int8 or int16) cut into tiles of `width` output columns, zero-padded, tile-major:
        [tiles, in, width] (built on first use)."""
        if self._weight_tiles is None:
            narrow = self.general.events_weight_t
            tiles = -(-self.outputs // width)
            padded = np.zeros((self.inputs, tiles * width), dtype=narrow.dtype)
            padded[:, : self.outputs] = narrow
            self._weight_tiles = aligned_copy(padded.reshape(self.inputs, tiles, width).transpose(1, 0, 2))
        return self._weight_tiles

    def set_engine(self, engine: str) -> None:
        self.engine = engine
        self.general.set_engine(engine)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.spikes(x) if self.engine == "compiled" and self.tiled and x.size else None
        if out is None:
            return self.general(x)
        return fixed.floor_shift(out, self.exp) if self.exp else out

    def spikes(self, x: np.ndarray) -> np.ndarray | None:
        """The product of x [..., in] through `spike_product` (int64 [..., out]), or None when x is not binary,
        has more than EVENT_DENSITY nonzero values (in a share of rows given to one thread) or its sums could
        reach 2^31."""
        from nmcompile.ir import jit

        rows = jit.as_rows(x)
        count, inputs = rows.shape
        out = np.empty((count, self.outputs), dtype=np.int64)
        active = np.empty(count * (inputs + 1), dtype=np.int32)     # room for each row's packed list + 1
        tiles = self.weight_tiles(jit.TILE_WIDTH)

        def part(first: int, stop: int) -> bool:
            return jit.spike_product(rows[first:stop], active[first * (inputs + 1):stop * (inputs + 1)],
                                     np.empty(stop - first + 1, dtype=np.int64), tiles, out[first:stop],
                                     self.general.weight_max, int(arraymath.EVENT_DENSITY * (stop - first) * inputs))

        # one range per thread: every range reads the whole weight matrix once
        if not all(jit.split_rows(count, rows.size * self.outputs >= PARALLEL_MIN_SYNAPSES, part, 1)):
            return None
        return out.reshape((*x.shape[:-1], self.outputs))
