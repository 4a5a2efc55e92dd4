"""Event-driven float32 convolution of sparse inputs (spikes).

A convolution over spikes is a scatter: each nonzero input x[c, y, x] adds x * weight[:, c, ky, kx] to the output
positions whose window covers it,

    out[o, oy, ox] = bias[o] + sum over nonzero x[c, y, x] and (ky, kx) with
                     oy * sh - ph + ky * dh = y,  ox * sw - pw + kx * dw = x   of   x[c, y, x] * w[o, c, ky, kx]

so its work is (nonzero inputs) x (kernel positions) x (output channels) instead of (output positions) x (kernel
positions) x (input channels) x (output channels) for the dense product. The sum of each output starts from its bias
and adds the inputs in the order (c, y, x): a different summation order from a dense product's, which
docs/semantics.md allows for float32 only. float64 products never come here.

Each row (one step of one sample) accumulates in a channels-last scratch map [OH, OW, C_out] (the output channels of
one position are contiguous, so every event is a few vector adds of C_out lanes), which is then stored transposed to
the [C_out, OH, OW] layout of the IR. Rows are split over the process's cores (the loops release the GIL) when a call
brings enough work (an estimated PARALLEL_MIN_SECONDS). The nonzero inputs of a channel's whole plane are listed
first, 16 values per vector compare and compress-store (no branch on the values), then its events run in one loop
whose per-input geometry is a table lookup: listing them line by line, one step per set bit of a 16-bit mask, cost
about 15 ns per input in mispredicted loop exits (measured on 30 x 30 planes at 7 % density: 31 -> 20 ns per input
of the strided 12->32 5x5 layer, 1.45 -> 1.17 ms per 100 rows of the 2->12 5x5 layer, one thread).
"""

from __future__ import annotations

import math

import numpy as np

from nmcompile.ir import jit
from nmcompile.ir.spare import SpareOutputs
from nmcompile.ir.vector_ops import VECTOR, add_runs, add_scaled_runs, list_nonzero, store_transposed

LANES = VECTOR           # output channels are padded to a multiple of this in the scratch map: every run of adds is
                         # whole vectors of 16 float32 (512 bits)

# The cost model that chooses between this scatter and torch's dense kernels (arraymath.Convolution), in ns of one
# core, fitted to `bench_simulate.py --sections convolution` (benchmarks/README.md, 2026-12-01, Xeon with AVX-512):
EVENT_VECTOR_NS = 1.6    # one vector add of a run (load, add, store of 16 lanes, with its share of the loop and of
                         # its input's table lookup): measured 1.2 ns on the 2->12 5x5 layer, 1.4 on the 16->32 3x3,
                         # 1.7 on the 12->32 5x5/2 layer (short runs) since the inputs are listed per plane
EVENT_INPUT_NS = 0.6     # listing one input value (every input of every row is visited once)
EVENT_TILE_NS = 60.0     # storing 16 positions x 16 channels channels-first (a transpose) and resetting them
TORCH_MULTIPLY_ADDS_PER_NS = 70.0   # torch's blocked float32 kernels on one core when a window has at least
TORCH_FULL_TAPS = 128               # this many taps (C_in x KH x KW); proportionally less below (2->12 5x5: 27/ns)
PARALLEL_MIN_SECONDS = 5e-4         # an estimated scatter from this long is split over the cores (jit.split_rows)


@jit.jit
def scatter_plane(plane, channel_w, weights, targets, at_step, w_step, scratch, listed):
    """The events of one input channel's plane (flat, C-contiguous) added into the channels-last scratch: its
    nonzero values listed 16 at a time in ascending position p (into listed, int32, len(plane) + VECTOR), then each
    adds its runs (targets[p]: scratch offset, weight offset from channel_w, runs, vectors; conv_events), times the
    value where it is not 1."""
    plane_size = plane.shape[0]
    whole = plane_size - plane_size % VECTOR
    count = 0
    for start in range(0, whole, VECTOR):
        count += list_nonzero(plane, start, listed, count)
    for p in range(whole, plane_size):
        listed[count] = p
        count += plane[p] != 0
    for n in range(count):
        p = listed[n]
        value = plane[p]
        at, wat, runs, vectors = targets[p, 0], channel_w + targets[p, 1], targets[p, 2], targets[p, 3]
        if value == 1:
            add_runs(scratch, at, at_step, weights, wat, w_step, runs, vectors)
        else:
            add_scaled_runs(scratch, at, at_step, weights, wat, w_step, runs, vectors, value)


