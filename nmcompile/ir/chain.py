"""Fused integer feed-forward chains: (QLinear -> QNeuron) pairs, repeated, run as one compiled call per chunk.

A chain is a run of pairs P_1 -> N_1 -> P_2 -> N_2 ... -> P_L -> N_L (L >= 1) in which every P_k is a dense integer
projection with one delay d_k for all its synapses and int8/int16 weights (its kernel a `SpikeProduct` that takes the
register-tiled path), every N_k a QNeuron with the plain update (spiking, immediate reset, no refractory period,
start step 0), and every node but N_L has exactly one consumer, the next node of the chain. `chain_chunk` computes,
for each block of steps, layer k, step t of the block and sample b:

    x_1[t]   = the chain's input (0/1 spikes);   x_{k+1}[t] = s_k[t]
    a_k[t]   = floor_shift( sum over i with x_k[t - d_k, i] = 1 of W_k[:, i], exp_k )
    s_k[t]   = N_k(a_k[t])                        (jit.integer_neuron_plain: u_k, v_k updated in place)

and writes only s_L. The sums are `jit.tile_sum16/32` over the list of active inputs, with lanes chosen per row as
`jit.spike_product` chooses them (int16 when count * max|W_k| < 2^15, else int32), and the neuron update is
`jit.integer_neuron_plain` itself, so the bits are those of the unfused kernels, which equal the numpy engine's.
Between layers the spikes stay int8 rows (per sample the delay line of d_k + 1 rows before the block, and the block's
rows) and lists of active inputs; nothing between layers is written as int64 [T, B, N] values. Layer by layer over a
block of steps (up to ROWS_PER_PASS rows of steps x samples), one weight tile serves every row of the block while it
is in cache; feed-forward layers allow that order, as the unfused engine's node-by-node chunks do.

Exactness conditions are checked, not assumed: a chain is formed only where every P_k (k > 1) has
N_{k-1} * max|W_k| < 2^31 (its input is a neuron layer's spikes); the chain's own input is checked per chunk (binary,
and count * max|W_1| < 2^31 in every row), and a chunk that fails runs the unfused kernels instead, which share the
chain's state (u and v are the kernels' arrays; the delay lines, held by the chain as int8 while chunks run fused,
are written back into the kernels' buffers first). Samples are independent: a chunk's samples are split over
`jit.worker_threads()` threads with no synchronisation inside the chunk. A single pair is a chain of length 1:
`chain_chunk` with L = 1 is the compiled "projection + neuron layer over a chunk" step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from nmcompile.ir import jit
from nmcompile.ir.event_product import PARALLEL_MIN_SYNAPSES, SpikeProduct, aligned_copy
from nmcompile.ir.graph import Graph
from nmcompile.ir.kernels import DelayedSum, IntegerNeuron, Kernel

SUM_LIMIT = 1 << 31            # int32 lanes, and the int32 sums kept for the neuron update, hold values below this
NARROW_LIMIT = 1 << 15         # int16 lanes below this
ROWS_PER_PASS = 256            # rows (steps x samples) whose sums one pass over a weight tile computes
ROWS_PER_CHUNK = 4096          # rows a chunk of steps should hold (16 passes; see FusedChain.chunk_steps)
LIST_BYTES = 1 << 24           # at most this much memory for a chunk's input lists (16 MiB)


def sums_fit(count: int, weight_max: int, exp: int) -> bool:
    """Whether `count` active inputs of weights up to |weight_max|, shifted by floor_shift's exp, stay below 2^31."""
    return (count * weight_max) << max(exp, 0) < SUM_LIMIT


@jit.jit
def _tile_products(weight, active, counts, acc, weight_max):
    """acc[r, j] = sum over the active inputs a of row r (active[r, :counts[r]]) of weight[j // width, a, j % width]
    (acc int32: every sum is below 2^31): jit.tiled_sums' loop (one tile serves every row while it is in cache),
    lanes chosen per row as jit.spike_product chooses them (int32 lanes go through a 64-bit scratch piece)."""
    tiles, _, width = weight.shape
    wide = np.empty(width, dtype=np.int64)
    for tile in range(tiles):
        piece = weight[tile]
        column = tile * width
        for r in range(counts.shape[0]):
            count = counts[r]
            if count * weight_max >= NARROW_LIMIT:
                jit.tile_sum32(piece, active[r], count, wide, 0)
                acc[r, column:column + width] = wide
            else:
                jit.tile_sum16(piece, active[r], count, acc[r], column)


