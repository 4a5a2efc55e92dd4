"""The float32 Linear product of the compiled engine: each output summed in input order with fused multiply-adds.

For x [rows, K] (float32) and the weights W [N, K], every output is

    acc = +0
    acc = fma(x[r, k], W[j, k], acc)        for k = 0 .. K-1 in order, skipping the k with x[r, k] == 0
    out[r, j] = acc + bias[j]               (bias 0 where the Linear has none; a bias of -0 counts as +0)

each fma one IEEE float32 fused multiply-add (one rounding; an input of 1 makes it the sum acc + W[j, k], rounded
once). Skipping a zero input changes nothing where the weights are finite in float32: fma(±0, w, acc) = acc + ±0 = acc
for every acc but -0, and a -0 sum only ends as an output of -0 + bias, which equals +0 + bias once a -0 bias counts
as +0. So the two forms below give identical bits, and `linear_rows` picks one per block of rows by the block's
density, never changing a result (a layer with a weight beyond float32's range, inf here, where fma(0, inf, acc)
would be NaN, takes the events form only):

    events   each row lists its nonzero inputs (vector_ops.list_nonzero) and sums the weight rows of those only, up to
             EVENT_ROWS rows at once (their sums are independent chains the CPU overlaps), TILE_VECTORS vectors of
             16 lanes per pass (the sums stay in registers across the row's events)
    dense    DENSE_ROWS rows at once over every input, each weight vector loaded once for all of them, inputs in
             blocks of DENSE_DEPTH (the sums go to memory between blocks and come back unchanged)

The order is the one torch 2.13's CPU kernel gives a call of at least 16 rows and K <= 384 (one sequential sum per
output from zero, then the bias: measured bit for bit on an AVX-512 machine, benchmarks/README.md "Float32 Linear
products"), so spikes match snnTorch's own forward there; unlike torch's, it depends on nothing but the row: not on the
number of rows in the call (torch takes another path below 16 rows), K (torch splits the sum into blocks above 384,
whose sizes depend on N), threads or machine.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from nmcompile.ir import jit
from nmcompile.ir.vector_ops import VECTOR, _float32_rows, _int32_list, list_nonzero

TILE_VECTORS = 4        # vectors of 16 output lanes per pass (64 outputs)
EVENT_ROWS = 4          # rows summed at once by the events form
DENSE_ROWS = 4          # rows summed at once by the dense form
DENSE_DEPTH = 128       # inputs per block of the dense form (128 x 64 lanes x 4 bytes: a 32 KiB weight tile)
ROW_BLOCK = 64          # rows listed, and given one form, at a time (fewer where their scratch would pass
SCRATCH_BYTES = 1 << 22  # bytes of a block's event lists and dense sums, 4 MiB)
MAX_LISTED = (1 << 31) - 1   # values of the rows of one linear_rows call (int32 indices)
DENSE_FROM = 0.4        # the dense form above this fraction of nonzero inputs in a block (benchmarks/README.md)
EVENTS_ONLY, DENSE_ONLY = 2.0, -1.0   # dense_from values that force one form (tests, benchmarks)

_VECTOR_TYPE = ir.VectorType(ir.FloatType(), VECTOR)
_INT32 = ir.IntType(32)


def _int64_list(array) -> bool:
    return isinstance(array, types.Array) and array.layout == "C" and array.dtype == types.int64


def _fma(builder):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR_TYPE, [_VECTOR_TYPE] * 3),
                                          f"llvm.fma.v{VECTOR}f32")


def _splat(builder, value, vector_type=_VECTOR_TYPE):
    """A vector of VECTOR copies of the scalar `value`."""
    first = builder.insert_element(ir.Constant(vector_type, None), value, ir.Constant(_INT32, 0))
    return builder.shuffle_vector(first, ir.Constant(vector_type, None),
                                  ir.Constant(ir.VectorType(_INT32, VECTOR), [0] * VECTOR))


def _arguments(context, builder, signature, args):
    """An intrinsic's argument readers: data(i), array argument i's data pointer; index(i), scalar argument i as an
    intp; constant(n), an intp constant."""
    intp = context.get_value_type(types.intp)

    def data(i):
        return context.make_array(signature.args[i])(context, builder, args[i]).data

    def index(i):
        return context.cast(builder, args[i], signature.args[i], types.intp)

    def constant(n):
        return ir.Constant(intp, n)

    return data, index, constant


@intrinsic
def event_row_sums(typingctx, out, out_at, out_stride, valid, weights, weights_at, weight_stride, listed, list_at,
                   list_stride, counts, count_at, values, base, base_stride, bias, bias_at, vectors, rows):
    """For the rows r < `rows` (1, 2 or 4) and vectors j < `vectors` (1 to TILE_VECTORS):
        acc = +0, then acc = fma(values[e], weights[weights_at + (e - base_r) weight_stride + 16 j : + 16], acc)
        for each e in listed[list_at + r list_stride : + counts[count_at + r]] in order   (e: the flat index of an
                                                                   input in values; base_r = base + r base_stride)
        out[out_at + r out_stride + 16 j + i] = acc[i] + bias[bias_at + 16 j + i]   for the lanes 16 j + i < valid
    The rows' events are taken in step up to the shortest count (independent chains of fused multiply-adds), then
    each row's rest alone."""
    if not (_float32_rows(out, weights, values, bias) and _int32_list(listed) and _int64_list(counts)):
        return None

    def codegen(context, builder, signature, args):
        data, index, constant = _arguments(context, builder, signature, args)
        intp = context.get_value_type(types.intp)
        out_data, weights_data, listed_data, counts_data, values_data, bias_data = (data(i) for i in (0, 4, 7, 10,
                                                                                                       12, 15))
        (out_at, out_stride, valid, weights_at, weight_stride, list_at, list_stride, count_at, base, base_stride,
         bias_at, vectors, rows) = (index(i) for i in (1, 2, 3, 5, 6, 8, 9, 11, 13, 14, 16, 17, 18))
        fma, vector_ptr = _fma(builder), _VECTOR_TYPE.as_pointer()
        mask_type = ir.VectorType(ir.IntType(1), VECTOR)
        masked_store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_VECTOR_TYPE, vector_ptr, _INT32, mask_type]),
            f"llvm.masked.store.v{VECTOR}f32.p0")
        lane_vector = ir.VectorType(intp, VECTOR)
        lane_numbers = ir.Constant(lane_vector, list(range(VECTOR)))
        weight_tile = builder.gep(weights_data, [weights_at])

        def add_event(list_start, e, row_base, sums):
            flat = builder.sext(builder.load(builder.gep(listed_data, [builder.add(list_start, e)])), intp)
            value = _splat(builder, builder.load(builder.gep(values_data, [flat])))
            row = builder.gep(weight_tile, [builder.mul(builder.sub(flat, row_base), weight_stride)])
            for j, acc in enumerate(sums):
                piece = builder.load(builder.bitcast(builder.gep(row, [constant(j * VECTOR)]), vector_ptr), align=4)
                builder.store(builder.call(fma, [value, piece, builder.load(acc)]), acc)

        done = builder.append_basic_block("event_sums_done")
        choice = builder.switch(builder.add(builder.mul(rows, constant(VECTOR)), vectors), done)
        for row_count in (1, 2, 4):
            for count in range(1, TILE_VECTORS + 1):
                block = builder.append_basic_block(f"event_sums_{row_count}_rows_{count}_vectors")
                choice.add_case(constant(row_count * VECTOR + count), block)
                builder.position_at_end(block)
                sums = [[cgutils.alloca_once_value(builder, ir.Constant(_VECTOR_TYPE, [0.0] * VECTOR))
                         for _ in range(count)] for _ in range(row_count)]
                starts = [builder.add(list_at, builder.mul(constant(r), list_stride)) for r in range(row_count)]
                bases = [builder.add(base, builder.mul(constant(r), base_stride)) for r in range(row_count)]
                lengths = [builder.load(builder.gep(counts_data, [builder.add(count_at, constant(r))]))
                           for r in range(row_count)]
                shortest = lengths[0]
                for length in lengths[1:]:
                    shortest = builder.select(builder.icmp_signed("<", length, shortest), length, shortest)
                with cgutils.for_range_slice(builder, constant(0), shortest, constant(1)) as (e, _):
                    for r in range(row_count):
                        add_event(starts[r], e, bases[r], sums[r])
                for r in range(row_count):
                    with cgutils.for_range_slice(builder, shortest, lengths[r], constant(1)) as (e, _):
                        add_event(starts[r], e, bases[r], sums[r])
                for j in range(count):
                    at = builder.add(bias_at, constant(j * VECTOR))
                    bias_vector = builder.load(builder.bitcast(builder.gep(bias_data, [at]), vector_ptr), align=4)
                    mask = builder.icmp_signed("<", lane_numbers,
                                               _splat(builder, builder.sub(valid, constant(j * VECTOR)), lane_vector))
                    for r in range(row_count):
                        target = builder.gep(out_data, [builder.add(out_at, builder.add(
                            builder.mul(constant(r), out_stride), constant(j * VECTOR)))])
                        builder.call(masked_store, [builder.fadd(builder.load(sums[r][j]), bias_vector),
                                                    builder.bitcast(target, vector_ptr), ir.Constant(_INT32, 4), mask])
                builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return types.void(out, out_at, out_stride, valid, weights, weights_at, weight_stride, listed, list_at, list_stride,
                      counts, count_at, values, base, base_stride, bias, bias_at, vectors, rows), codegen