@jit.jit
def conv_events(x, weight_runs, targets, row_steps, bias, out_w, out, scratch, listed):
    """out[r] = bias + the events of x[r] (module docstring) for every row r of x [R, C_in, H, W] (groups 1, width
    dilation 1).

    An input at column xx reaches the output columns ox = (xx + pw - kx) / sw of the kernel columns kx = q, q + sw,
    q + 2 sw, ... (q = (xx + pw) mod sw): consecutive output columns, so in the channels-last scratch
    [OH * OW * lanes] (flat; C_out padded with zeros to `lanes`, a multiple of LANES) each kernel row adds one
    contiguous run. weight_runs [C_in, KH, sw, n, lanes] holds those runs: [c, ky, q, j] is
    weight[:, c, ky, q + (length_q - 1 - j) * sw] (ascending output columns). An input row y reaches the kernel rows
    ky0, ky0 + ky_step, ... of the output rows oy0, oy0 + oy_step, ... (oy_step <= 0; row_steps holds (ky_step,
    oy_step)). The geometry is a table (no division in the loop): targets [H * W, 4] holds for the input position
    p = y * W + xx the scratch offset of its first run, the offset of its first run in weight_runs[c], its number of
    runs (kernel rows) and the length of each in vectors of VECTOR lanes (0 runs: it reaches no output). The runs of
    an input are one `add_runs` (nmcompile.ir.vector_ops), in ascending ky. bias [lanes] is each position's starting
    value: the scratch holds it on entry and is left holding it again (the pass that stores a row transposed into
    out [R, C_out, OH * OW] (OW = out_w) puts the bias back), so a row costs one pass over the scratch besides its
    events. The nonzero inputs of each channel's plane are listed first, 16 at a time (`list_nonzero`, into
    listed [H * W + VECTOR], int32), in ascending p: so the sum of an output adds its inputs in the order (c, y, x),
    and no loop's trip count depends on where the spikes are but the one over the plane's events."""
    rows, c_in = x.shape[0], x.shape[1]
    lanes = weight_runs.shape[4]
    c_out, positions = out.shape[1], out.shape[2]
    per_kernel_row = weight_runs.shape[2] * weight_runs.shape[3] * lanes
    per_channel = weight_runs.shape[1] * per_kernel_row
    flat_w = weight_runs.reshape(-1)
    groups = lanes // VECTOR
    at_step, w_step = row_steps[1] * out_w * lanes, row_steps[0] * per_kernel_row
    for r in range(rows):
        for c in range(c_in):
            scatter_plane(x[r, c].reshape(-1), c * per_channel, flat_w, targets, at_step, w_step, scratch, listed)
        row_out = out[r].reshape(-1)
        whole = positions - positions % VECTOR
        for first in range(0, whole, VECTOR):
            for group in range(groups):
                store_transposed(scratch, lanes, bias, row_out, positions, c_out, first, group)
        for position in range(whole, positions):
            base = position * lanes
            for o in range(c_out):
                row_out[o * positions + position] = scratch[base + o]
            for o in range(lanes):
                scratch[base + o] = bias[o]