LIST_LANES = 16                # values compared and int32 indices packed per step of `_list_whole_chunks`


@intrinsic
def _list_whole_chunks(typingctx, spikes, listed):
    """The intrinsic count = _list_whole_chunks(spikes, listed): listed[:count] = the n < len(spikes) rounded down to
    LIST_LANES with spikes[n] != 0 (spikes of any integer type, listed int32, both C-contiguous), LIST_LANES values
    at a time: a vector compare gives the mask of nonzero values, the masked compress-store (AVX-512 vpcompressd)
    writes their indices packed, the mask's population count advances the list. Written in LLVM IR: a scalar loop
    costs a compare, a store and an add per value."""
    if not (isinstance(spikes, types.Array) and isinstance(listed, types.Array) and spikes.layout == "C"
            and listed.layout == "C" and isinstance(spikes.dtype, types.Integer) and listed.dtype == types.int32):
        return None

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        index, value = ir.IntType(32), ir.IntType(signature.args[0].dtype.bitwidth)
        spikes_arr = context.make_array(signature.args[0])(context, builder, args[0])
        listed_arr = context.make_array(signature.args[1])(context, builder, args[1])
        whole = builder.and_(builder.extract_value(spikes_arr.shape, 0), ir.Constant(intp, -LIST_LANES))
        values_type, indices_type = ir.VectorType(value, LIST_LANES), ir.VectorType(index, LIST_LANES)
        mask_type, mask_bits = ir.VectorType(ir.IntType(1), LIST_LANES), ir.IntType(LIST_LANES)
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [indices_type, index.as_pointer(), mask_type]),
            f"llvm.masked.compressstore.v{LIST_LANES}i32")
        popcount = cgutils.get_or_insert_function(builder.module, ir.FunctionType(mask_bits, [mask_bits]),
                                                  f"llvm.ctpop.i{LIST_LANES}")
        found = cgutils.alloca_once_value(builder, ir.Constant(intp, 0))
        lane = ir.Constant(indices_type, list(range(LIST_LANES)))
        undefined = ir.Constant(indices_type, ir.Undefined)
        with cgutils.for_range_slice(builder, ir.Constant(intp, 0), whole, ir.Constant(intp, LIST_LANES)) as (n, _):
            chunk = builder.load(builder.bitcast(builder.gep(spikes_arr.data, [n]), values_type.as_pointer()), align=1)
            mask = builder.icmp_signed("!=", chunk, ir.Constant(values_type, None))
            first = builder.insert_element(undefined, builder.trunc(n, index), ir.Constant(index, 0))
            indices = builder.add(builder.shuffle_vector(first, undefined, ir.Constant(indices_type, [0] * LIST_LANES)),
                                  lane)
            at = builder.load(found)
            builder.call(compress, [indices, builder.gep(listed_arr.data, [at]), mask])
            count = builder.zext(builder.call(popcount, [builder.bitcast(mask, mask_bits)]), intp)
            builder.store(builder.add(at, count), found)
        return builder.load(found)

    return types.intp(spikes, listed), codegen


@jit.jit
def list_spikes(spikes, listed):
    """listed[:count] = the n with spikes[n] != 0 (spikes of any integer type, int32 list, both C-contiguous), in
    order; returns count."""
    found = _list_whole_chunks(spikes, listed)
    for n in range(spikes.shape[0] - spikes.shape[0] % LIST_LANES, spikes.shape[0]):
        listed[found] = n
        found += spikes[n] != 0
    return found