@intrinsic
def dense_row_sums(typingctx, sums, sums_at, sums_stride, weights, weights_at, weight_stride, values, value_at,
                   value_stride, first, stop, rows, vectors, from_zero):
    """For the rows r < `rows` (1 to DENSE_ROWS) and vectors j < `vectors` (1 to TILE_VECTORS), with
    s = sums[sums_at + r sums_stride + 16 j : + 16] (+0 instead where from_zero):
        s = fma(values[value_at + r value_stride + k], weights[weights_at + k weight_stride + 16 j : + 16], s)
                                                                                           for k = first .. stop-1
    in order, stored back; each weight vector is loaded once for all the rows."""
    if not _float32_rows(sums, weights, values):
        return None

    def codegen(context, builder, signature, args):
        data, index, constant = _arguments(context, builder, signature, args)
        sums_data, weights_data, values_data = data(0), data(3), data(6)
        sums_at, sums_stride, weights_at, weight_stride, value_at, value_stride, first, stop, rows, vectors = (
            index(i) for i in (1, 2, 4, 5, 7, 8, 9, 10, 11, 12))
        from_zero = args[13]
        fma, vector_ptr = _fma(builder), _VECTOR_TYPE.as_pointer()
        zeros = ir.Constant(_VECTOR_TYPE, [0.0] * VECTOR)
        done = builder.append_basic_block("dense_sums_done")
        choice = builder.switch(builder.add(builder.mul(rows, constant(VECTOR)), vectors), done)
        for row_count in range(1, DENSE_ROWS + 1):
            for count in range(1, TILE_VECTORS + 1):
                block = builder.append_basic_block(f"dense_sums_{row_count}_rows_{count}_vectors")
                choice.add_case(constant(row_count * VECTOR + count), block)
                builder.position_at_end(block)
                pointers = [[builder.bitcast(builder.gep(sums_data, [builder.add(sums_at, builder.add(
                    builder.mul(constant(r), sums_stride), constant(j * VECTOR)))]), vector_ptr)
                    for j in range(count)] for r in range(row_count)]
                accs = [[cgutils.alloca_once_value(builder, builder.select(
                    from_zero, zeros, builder.load(pointers[r][j], align=4))) for j in range(count)]
                    for r in range(row_count)]
                row_values = [builder.gep(values_data, [builder.add(value_at, builder.mul(constant(r), value_stride))])
                              for r in range(row_count)]
                with cgutils.for_range_slice(builder, first, stop, constant(1)) as (k, _):
                    weight_row = builder.gep(weights_data, [builder.add(weights_at, builder.mul(k, weight_stride))])
                    pieces = [builder.load(builder.bitcast(builder.gep(weight_row, [constant(j * VECTOR)]), vector_ptr),
                                           align=4) for j in range(count)]
                    for r in range(row_count):
                        value = _splat(builder, builder.load(builder.gep(row_values[r], [k])))
                        for j in range(count):
                            builder.store(builder.call(fma, [value, pieces[j], builder.load(accs[r][j])]), accs[r][j])
                for r in range(row_count):
                    for j in range(count):
                        builder.store(builder.load(accs[r][j]), pointers[r][j], align=4)
                builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return types.void(sums, sums_at, sums_stride, weights, weights_at, weight_stride, values, value_at, value_stride,
                      first, stop, rows, vectors, from_zero), codegen