class EventConvolution:
    """The event-driven float32 convolution of a weight [C_out, C_in, *K] (1-D or 2-D, groups 1, dilation 1 along
    the last axis: `applies`) with its bias."""

    def __init__(self, weight: np.ndarray, stride, padding, dilation, bias: np.ndarray | None):
        weight = np.asarray(weight, dtype=np.float32)
        if weight.ndim == 3:                                   # 1-D: a 2-D convolution of height 1
            weight = weight[:, :, None, :]
            stride, padding, dilation = (1, *stride), (0, *padding), (1, *dilation)
        c_out, c_in, kernel_h, kernel_w = weight.shape
        stride_w = int(stride[1])
        self.run_lengths = [max(-(-(kernel_w - q) // stride_w), 0) for q in range(stride_w)]
        self.longest = max(self.run_lengths)
        self.lanes = -(-c_out // LANES) * LANES
        runs = np.zeros((c_in, kernel_h, stride_w, self.longest, self.lanes), np.float32)
        for q, length in enumerate(self.run_lengths):
            for j in range(length):
                runs[:, :, q, j, :c_out] = weight[:, :, :, q + (length - 1 - j) * stride_w].transpose(1, 2, 0)
        self.weight_runs = runs
        self.bias = np.zeros(self.lanes, np.float32)
        if bias is not None:
            self.bias[:c_out] = np.asarray(bias, np.float32).reshape(-1)
        self.stride, self.padding, self.dilation_h = tuple(map(int, stride)), tuple(map(int, padding)), int(dilation[0])
        self.c_in, self.c_out, self.kernel = c_in, c_out, (kernel_h, kernel_w)
        common = math.gcd(self.stride[0], self.dilation_h)
        self.row_steps = np.array([self.stride[0] // common, -(self.dilation_h // common)], np.int64)
        self._tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._spares = SpareOutputs()       # the output array of an earlier call, once nothing holds it (ir/spare.py)

    @staticmethod
    def applies(dilation, groups: int) -> bool:
        """Whether a convolution of this dilation and groups has an event-driven form here."""
        return groups == 1 and int(dilation[-1]) == 1

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        (sh, sw), (ph, pw) = self.stride, self.padding
        return ((height + 2 * ph - self.dilation_h * (self.kernel[0] - 1) - 1) // sh + 1,
                (width + 2 * pw - self.kernel[1]) // sw + 1)

    def tables(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """conv_events' targets and the scratch's starting value (the bias at every position) for inputs of
        height x width (built once per size), from the targets of each input row (first output row, first kernel
        row, number of kernel rows) and column (first output column, offset of its run, the run's vectors). The
        kernel rows an input row reaches, in ascending ky, are every (sh / g)-th with output rows dh / g apart
        (g = gcd(sh, dh)): `row_steps`."""
        if (height, width) not in self._tables:
            (sh, sw), (ph, pw) = self.stride, self.padding
            out_h, out_w = self.out_size(height, width)
            rows = np.zeros((height, 3), np.int64)
            for y in range(height):
                reached = [((y + ph - ky * self.dilation_h) // sh, ky) for ky in range(self.kernel[0])
                           if y + ph - ky * self.dilation_h >= 0 and (y + ph - ky * self.dilation_h) % sh == 0
                           and (y + ph - ky * self.dilation_h) // sh < out_h]
                if reached:
                    rows[y] = (*reached[0], len(reached))
            cols = np.zeros((width, 3), np.int64)
            for xx in range(width):
                phase = (xx + pw) % sw
                length = self.run_lengths[phase]
                last_col = (xx + pw - phase) // sw                # the output column of kernel column `phase`
                first_j, stop_j = max(length - 1 - last_col, 0), length - max(last_col - (out_w - 1), 0)
                if stop_j > first_j:
                    cols[xx] = (last_col - (length - 1) + first_j, (phase * self.longest + first_j) * self.lanes,
                                (stop_j - first_j) * self.lanes // VECTOR)
            per_kernel_row = self.weight_runs.shape[2] * self.weight_runs.shape[3] * self.lanes
            targets = np.zeros((height, width, 4), np.int64)
            targets[..., 0] = rows[:, None, 0] * out_w * self.lanes + cols[None, :, 0] * self.lanes
            targets[..., 1] = rows[:, None, 1] * per_kernel_row + cols[None, :, 1]
            targets[..., 2] = np.where(cols[None, :, 2] > 0, rows[:, None, 2], 0)
            targets[..., 3] = cols[None, :, 2]
            self._tables[height, width] = targets.reshape(-1, 4), np.tile(self.bias, out_h * out_w)
        return self._tables[height, width]

    def costs(self, x: np.ndarray, active: int) -> tuple[float, float]:
        """Estimated seconds on one core of (this scatter, torch's dense kernels) for x [R, C_in, *S] with `active`
        nonzero inputs, in ns:

            scatter = vectors * EVENT_VECTOR_NS + R * C_in * |S| * EVENT_INPUT_NS + tiles * EVENT_TILE_NS
            vectors = active * KH * KW / (sh * sw) * lanes / 16,   tiles = R * ceil(OH * OW / 16) * lanes / 16
            dense   = R * OH * OW * C_out * taps / (TORCH_MULTIPLY_ADDS_PER_NS * min(1, taps / TORCH_FULL_TAPS))

        with taps = C_in * KH * KW (a kernel's reach ignores the borders: an estimate, never a result)."""
        spatial = x.shape[2:] if x.ndim == 4 else (1, *x.shape[2:])
        out_h, out_w = self.out_size(*spatial)
        rows, taps = x.shape[0], self.c_in * self.kernel[0] * self.kernel[1]
        vectors = active * self.kernel[0] * self.kernel[1] / (self.stride[0] * self.stride[1]) * self.lanes / VECTOR
        tiles = rows * -(-out_h * out_w // VECTOR) * self.lanes / VECTOR
        events = (vectors * EVENT_VECTOR_NS + rows * self.c_in * spatial[0] * spatial[1] * EVENT_INPUT_NS
                  + tiles * EVENT_TILE_NS)
        torch_rate = TORCH_MULTIPLY_ADDS_PER_NS * min(1.0, taps / TORCH_FULL_TAPS)
        dense = rows * out_h * out_w * self.c_out * taps / torch_rate
        return events * 1e-9, dense * 1e-9

    def __call__(self, x: np.ndarray, active: int | None = None) -> np.ndarray:
        """The convolution of x [R, C_in, *S] (float32), [R, C_out, *S']; `active` (about the number of nonzero
        inputs, counted here when not given) decides whether to split the rows over threads."""
        one_d = x.ndim == 3
        x4 = np.ascontiguousarray(x[:, :, None, :] if one_d else x, dtype=np.float32)
        rows = x4.shape[0]
        out_h, out_w = self.out_size(x4.shape[2], x4.shape[3])
        targets, bias_map = self.tables(x4.shape[2], x4.shape[3])
        out = self._spares.take((rows, self.c_out, out_h * out_w), np.dtype(np.float32))
        active = int(np.count_nonzero(x4.view(np.int32))) if active is None else active   # bits: faster
        seconds = self.costs(x4, active)[0]

        def run(first: int, stop: int) -> None:
            conv_events(x4[first:stop], self.weight_runs, targets, self.row_steps, self.bias, out_w, out[first:stop],
                        bias_map.copy(), np.empty(x4.shape[2] * x4.shape[3] + VECTOR, np.int32))

        jit.split_rows(rows, seconds >= PARALLEL_MIN_SECONDS, run)
        return out.reshape(rows, self.c_out, *((out_w,) if one_d else (out_h, out_w)))