@jit.jit
def list_rows(x, active, counts):
    """active[r, :counts[r]] = the k with x[r, k] != 0 (in order; x int64, int8 or uint8 [rows, in], C-contiguous);
    returns whether every x is 0 or 1."""
    rows, inputs = x.shape
    other = 0
    for r in range(rows):
        row = x[r]
        for k in range(inputs):
            other |= row[k] & -2             # nonzero when a value is neither 0 nor 1
        counts[r] = list_spikes(row, active[r])
    return other == 0


@jit.jit
def _copy_row(source, target):
    """target[n] = source[n] (element loop: a slice assignment between views of one array copies via a temporary)."""
    for n in range(target.shape[0]):
        target[n] = source[n]


@jit.jit
def chain_chunk(first, stop, x_rows, x_active, x_counts, tiles, weight_max, exps, delays, lines, us, vs, du_plus, dv,
                vth, bias, clears_current, compare_ge, reset_mode, span, out):
    """Steps 0..T-1 of a chunk through a chain of L layers for the samples first..stop-1, in blocks of `span` steps:
    layer by layer over a block (a weight tile serves all the block's steps and samples while in cache), the block's
    spikes of layer k kept as int8 rows for layer k + 1.

    Layer k reads its input of step t - d_k: within the chunk, row (t - d_k) * B + b of the chain's input lists
    (x_active, x_counts; x_rows the input itself) for k = 1, or the previous layer's int8 rows of the block; before the
    block, lines[k] [B, d_k + 1, N_{k-1}] (its last d_k + 1 inputs before the block, oldest first; moved on here).
    tiles[k] [tiles, in, width], weight_max, exps, delays per layer; us, vs [B, N_k], du_plus, dv, vth, bias,
    clears_current, compare_ge, reset_mode per layer as jit.integer_neuron_plain takes them. out [T, B, N_L]
    receives the last layer's spikes."""
    steps, batch = out.shape[0], out.shape[1]
    layers = len(delays)
    block = stop - first
    widest_in, padded, widest = 0, 0, 0
    for k in range(layers):
        widest_in = max(widest_in, tiles[k].shape[1])
        padded = max(padded, tiles[k].shape[0] * tiles[k].shape[2])
        widest = max(widest, us[k].shape[1])
    active = np.empty((span * block, widest_in + 1), dtype=np.int32)
    counts = np.empty(span * block, dtype=np.int64)
    acc = np.empty((span, block, padded), dtype=np.int32)
    rows_acc = acc.reshape((span * block, padded))
    fire_prev = np.empty((span, block, widest), dtype=np.int8)
    fire_new = np.empty((span, block, widest), dtype=np.int8)
    for t0 in range(0, steps, span):
        m = min(span, steps - t0)
        for k in range(layers):
            d = delays[k]
            line = lines[k]
            size_in = line.shape[2]
            for s in range(m):                     # step t0 + s reads step t0 + s - d: entry s + 1 of line ++ block
                q = s + 1
                for i in range(block):
                    row = s * block + i
                    if q <= d:
                        counts[row] = list_spikes(line[first + i, q], active[row])
                    elif k == 0:
                        listed = (t0 + s - d) * batch + first + i
                        count = x_counts[listed]
                        counts[row] = count
                        active[row, :count] = x_active[listed, :count]
                    else:
                        counts[row] = list_spikes(fire_prev[q - d - 1, i, :size_in], active[row])
            for i in range(block):                 # the line moves on by m steps
                for j in range(d + 1):
                    q = m + j
                    if q <= d:
                        _copy_row(line[first + i, q], line[first + i, j])
                    elif k == 0:
                        _copy_row(x_rows[(t0 + q - d - 1) * batch + first + i], line[first + i, j])
                    else:
                        _copy_row(fire_prev[q - d - 1, i, :size_in], line[first + i, j])
            _tile_products(tiles[k], active[: m * block], counts[: m * block], rows_acc, weight_max[k])
            size = us[k].shape[1]
            sums = acc[:m]
            exp = exps[k]
            if exp != 0:                           # fixed.floor_shift
                for s in range(m):
                    for i in range(block):
                        for n in range(size):
                            sums[s, i, n] = sums[s, i, n] << exp if exp > 0 else sums[s, i, n] >> -exp
            jit.integer_neuron_fixed(sums, us[k][first:stop], vs[k][first:stop], du_plus[k], dv[k], vth[k], bias[k],
                                     clears_current[k], compare_ge[k], reset_mode[k], fire_new, 0, size)
            if k + 1 == layers:
                for s in range(m):
                    for i in range(block):
                        out[t0 + s, first + i] = fire_new[s, i, :size]
            fire_prev, fire_new = fire_new, fire_prev


