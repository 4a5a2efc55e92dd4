"""Fused float32 feed-forward chains: (Conv2d | Linear -> LIF | IF) pairs, repeated, run sample by sample.

A chain is a run of pairs P_1 -> N_1 -> P_2 -> N_2 ... -> P_L -> N_L (L >= 1; a Flatten may stand between N_k and a
Linear P_{k+1}) in which every P_k is a float Conv2d (groups 1, no dilation; P_1 may have a dilation along the height)
or a Linear without delays, every N_k a float LIF or IF (spiking, any reset mode and timing, no refractory period,
start step 0), every node but N_L has exactly one consumer, the next node of the chain, and at least one P_k is a
convolution. `float_chain_chunk` runs a chunk's steps for one sample at a time, every layer of a step before the
next step, so each sample's state (every layer's v and sums, about 4 bytes per neuron) stays in the core's cache;
samples are split over `jit.worker_threads()` threads.

Layout: inside the chain a layer's values are channels-last, [position][lane] with the channels padded to `lanes`
(a multiple of 16; a Linear layer is one position). Padded lanes never fire (threshold: the largest float32, no
drive). The spikes of N_k are listed as events (position << 16) | channel in ascending (position, channel) order
(nmcompile.ir.neuron_vector.update_and_list), and P_{k+1} reads only those:

- P_1 reads the chain's input (the source's values, channels-first): where the convolution has a window table
  (nmcompile.ir.window_table: C_in x KW <= 10, e.g. a DVS input's two polarities and a kernel 5 wide) and a step's
  planes are binary, each output sums one table entry per kernel row (the row's weights under the window's set bits,
  summed in (c, kx) order) onto its bias, in ascending ky; otherwise (a graded value, NaN, or no table) the nonzero
  values of each channel's plane, in (channel, row, column) order, each add their kernel slice (x times it where
  x != 1) to the sums they reach (nmcompile.ir.float_events' scatter, with its tables); a Linear P_1 adds the weight
  row of each nonzero input.
- a convolution P_{k+1} sums each output position in registers over the events of its window, row by row of the
  window, each row's events in (column, channel) order (nmcompile.ir.window_sums), from its bias;
- a Linear P_{k+1} adds the weight row of each event to its sums, which start at its bias.

So each sum starts at its bias and adds its inputs in the order (row, column, channel) of the layer before (for P_1
the input's own order (channel, row, column), or a binary step's kernel rows): one IEEE float32 addition per lane and
input (per kernel row for a table), a summation order
other than the unfused engine's (torch's kernels or its (channel, row, column) scatter for a convolution; for a Linear,
nmcompile.ir.linear_sums: from zero, the bias last), which docs/semantics.md
allows for float32; integer-valued weights give exact sums either way (tests/ir/test_float_chain.py). The neuron
update is jit.float_neuron's, operation for operation, in 16-lane vectors. Nothing of the inner layers is
written to memory as [T, B, N] values. The chain keeps every layer's v in one channels-last array and gives each
neuron kernel a channels-first view of it as its v, so the kernels hold the state between chunks without a copy
(`FusedFloatChain._state_for`).

Dense layers alone (no convolution) form a `nmcompile.ir.dense_chain.DenseChain` instead, which keeps the unfused
engine's arithmetic: this loop's sample-by-sample per-step calls were not paid back there (bench_simulate's digits
MLP, 64 -> 64 LIF -> 10 LIF, T = 25: 1.61 against 1.45 ms unfused at batch 128 with torch's product, 3x slower with
linear_sums').
"""

from __future__ import annotations

import numpy as np

from nmcompile.ir import dense_chain, jit, window_table
from nmcompile.ir import ops as O
from nmcompile.ir.dense_chain import FloatChainLayer, FloatChainNodes
from nmcompile.ir.event_product import aligned_copy, aligned_empty
from nmcompile.ir.float_events import EventConvolution, scatter_plane
from nmcompile.ir.graph import Graph
from nmcompile.ir.kernels import FloatNeuron, Kernel
from nmcompile.ir.neuron_vector import CHANNEL_BITS, KEEP_SUMS, neuron_flags, update_and_list
from nmcompile.ir.vector_ops import VECTOR, add_event_rows, prefetch_array
from nmcompile.ir.window_sums import OUTPUTS_PER_PASS, append_offsets, event_offsets, window_sums
from nmcompile.ir.window_table import find_patterns, kernel_rows, table_row_sums