@jit.jit
def linear_rows(x, weights, bias, out, first, stop, dense_from, block_rows):
    """out[r] for the rows first .. stop-1 of x [rows, K] (the module docstring's sums): weights W^T in tiles of up to
    TILE_VECTORS x 16 lanes (`tiled_weights`), bias [lanes] (+0 past N and for a -0 bias), out [rows, N]. Each block of
    `block_rows` rows takes the dense form where more than `dense_from` of its inputs are nonzero (EVENTS_ONLY:
    never, DENSE_ONLY: always; the same bits either way)."""
    inputs, lanes, outputs = x.shape[1], bias.shape[0], out.shape[1]
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    whole = inputs // VECTOR * VECTOR
    per_row = inputs + VECTOR                         # list_nonzero may write 16 indices past a row's count
    listed = np.empty(block_rows * per_row, np.int32)
    counts = np.empty(block_rows, np.int64)
    sums = np.empty(block_rows * lanes, np.float32)
    tile_lanes = TILE_VECTORS * VECTOR
    for block in range(first, stop, block_rows):
        end = min(stop, block + block_rows)
        nonzero = 0
        for r in range(block, end):
            at = (r - block) * per_row
            found = at
            for start in range(r * inputs, r * inputs + whole, VECTOR):
                found += list_nonzero(flat_x, start, listed, found)
            for k in range(r * inputs + whole, (r + 1) * inputs):
                if flat_x[k] != 0:
                    listed[found] = k
                    found += 1
            counts[r - block] = found - at
            nonzero += found - at
        if nonzero > dense_from * (end - block) * inputs:
            for depth in range(0, inputs, DENSE_DEPTH):
                for tile in range(0, lanes, tile_lanes):
                    width = min(tile_lanes, lanes - tile)
                    for r in range(block, end, DENSE_ROWS):
                        dense_row_sums(sums, (r - block) * lanes + tile, lanes, weights, inputs * tile, width, flat_x,
                                       r * inputs, inputs, depth, min(inputs, depth + DENSE_DEPTH),
                                       min(DENSE_ROWS, end - r), width // VECTOR, depth == 0)
            for r in range(block, end):
                for j in range(outputs):
                    out[r, j] = sums[(r - block) * lanes + j] + bias[j]
            continue
        for tile in range(0, lanes, tile_lanes):
            width = min(tile_lanes, lanes - tile)
            r = block
            while r < end:
                rows = EVENT_ROWS if r + EVENT_ROWS <= end else (2 if r + 2 <= end else 1)
                event_row_sums(flat_out, r * outputs + tile, outputs, outputs - tile, weights, inputs * tile, width,
                               listed, (r - block) * per_row, per_row, counts, r - block, flat_x, r * inputs, inputs,
                               bias, tile, width // VECTOR, rows)
                r += rows


def tiled_weights(weight: np.ndarray, lanes: int) -> np.ndarray:
    """W [N, K] as the flat weights of `linear_rows`: W^T zero-padded to `lanes` outputs, cut into tiles of up to
    TILE_VECTORS x 16 lanes, tile by tile, each [K][its lanes] (the tile from lane t starts at K t). A tile's rows are
    its width apart: with the rows of the whole W^T (4 KiB apart for 1,000 outputs) the dense form's 128 rows of a
    tile all fell into the same sets of the L1 cache."""
    outputs, inputs = weight.shape
    padded = np.zeros((inputs, lanes), np.float32)
    padded[:, :outputs] = weight.T
    tile_lanes = TILE_VECTORS * VECTOR
    return np.concatenate([padded[:, tile:tile + tile_lanes].reshape(-1) for tile in range(0, lanes, tile_lanes)])


class LinearSums:
    """The product of one float32 Linear (module docstring), weights laid out once; called on x [rows, K] float32
    (C-contiguous), the rows split over `jit.worker_threads()` threads for calls of at least jit.PARALLEL_MIN_ADDS
    multiply-adds."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None):
        outputs, inputs = weight.shape
        lanes = max(VECTOR, -(-outputs // VECTOR) * VECTOR)
        self.outputs, self.inputs = outputs, inputs
        with np.errstate(over="ignore"):                 # a weight beyond float32's range becomes inf
            weight32 = np.asarray(weight, np.float32)
        self.weights = tiled_weights(weight32, lanes)
        # a weight beyond float32's range is inf here, and fma(0, inf, acc) is NaN: only the events form, which
        # skips zero inputs (the definition), keeps the result independent of the block's density
        self.dense_allowed = bool(np.all(np.isfinite(weight32)))
        self.bias = np.zeros(lanes, np.float32)
        if bias is not None:
            self.bias[:outputs] = np.asarray(bias, np.float32) + np.float32(0)     # -0 + 0 = +0

    def __call__(self, x: np.ndarray, dense_from: float = DENSE_FROM, block_rows: int | None = None) -> np.ndarray:
        """x [rows, K] @ W^T + bias; `dense_from` and `block_rows` (default: ROW_BLOCK, fewer for very wide layers)
        choose the form per block of rows (`linear_rows`), never the result."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise ValueError(f"a Linear of {self.inputs} inputs got values of shape {x.shape}")
        if not self.dense_allowed:
            dense_from = EVENTS_ONLY
        rows = x.shape[0]
        out = np.empty((rows, self.outputs), np.float32)
        if not rows or not self.outputs:
            return out
        inputs = self.inputs
        if block_rows is None:
            block_rows = max(1, min(ROW_BLOCK, SCRATCH_BYTES // (4 * (inputs + VECTOR + len(self.bias)))))
        most_rows = max(1, MAX_LISTED // max(inputs, 1))      # events are int32 flat indices into the rows of a call

        def part(first: int, stop: int) -> None:
            for start in range(first, stop, most_rows):
                end = min(stop, start + most_rows)
                linear_rows(x[start:end], self.weights, self.bias, out[start:end], 0, end - start, dense_from,
                            block_rows)

        jit.split_rows(rows, rows * inputs * self.outputs >= jit.PARALLEL_MIN_ADDS, part)
        return out