@dataclass
class ChainLayer:
    """One (projection, neuron) pair of a chain and its kernels."""

    projection: str
    neuron: str
    product: DelayedSum
    kernel: IntegerNeuron

    @property
    def delay(self) -> int:
        return self.product.groups[0][0]

    @property
    def spike_product(self) -> SpikeProduct:
        return self.product.groups[0][1]


class FusedChain:
    """A chain found by `find_chains`: `run(x, step0)` advances it by a chunk x [T, B, in] of its input."""

    checks_input = True      # every narrow (one-byte) input spike is checked to be 0 or 1 as it is read

    def __init__(self, source: str, layers: list[ChainLayer]):
        self.source = source
        self.layers = layers
        self.head = layers[0].projection
        self.last = layers[-1].neuron
        self.output: str | None = None          # the Output node that is the last layer's only consumer, if any
        self.followers = [n for layer in layers for n in (layer.projection, layer.neuron)][1:]
        products = [layer.spike_product for layer in layers]
        tiles = [p.weight_tiles(jit.TILE_WIDTH) for p in products]
        narrow = all(t.dtype == np.int8 for t in tiles)
        self.tiles = tuple(aligned_copy(t.astype(np.int8 if narrow else np.int16)) for t in tiles)
        self.weight_max = np.array([p.general.weight_max for p in products], dtype=np.int64)
        self.exps = np.array([p.exp for p in products], dtype=np.int64)
        self.delays = np.array([layer.delay for layer in layers], dtype=np.int64)
        self.sizes = [int(np.prod(layer.kernel.out_shape)) for layer in layers]
        self.inputs = products[0].inputs
        params = [_plain_params(layer.kernel) for layer in layers]
        # writable copies: a parameter given per neuron reaches the kernel as a read-only view, and a tuple indexed
        # at run time must hold arrays of one type
        self.du_plus, self.dv, self.vth, self.bias = (tuple(np.array(p[i], dtype=np.int64) for p in params)
                                                      for i in range(4))
        self.clears_current = np.array([p[4] for p in params], dtype=np.bool_)
        self.compare_ge = np.array([p[5] for p in params], dtype=np.bool_)
        self.reset_mode = np.array([p[6] for p in params], dtype=np.int64)
        self._scratch: dict[str, np.ndarray] = {}
        self._lines: tuple[np.ndarray, ...] | None = None
        self._buffers: list = []
        self._owned_until = -1

    def _buffer(self, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A scratch array kept between chunks (fresh pages would cost a fault each)."""
        held = self._scratch.get(key)
        if held is None or held.shape != shape:
            held = self._scratch[key] = np.empty(shape, dtype=dtype)
        return held

    def chunk_steps(self, batch: int) -> int:
        """Steps per chunk this chain asks of `Simulator.run`: ROWS_PER_CHUNK rows of steps x samples, fewer when the
        input lists of that many rows (4 bytes per input and row) would exceed LIST_BYTES, at least one pass over the
        tiles. Fewer, longer chunks give each of two threads long runs between synchronisations (measured at batch 32
        on two idle cores, bench_lava's network: 6.2 us per sample-step in chunks of 1024 rows, 5.8-5.9 us in 2048 to
        8192; 6.5 against 7.8-10.9 us for 32 against 8 steps on a loaded machine)."""
        rows = min(ROWS_PER_CHUNK, max(ROWS_PER_PASS, LIST_BYTES // (4 * (self.inputs + 1))))
        return max(1, -(-rows // max(batch, 1)))

    def _lists(self, rows: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """The active lists of the chunk's input rows [T * B, in] (scratch kept between chunks) and whether every
        value is 0 or 1; split over threads for a batch (one sample runs on one thread: measured 1 us per step
        slower with the lists split)."""
        active = self._buffer("active", (rows.shape[0], self.inputs + 1), np.int32)
        counts = self._buffer("counts", (rows.shape[0],), np.int64)
        parallel = batch > 1 and rows.size * self.sizes[0] >= PARALLEL_MIN_SYNAPSES
        binary = jit.split_rows(rows.shape[0], parallel,
                                lambda a, b: list_rows(rows[a:b], active[a:b], counts[a:b]), 1)
        return active, counts, all(binary)

    def run(self, x: np.ndarray, step0: int, out: np.ndarray | None = None) -> np.ndarray | None:
        """The last layer's spikes [T, B, N_L] for the chunk x (int64, or one byte per value: int8/uint8 [T, B, in])
        whose first step is `step0`, every state advanced, written into `out` (int64 or int8, C-contiguous) when
        given; None when x (or the delay line before it) is not binary or its sums could reach 2^31: the caller then
        runs the unfused kernels, whose states are current then."""
        steps, batch = x.shape[:2]
        if not steps or not batch:
            return np.zeros((steps, batch, self.sizes[-1]), dtype=np.int64)
        rows = jit.as_rows(x)
        x_active, x_counts, binary = self._lists(rows, batch)
        lines = self._lines_at(step0) if binary else None
        if lines is None or not sums_fit(int(x_counts.max()), int(self.weight_max[0]), int(self.exps[0])):
            self.release()
            return None
        kernels = [layer.kernel for layer in self.layers]
        for kernel in kernels:
            kernel.u, kernel.v = np.ascontiguousarray(kernel.u), np.ascontiguousarray(kernel.v)
        us = tuple(k._rows(k.u) for k in kernels)
        vs = tuple(k._rows(k.v) for k in kernels)
        if (out is None or out.shape != (steps, batch, self.sizes[-1]) or not out.flags.c_contiguous
                or out.dtype not in (np.int64, np.int8)):
            out = np.empty((steps, batch, self.sizes[-1]), dtype=np.int64)
        synapses = sum(t.shape[1] * s for t, s in zip(self.tiles, self.sizes, strict=True))

        def part(first_sample: int, stop: int) -> None:
            span = max(1, min(steps, ROWS_PER_PASS // (stop - first_sample)))
            chain_chunk(first_sample, stop, rows, x_active, x_counts, self.tiles, self.weight_max, self.exps,
                        self.delays, lines, us, vs, self.du_plus, self.dv, self.vth, self.bias, self.clears_current,
                        self.compare_ge, self.reset_mode, span, out)

        jit.split_rows(batch, steps * batch * synapses >= PARALLEL_MIN_SYNAPSES, part, 1)
        self._owned_until = step0 + steps
        return out

    # The delay lines: while consecutive chunks run fused, the chain holds them (int8, `_lines`) and the DelayedSum
    # kernels' buffers are stale; `release` writes them back before anything else runs those kernels.
    def _lines_at(self, step0: int) -> tuple[np.ndarray, ...] | None:
        """Every layer's delay line [B, d + 1, in] (int8) before step `step0`: the chain's own if it ran the chunk
        before and the kernels were not reset since, else read from the kernels' buffers (None if one holds a value
        other than 0 or 1, or the input's rows could sum to 2^31: rows the chain ran were checked as they came)."""
        buffers = [layer.product.history for layer in self.layers]
        if (self._lines is not None and self._owned_until == step0
                and all(a is b for a, b in zip(buffers, self._buffers, strict=True))):
            return self._lines
        self._lines = None
        lines = []
        for buffer in buffers:
            line = np.stack(list(buffer), axis=1)
            if np.any((line != 0) & (line != 1)):
                return None
            lines.append(np.ascontiguousarray(line, dtype=np.int8))
        most = int(lines[0].sum(axis=-1, dtype=np.int64).max(initial=0))    # the input's rows before the chunk
        if not sums_fit(most, int(self.weight_max[0]), int(self.exps[0])):
            return None
        self._lines, self._buffers = tuple(lines), buffers
        return self._lines

    def release(self) -> None:
        """Write the chain's delay lines back into the kernels' buffers (newest last, int64), if it holds them."""
        if self._lines is not None and all(a is b for a, b in zip(
                [layer.product.history for layer in self.layers], self._buffers, strict=True)):
            for layer, line in zip(self.layers, self._lines, strict=True):
                layer.product.history.clear()
                layer.product.history.extend(line.transpose(1, 0, 2).astype(np.int64))
        self._lines = None


def _plain_params(kernel: IntegerNeuron) -> tuple:
    """jit.integer_neuron_plain's parameters of a kernel: du_plus, dv, vth, bias ([N] int64), clears_current,
    compare_ge, reset mode."""
    op = kernel.op
    return (kernel._flat(kernel.du_plus), kernel._flat(kernel.dv), kernel._flat(kernel.vth),
            kernel._flat(kernel.bias), kernel.clears_current, op.compare == ">=",
            {"none": jit.RESET_NONE, "zero": jit.RESET_ZERO, "subtract": jit.RESET_SUBTRACT}[op.reset_mode])


def _projection(graph: Graph, kernels: dict[str, Kernel], name: str) -> DelayedSum | None:
    """The kernel of `name` if it is a dense QLinear with one delay whose product takes the tiled spike path."""
    kernel = kernels[name]
    if graph.node(name).kind != "QLinear" or type(kernel) is not DelayedSum:
        return None
    if len(kernel.groups) != 1 or kernel.const is not None:
        return None
    product = kernel.groups[0][1]
    if not isinstance(product, SpikeProduct) or not product.tiled or product.engine != "compiled":
        return None
    return kernel


def _plain_neuron(graph: Graph, kernels: dict[str, Kernel], name: str) -> IntegerNeuron | None:
    """The kernel of `name` if it is a QNeuron with the plain compiled update and start step 0."""
    kernel, op = kernels[name], graph.node(name)
    if type(kernel) is not IntegerNeuron or not kernel.fused or len(kernel.out_shape) != 1:
        return None
    if not op.spiking or op.reset_timing != "immediate" or op.refractory or int(getattr(op, "start_step", 0)):
        return None
    return kernel


def find_chains(graph: Graph, kernels: dict[str, Kernel], components: list[list[str]]) -> dict[str, FusedChain]:
    """The maximal chains of the graph by their first projection's name (see the module docstring)."""
    alone = {c[0] for c in components if len(c) == 1 and not any(e.src == c[0] for e in graph.in_edges(c[0]))}

    def only_consumer(name: str) -> str | None:
        edges = graph.out_edges(name)
        return edges[0].dst if len(edges) == 1 and not edges[0].recurrent else None

    def pair(name: str) -> ChainLayer | None:
        edges = graph.in_edges(name)
        if name not in alone or len(edges) != 1 or edges[0].recurrent:
            return None
        product = _projection(graph, kernels, name)
        neuron = only_consumer(name)
        if product is None or neuron is None or neuron not in alone or len(graph.in_edges(neuron)) != 1:
            return None
        kernel = _plain_neuron(graph, kernels, neuron)
        return None if kernel is None else ChainLayer(name, neuron, product, kernel)

    chains: dict[str, FusedChain] = {}
    used: set[str] = set()
    for name in graph.order():
        layer = None if name in used else pair(name)
        if layer is None:
            continue
        layers = [layer]
        while True:
            following = only_consumer(layers[-1].neuron)
            after = pair(following) if following is not None and following not in used else None
            if after is None:
                break
            size = int(np.prod(layers[-1].kernel.out_shape))
            if not sums_fit(size, after.spike_product.general.weight_max, after.spike_product.exp):
                break
            layers.append(after)
        used.update(n for item in layers for n in (item.projection, item.neuron))
        found = chains[layer.projection] = FusedChain(graph.in_edges(layer.projection)[0].src, layers)
        reader = only_consumer(found.last)
        if reader is not None and graph.node(reader).kind == "Output" and len(graph.in_edges(reader)) == 1:
            found.output = reader
    return chains