PLANES, GATHER, EVENTS = 0, 1, 2       # how a layer's product reads its input (the module docstring's three cases)
MAX_POSITIONS = 1 << (31 - CHANNEL_BITS)   # positions an event can name (int32 events)
MAX_CHANNELS = 1 << CHANNEL_BITS
PARALLEL_MIN_UPDATES = 1 << 15   # neuron updates (steps x samples x neurons) of a chunk from which samples are
                                 # split over threads (about 0.1 ms of work)
PIECES_PER_THREAD = 8            # sample ranges per thread, taken in turn, so a thread on a slower core takes fewer:
                                 # on the 2-vCPU machine of benchmarks/README.md one vCPU ran the chain up to 1.45x
                                 # slower than the other for minutes; the conv net of bench_simulate at batch 128 (2
                                 # threads, runs in turn): 1 range per thread 0.33-0.62 s, 4: 0.23-0.37 s, 8: 0.20-0.30
                                 # s, 16: 0.23-0.30 s

# geometry[k] columns
KIND, POSITIONS, LANES, CHANNELS, IN_H, IN_W, OUT_H, OUT_W, KH, KW, SH, SW, PH, PW, AT_STEP, W_STEP, PER_CHANNEL, \
    OUTPUTS, DH, ROW_TABLE, IN_CHANNELS = range(21)
GEOMETRY = 21


@jit.jit
def _input_products(x, t, b, weights, table, geometry, sums, listed):
    """P_1's sums (from their bias, in `sums`) for step t of sample b: each nonzero input of each channel's plane
    x[t, b, c] (in order) adds its runs, scaled by its value where it is not 1 (float_events.scatter_plane)."""
    for c in range(x.shape[2]):
        scatter_plane(x[t, b, c], c * geometry[PER_CHANNEL], weights, table, geometry[AT_STEP], geometry[W_STEP], sums,
                      listed)


@jit.jit
def _event_products(sums, at, weights, geometry, listed, count):
    """A Linear P_{k+1}'s sums (from their bias) plus the weight rows of the events listed[:count], in order, each
    vector of sums in a register across all events (nmcompile.ir.vector_ops.add_event_rows)."""
    add_event_rows(sums, at, weights, listed, 0, count, geometry[W_STEP], geometry[PER_CHANNEL],
                   geometry[LANES] // VECTOR)


@jit.jit
def _gathered_products(sums, at, weights, bias, geometry, listed, count, starts, offsets, flat):
    """A convolution P_{k+1}'s sums, a group of consecutive output positions of a row at a time (each row in
    ceil(OUT_W / OUTPUTS) groups of as equal sizes as possible), each summed over the events of its window
    (nmcompile.ir.window_sums; listed[:count] the events, starts[q]: the index in `listed` of the first event at
    input position >= q; offsets and flat: scratch lists). The weights [in lanes][KH][KW + 2 (OUTPUTS - 1) SW][lanes]
    have the kernel in the middle columns, so output j of a group reads the kernel columns of its own window and zeros
    elsewhere."""
    in_h, in_w, out_h, out_w = geometry[IN_H], geometry[IN_W], geometry[OUT_H], geometry[OUT_W]
    kh, kw, sh, sw, ph, pw = geometry[KH], geometry[KW], geometry[SH], geometry[SW], geometry[PH], geometry[PW]
    lanes, outputs = geometry[LANES], geometry[OUTPUTS]
    padded_w, margin = kw + 2 * (outputs - 1) * sw, (outputs - 1) * sw
    event_offsets(offsets, listed, count, lanes, geometry[PER_CHANNEL])
    groups = (out_w + outputs - 1) // outputs
    smaller, larger = out_w // groups, out_w % groups     # the first `larger` groups have one output more
    for oy in range(out_h):
        first_ky = max(0, ph - oy * sh)
        stop_ky = min(kh, in_h + ph - oy * sh)
        ox = 0
        for group in range(groups):
            stored = smaller + (group < larger)
            x0 = ox * sw - pw                                 # the first column of output ox's window
            xa, xb = max(x0, 0), min(x0 + (stored - 1) * sw + kw, in_w)
            listed_here = 0
            for ky in range(first_ky, stop_ky if xa < xb else first_ky):     # none: the window is all padding
                row = (oy * sh - ph + ky) * in_w
                listed_here = append_offsets(flat, listed_here, offsets, starts[row + xa], starts[row + xb],
                                             (ky * padded_w - row - x0 + margin) * lanes)   # (ky, kx) of output 0
            window_sums(sums, at + (oy * out_w + ox) * lanes, stored, bias, weights, flat, listed_here, lanes,
                        sw * lanes)
            ox += stored


@jit.jit
def _layer_update(v, sums, at, bias, params, positions, lanes, flags, spikes, listed, starts, geometry, by_table,
                  row_table, patterns, rows, row_sums):
    """N_k's update (nmcompile.ir.neuron_vector.update_and_list) from its sums at `at`, or, `by_table` (N_1, a
    binary step whose patterns are found), from P_1's window-table sums computed an output row at a time into
    row_sums (one row, in cache), each row's update after its sums; the events' count. One call site of
    update_and_list: its 108 loops compile once (about 4 s)."""
    row_count, per_row = (geometry[OUT_H], geometry[OUT_W]) if by_table else (1, positions)
    entries = 1 << (geometry[IN_CHANNELS] * geometry[KW])
    count = np.int64(0)
    for r in range(row_count):
        first = r * per_row
        if by_table:
            kernel_rows(r, geometry[IN_H], per_row, geometry[KH], geometry[SH], geometry[PH], geometry[DH], entries,
                        lanes, rows)
            table_row_sums(row_sums, 0, bias, row_table, patterns, rows, geometry[KH], per_row, lanes)
        source, source_at = (row_sums, -first * lanes) if by_table else (sums, at)
        count = update_and_list(v, source, source_at, bias, params, at, first, first + per_row, lanes, flags, spikes,
                                listed, count, starts)
    return count


FLOAT32_MAX = float(np.finfo(np.float32).max)


@jit.jit
def _finite_planes(planes):
    """Whether every value of one step's input planes [planes, plane size] is finite (|x| <= the largest float32 is
    false for NaN and inf; no early exit, so the loop vectorises)."""
    flat = planes.reshape(-1)
    finite = True
    for i in range(flat.shape[0]):
        finite &= abs(flat[i]) <= FLOAT32_MAX
    return finite


@jit.jit
def float_chain_chunk(first, stop, x, geometry, weights, table, row_table, biases, params, flags, state, out,
                      check_finite):
    """Steps 0..T-1 of a chunk through the chain for the samples first..stop-1 (module docstring): x [T, B, planes,
    plane size] the chain's input (float32, channels-first), geometry [L, GEOMETRY], P_1's scatter table and window
    table (row_table, used for binary steps where geometry[0, ROW_TABLE]), and per layer its weights, bias (per
    lane), neuron parameters [5, lanes or size] (channels-last) and update flags (nmcompile.ir.neuron_vector);
    state [B, sum of the layers' sizes] every layer's v (channels-last, updated); out [T, B, N_L] receives the last
    layer's spikes (channels-first). With `check_finite` (an input nobody checked) a step not read through the window
    table (a binary step is finite) is checked first: False at the first NaN or inf, its sample's states then part
    advanced; else True."""
    steps = x.shape[0]
    layers = geometry.shape[0]
    total, widest, most_positions = 0, x.shape[3], 0      # the input's planes are listed too
    for k in range(layers):
        size = geometry[k, POSITIONS] * geometry[k, LANES]
        total += size
        widest = max(widest, size)
        most_positions = max(most_positions, geometry[k, POSITIONS])
    raw = np.empty(total + VECTOR, np.float32)
    shift = (-raw.ctypes.data % 64) // 4                  # 64-byte aligned: whole vectors never straddle a line
    sums = raw[shift:shift + total]
    spikes = np.empty(widest + VECTOR, np.float32)
    listed = np.empty(widest + VECTOR, np.int32)
    starts = np.empty(most_positions + 1, np.int32)
    offsets = np.empty(widest + VECTOR, np.int32)         # a gathered layer's events as weight offsets
    flat = np.empty(widest + VECTOR, np.int32)            # ... a group's list of them (window_sums)
    table_ready = geometry[0, ROW_TABLE] != 0
    row_words = np.empty((x.shape[2], geometry[0, IN_H]), np.int64)
    patterns = np.zeros((geometry[0, IN_H] + 1) * geometry[0, OUT_W], np.int64)   # the last row: a padding row's
    rows = np.empty((geometry[0, KH], 2), np.int64)
    row_raw = np.empty(geometry[0, OUT_W] * geometry[0, LANES] + VECTOR, np.float32)
    row_sums = row_raw[(-row_raw.ctypes.data % 64) // 4:]
    for b in range(first, stop):
        v = state[b]
        at = 0
        for k in range(layers):                           # the sums at their bias
            lanes = geometry[k, LANES]
            for p in range(geometry[k, POSITIONS]):
                sums[at + p * lanes:at + (p + 1) * lanes] = biases[k]
            at += geometry[k, POSITIONS] * lanes
        for t in range(steps):
            if t + 1 < steps:                             # the next step's input, in cache by the time it is read
                prefetch_array(x[t + 1, b])
            elif b + 1 < stop:
                prefetch_array(x[0, b + 1])
            g = geometry[0]
            by_table = table_ready and find_patterns(x[t, b], g[IN_H], g[IN_W], g[OUT_W], g[KW], g[SW], g[PW],
                                                     g[LANES], row_words, patterns)
            if not by_table:
                if check_finite and not _finite_planes(x[t, b]):
                    return False
                _input_products(x, t, b, weights[0], table, g, sums, listed)
            at = 0
            for k in range(layers):
                positions, lanes = geometry[k, POSITIONS], geometry[k, LANES]
                size = positions * lanes
                table_rows = k == 0 and by_table
                layer_flags = flags[k] | KEEP_SUMS if table_rows else flags[k]     # a row buffer: nothing to reset
                count = _layer_update(v, sums, np.int64(at), biases[k], params[k], positions, lanes, layer_flags,
                                      spikes, listed, starts, geometry[k], table_rows, row_table, patterns, rows,
                                      row_sums)      # np.int64: a literal 0 would be a signature (a compile) more
                if k + 1 == layers:
                    channels = geometry[k, CHANNELS]
                    for c in range(channels):
                        for p in range(positions):
                            out[t, b, c * positions + p] = spikes[p * lanes + c]
                    break
                following = at + size
                if geometry[k + 1, KIND] == GATHER:
                    _gathered_products(sums, following, weights[k + 1], biases[k + 1], geometry[k + 1], listed,
                                       count, starts, offsets, flat)
                else:
                    _event_products(sums, following, weights[k + 1], geometry[k + 1], listed, count)
                at = following
    return True


@jit.jit
def _load_state(v, state, at, lanes):
    """state[b, at + p lanes + c] = v[b, c, p] (a layer's channels-first v, channels-last with padded lanes 0): one
    pass, where numpy's transposing copy into a zeroed array took 8 ms for the conv net's 10 MB at batch 128."""
    batch, channels, positions = v.shape
    for b in range(batch):
        for p in range(positions):
            row = at + p * lanes
            for c in range(channels):
                state[b, row + c] = v[b, c, p]
            for c in range(channels, lanes):
                state[b, row + c] = 0


def _lanes(channels: int) -> int:
    return -(-channels // VECTOR) * VECTOR


class FusedFloatChain(FloatChainNodes):
    """A chain found by `find_float_chains`: `run(x, step0, out)` advances it by a chunk x [T, B, *in] of its input."""

    long_chunks = True       # each chunk loads every sample's state once: the simulator's chunks are 64 MiB long
    checks_input = True      # run(checked=False) checks an input for NaN and inf as it reads it

    def __init__(self, graph: Graph, source: str, layers: list[FloatChainLayer]):
        super().__init__(source, layers)
        shapes = graph.shapes()
        in_shape = tuple(shapes[source])
        # the input's planes: a convolution's channels, else one plane of all values
        self.planes = in_shape[0] if isinstance(graph.node(self.head), O.Conv2d) else 1
        rows, weights, biases, params, flags = [], [], [], [], []
        self.row_table = np.zeros(VECTOR, np.float32)    # P_1's window_table, where it has one (ROW_TABLE)
        previous: tuple[int, int, int] | None = None      # (positions, lanes, channels) of the layer before
        for k, layer in enumerate(layers):
            op = graph.node(layer.projection)
            out_shape = tuple(shapes[layer.projection])
            row = np.zeros(GEOMETRY, np.int64)
            if isinstance(op, O.Conv2d):
                channels, out_h, out_w = out_shape
                positions, lanes = out_h * out_w, _lanes(channels)
                if k == 0:
                    w, table = self._input_convolution(op, in_shape, row)
                    self.row_table = self._row_table(op, in_shape, lanes, row)
                else:
                    w, table = self._gathered_convolution(op, in_shape, lanes, previous[1], row), None
                row[OUT_H], row[OUT_W] = out_h, out_w
            else:                                         # Linear
                channels, positions, lanes = out_shape[0], 1, _lanes(out_shape[0])
                w, table = self._linear(op, k, previous, in_shape, lanes, row)
            bias = np.zeros(lanes, np.float32)                # per lane; padded lanes 0
            if op.bias is not None:
                bias[:channels] = np.asarray(op.bias, np.float32).reshape(-1)
            row[POSITIONS], row[LANES], row[CHANNELS] = positions, lanes, channels
            rows.append(row)
            weights.append(aligned_copy(w.reshape(-1).astype(np.float32)))
            if k == 0:
                self.table = np.ascontiguousarray(table, np.int64)     # P_1's scatter table
            biases.append(aligned_copy(bias))
            params.append(aligned_copy(self._neuron_params(layer.kernel, channels, positions, lanes)))
            flags.append(self._neuron_flags(layer.kernel, k + 1 == len(layers))
                         | (KEEP_SUMS if row[KIND] == GATHER else 0))     # window_sums writes every sum
            previous = (positions, lanes, channels)
            in_shape = out_shape
        self.geometry = np.stack(rows)
        self.weights, self.biases = tuple(weights), tuple(biases)
        self.params = tuple(params)
        self.flags = np.array(flags, np.int64)
        self.sizes = [int(np.prod(layer.kernel.out_shape)) for layer in layers]
        self._state: np.ndarray | None = None
        self._views: list[np.ndarray] = []

    def _state_for(self, batch: int) -> np.ndarray:
        """Every layer's v, channels-last [B, sum of sizes]: the chain's own array (kept for the last batch size), whose
        channels-first views are the kernels' v (so the kernels hold the state between chunks without a copy); read
        from the kernels when one of them was given a new v since (a reset, or a chunk run unfused)."""
        kernels = [layer.kernel for layer in self.layers]
        if (self._state is not None and self._state.shape[0] == batch
                and all(k.v is view for k, view in zip(kernels, self._views, strict=True))):
            return self._state
        sizes = [int(row[POSITIONS] * row[LANES]) for row in self.geometry]
        state = self._state       # reused for the same batch: a fresh 10 MB array's first-touch page faults took ms
        if state is None or state.shape != (batch, sum(sizes)):
            state = aligned_empty((batch, sum(sizes)), np.float32)
        views, at = [], 0
        for kernel, row, size in zip(kernels, self.geometry, sizes, strict=True):
            positions, lanes, channels = int(row[POSITIONS]), int(row[LANES]), int(row[CHANNELS])
            _load_state(np.ascontiguousarray(kernel.v, np.float32).reshape(batch, channels, positions), state, at,
                        lanes)
            view = state[:, at:at + size].reshape(batch, positions, lanes)[:, :, :channels].transpose(0, 2, 1)
            kernel.v = view.reshape(batch, *kernel.out_shape)
            views.append(kernel.v)
            at += size
        self._state, self._views = state, views
        return state

    # -- preparation -------------------------------------------------------------------------------------------
    @staticmethod
    def _input_convolution(op, in_shape, row) -> tuple[np.ndarray, np.ndarray]:
        """P_1 as a convolution over the input planes: float_events' weight runs and tables."""
        bias = None if op.bias is None else np.asarray(op.bias, np.float32).reshape(-1)
        events = EventConvolution(op.weight, op.stride, op.padding, op.dilation, bias)
        _, height, width = in_shape
        targets = events.tables(height, width)[0]
        out_w = events.out_size(height, width)[1]
        per_kernel_row = events.weight_runs.shape[2] * events.weight_runs.shape[3] * events.lanes
        row[KIND] = PLANES
        row[AT_STEP] = events.row_steps[1] * out_w * events.lanes
        row[W_STEP] = events.row_steps[0] * per_kernel_row
        row[PER_CHANNEL] = events.weight_runs.shape[1] * per_kernel_row
        return events.weight_runs, targets

    @staticmethod
    def _row_table(op, in_shape, lanes: int, row) -> np.ndarray:
        """P_1's window_table (flat) and its geometry where it has one (window_table.applies), else a placeholder."""
        c_in, height, width = in_shape
        kernel_h, kernel_w = op.weight.shape[2:]
        row[IN_CHANNELS], row[IN_H], row[IN_W], row[KH], row[KW] = c_in, height, width, kernel_h, kernel_w
        row[SH], row[SW], row[PH], row[PW], row[DH] = *op.stride, *op.padding, op.dilation[0]
        if not window_table.applies(c_in, kernel_h, kernel_w, width, op.padding[1], lanes):
            return np.zeros(VECTOR, np.float32)
        row[ROW_TABLE] = 1
        return aligned_copy(window_table.build_table(np.asarray(op.weight, np.float32), lanes).reshape(-1))

    @staticmethod
    def _gathered_convolution(op, in_shape, lanes: int, in_lanes: int, row) -> np.ndarray:
        """A convolution P_{k+1} for window_sums: weights [in_lanes][KH][KW + 2 margin][lanes], the kernel in columns
        margin .. margin + KW - 1 (margin = (OUTPUTS - 1) x stride), zero elsewhere and for padded channels."""
        weight = np.asarray(op.weight, np.float32)
        c_out, c_in, kernel_h, kernel_w = weight.shape
        outputs = OUTPUTS_PER_PASS
        margin = (outputs - 1) * op.stride[1]
        layout = np.zeros((in_lanes, kernel_h, kernel_w + 2 * margin, lanes), np.float32)
        layout[:c_in, :, margin:margin + kernel_w, :c_out] = weight.transpose(1, 2, 3, 0)
        row[KIND] = GATHER
        row[IN_H], row[IN_W] = in_shape[1], in_shape[2]
        row[KH], row[KW] = kernel_h, kernel_w
        row[SH], row[SW] = op.stride
        row[PH], row[PW] = op.padding
        row[PER_CHANNEL] = kernel_h * (kernel_w + 2 * margin) * lanes
        row[OUTPUTS] = outputs
        return layout

    @staticmethod
    def _linear(op, k: int, previous, in_shape, lanes: int, row) -> tuple[np.ndarray, np.ndarray | None]:
        """A Linear P_k: weight rows [positions][in lanes][lanes] in the order its input's events name them; for P_1
        a table of (0, first row of the position, 1 run, vectors) for the input's scatter, else None (an event's
        row starts at position x W_STEP + channel x PER_CHANNEL)."""
        weight = np.asarray(op.weight, np.float32)            # [out, in], in channels-first order
        out_features = weight.shape[0]
        if k == 0:                                        # the input: one plane of N values
            positions, in_lanes, channels = int(np.prod(in_shape)), 1, 1
            row[KIND] = PLANES
            row[PER_CHANNEL] = 0
        else:
            positions, in_lanes, channels = previous
            row[KIND] = EVENTS
            row[W_STEP], row[PER_CHANNEL] = in_lanes * lanes, lanes
        layout = np.zeros((positions, in_lanes, lanes), np.float32)
        layout[:, :channels, :out_features] = weight.reshape(out_features, channels, positions).transpose(2, 1, 0)
        if k > 0:
            return layout, None
        table = np.zeros((positions, 4), np.int64)
        table[:, 1] = np.arange(positions) * in_lanes * lanes
        table[:, 2] = 1
        table[:, 3] = lanes // VECTOR
        return layout, table

    @staticmethod
    def _neuron_params(kernel: FloatNeuron, channels: int, positions: int, lanes: int) -> np.ndarray:
        """beta, gain, bias, threshold, v_reset channels-last: [5, lanes] where every parameter is one value per
        channel (as for scalars), else [5, positions * lanes]; padded lanes never fire. The values are those the
        unfused loop takes (jit.float_arguments: [N] arrays, beta 1 for IF)."""
        flat = jit.float_arguments(kernel)[2:7]              # beta, gain, bias, threshold, v_reset
        grids = [np.asarray(value, np.float32).reshape(channels, positions) for value in flat]
        per_channel = all(np.array_equal(grid, np.repeat(grid[:, :1], positions, axis=1)) for grid in grids)
        columns = 1 if per_channel else positions
        pads = (1.0, 1.0, 0.0, float(np.finfo(np.float32).max), 0.0)
        out = np.empty((5, columns, lanes), np.float32)
        for r, (grid, pad) in enumerate(zip(grids, pads, strict=True)):
            out[r] = pad
            out[r, :, :channels] = grid[:, :columns].T
        return out.reshape(5, -1)

    @staticmethod
    def _neuron_flags(kernel: FloatNeuron, last: bool) -> int:
        """update_and_list's flags: the unfused loop's (jit.float_arguments), and whether to store the spikes."""
        args = jit.float_arguments(kernel)
        zero_bias, compare_ge, reset_mode, timing = (args[jit.FLAGS[name]] for name in
                                                     ("zero_bias", "compare_ge", "reset_mode", "timing"))
        return neuron_flags(zero_bias, compare_ge, reset_mode, timing, last)

    # -- running ---------------------------------------------------------------------------------------------
    def run(self, x: np.ndarray, step0: int, out: np.ndarray | None = None, checked: bool = True) -> np.ndarray | None:
        """The last layer's spikes [T, B, *shape] (float32) for the chunk x [T, B, *in] (float32), every state
        advanced, written into `out` when it is a C-contiguous float32 array of that shape. `checked=False`: x is an
        input nobody checked for NaN and inf (the simulator leaves it to the chain, which reads every value anyway);
        None if it holds one (the states then part advanced: the caller reports it)."""
        steps, batch = x.shape[:2]
        shape = (steps, batch, *self.layers[-1].kernel.out_shape)
        if out is None or out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            out = np.empty(shape, np.float32)
        if not steps or not batch:
            return out
        x4 = np.ascontiguousarray(x, dtype=np.float32).reshape(steps, batch, self.planes, -1)
        state = self._state_for(batch)
        updates = steps * batch * sum(self.sizes)

        def part(first: int, stop: int) -> bool:
            return float_chain_chunk(first, stop, x4, self.geometry, self.weights, self.table, self.row_table,
                                     self.biases, self.params, self.flags, state, out.reshape(steps, batch, -1),
                                     not checked)

        finite = jit.split_rows(batch, batch > 1 and updates >= PARALLEL_MIN_UPDATES, part, PIECES_PER_THREAD)
        return out if all(finite) else None


def _plain_float_neuron(graph: Graph, kernels: dict[str, Kernel], name: str) -> FloatNeuron | None:
    """The kernel of `name` if it is a spiking float32 LIF/IF without refractory period, with start step 0."""
    kernel, op = kernels[name], graph.node(name)
    if type(kernel) is not FloatNeuron or not isinstance(op, (O.LIF, O.IF)) or kernel.dtype != np.float32:
        return None
    if not op.spiking or op.refractory or int(getattr(op, "start_step", 0)):
        return None
    return kernel


def _projection_fits(graph: Graph, name: str, first: bool, in_shape) -> bool:
    """Whether `name` is a projection the chain runs: a Conv2d (groups 1; no dilation, except along the height for
    P_1) on a [C, H, W] input, or a Linear without delays, whose inputs and outputs an int32 event can name (and
    whose weights, for a gathered convolution, an int32 offset can index: window_sums)."""
    op = graph.node(name)
    if isinstance(op, O.Linear):
        return (op.delays is None or not np.any(op.delays)) and op.weight.shape[0] < MAX_CHANNELS
    if not isinstance(op, O.Conv2d) or op.groups != 1 or len(in_shape) != 3:
        return False
    if tuple(op.dilation) != (1, 1) and not (first and EventConvolution.applies(op.dilation, op.groups)):
        return False
    out_shape = graph.shapes()[name]
    c_out, c_in, kernel_h, kernel_w = op.weight.shape
    gathered_weights = _lanes(c_in) * kernel_h * (kernel_w + 2 * (OUTPUTS_PER_PASS - 1) * op.stride[1]) * _lanes(c_out)
    return (in_shape[1] * in_shape[2] < MAX_POSITIONS and out_shape[1] * out_shape[2] < MAX_POSITIONS
            and max(in_shape[0], out_shape[0]) < MAX_CHANNELS and (first or gathered_weights < 1 << 31))


def find_float_chains(graph: Graph, kernels: dict[str, Kernel], components: list[list[str]]) \
        -> dict[str, FusedFloatChain | dense_chain.DenseChain]:
    """The maximal float32 chains of the graph by their first projection's name (see the module docstring)."""
    alone = {c[0] for c in components if len(c) == 1 and not any(e.src == c[0] for e in graph.in_edges(c[0]))}
    shapes = graph.shapes()

    def only_consumer(name: str) -> str | None:
        edges = graph.out_edges(name)
        return edges[0].dst if len(edges) == 1 and not edges[0].recurrent else None

    def single_input(name: str) -> bool:
        edges = graph.in_edges(name)
        return name in alone and len(edges) == 1 and not edges[0].recurrent

    def pair(name: str, first: bool) -> FloatChainLayer | None:
        if not single_input(name):
            return None
        source = graph.in_edges(name)[0].src
        if not _projection_fits(graph, name, first, tuple(shapes[source])):
            return None
        neuron = only_consumer(name)
        if neuron is None or not single_input(neuron):
            return None
        kernel = _plain_float_neuron(graph, kernels, neuron)
        return None if kernel is None else FloatChainLayer(name, neuron, kernel)

    def next_pair(neuron: str, used: set[str]) -> FloatChainLayer | None:
        following = only_consumer(neuron)
        flatten = None
        if following is not None and graph.node(following).kind == "Flatten" and single_input(following):
            flatten, following = following, only_consumer(following)
        if following is None or following in used:
            return None
        if flatten is not None and graph.node(following).kind != "Linear":
            return None
        if graph.node(following).kind == "Linear" and len(shapes[neuron]) not in (1, 3):
            return None
        after = pair(following, False)
        if after is not None:
            after.flatten = flatten
        return after

    chains: dict[str, FusedFloatChain | dense_chain.DenseChain] = {}
    used: set[str] = set()
    for name in graph.order():
        layer = None if name in used else pair(name, True)
        if layer is None:
            continue
        layers = [layer]
        while (after := next_pair(layers[-1].neuron, used)) is not None:
            layers.append(after)
        source = graph.in_edges(layer.projection)[0].src
        if any(isinstance(graph.node(item.projection), O.Conv2d) for item in layers):
            found = FusedFloatChain(graph, source, layers)
        elif dense_chain.fits(graph, layers):
            found = dense_chain.DenseChain(kernels, source, layers)
        else:
            continue            # wide dense layers: the unfused product over the whole chunk (dense_chain docstring)
        chains[layer.projection] = found
        used.update(n for item in layers for n in (item.flatten, item.projection, item.neuron) if n)
        reader = only_consumer(found.last)
        if reader is not None and graph.node(reader).kind == "Output" and len(graph.in_edges(reader)) == 1:
            found.output = reader
    return chains
