"""float32 vector operations of the event-driven convolution (nmcompile.ir.float_events), written in LLVM IR.

numba's own loops over a few vectors of a channels-last map do not become vector code reliably: the trip count is
a runtime value (so LLVM adds a scalar remainder) and the source and target might alias (so it adds run-time
checks, or keeps the loads and stores in order). These intrinsics emit the vector operations directly, on vectors
of VECTOR float32 lanes (512 bits; LLVM splits them into 256-bit halves on AVX2 machines):

    add_runs(target, at, at_step, source, start, start_step, runs, count)
        for each run j < runs, in order:  target[at + j at_step + i] += source[start + j start_step + i]
                                          for i < 16 count (`count` vectors of 16 lanes; up to
                                          MAX_UNROLLED_RUN of them unrolled, a loop beyond)
    add_scaled_runs(..., count, s)        the same with s * source[...] (a product, then a sum: no FMA)
    store_transposed(scratch, lanes, bias, out, positions, c_out, first, group)
        for p < 16, o < min(16, c_out - 16 group):   out[(16 group + o) * positions + first + p]
                                                       = scratch[(first + p) * lanes + 16 group + o]
        then scratch[(first + p) * lanes + 16 group + o] = bias[16 group + o] for every p, o < 16

    add_event_rows(target, at, source, listed, first, stop, per_position, per_channel, count)
        target[at + i] += the sum over e = first .. stop - 1 (in order) of
                          source[(listed[e] >> 16) * per_position + (listed[e] & 0xFFFF) * per_channel + i]
                                                                                          for i < 16 count
        (the events (position << 16) | channel, nmcompile.ir.neuron_vector: each vector of sums is loaded once,
        takes every event's row in a register, and is stored once)

    count = list_nonzero(values, start, listed, at)
        listed[at : at + count] = the indices start + i (int32, ascending) of the i < 16 with values[start + i] != 0
        (one vector load and one vector store: the caller keeps start + 16 <= len(values) and at + 16 <= len(listed);
        listed[at + count : at + 16] may be overwritten): a vector compare gives the mask, AVX-512 vpcompressd packs
        the indices (in a register, or LLVM's masked compress-store where AVX-512 is missing, which LLVM expands), the
        mask's population count is the count; no branch depends on the values

    prefetch_array(values)
        asks the CPU to bring a C-contiguous array's memory into its caches, a 64-byte line at a time (LLVM's
        llvm.prefetch: read, highest locality, data); the values are not read and nothing else changes

Each add is one float32 addition per lane in IEEE order (the product and the sum of `add_scaled_runs` are two
rounded operations, as numpy's `target + s * source`); the transpose moves values without changing them (a 16 x 16
transpose in four rounds of two-input shuffles).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

VECTOR = 16                  # float32 lanes of one vector (512 bits)
MAX_UNROLLED_RUN = 8         # add_runs: runs of up to this many vectors are unrolled, one loop per length (chosen
                             # once per call): the first convolution of bench_simulate's conv net (5 vectors per
                             # run) 6.7-9.4 against 7.5-10.5 us per sample-step of its scatter alone, in turn in one
                             # process


def _compiles_for_avx512() -> bool:
    """Whether numba compiles for a CPU with AVX-512F: the host's (numba's default), unless NUMBA_CPU_NAME names
    another target."""
    import llvmlite.binding as llvm
    from numba.core import config

    return not config.CPU_NAME and bool(llvm.get_host_cpu_features().get("avx512f"))


REGISTER_COMPRESS = _compiles_for_avx512()   # list_nonzero: compress in a register and store the whole vector (the
                                             # AVX-512 compress-store to memory is microcoded on Intel cores: 0.93
                                             # against 1.05-1.28 ms per 100 rows of the conv net's first layer)

_FLOAT = ir.FloatType()
_VECTOR_TYPE = ir.VectorType(_FLOAT, VECTOR)


def _float32_rows(*array_types) -> bool:
    """Whether every argument is a C-contiguous float32 array (what the intrinsics index by pointer arithmetic): any
    other argument types leave the intrinsic without a signature, a typing error at compile time."""
    return all(isinstance(t, types.Array) and t.layout == "C" and t.dtype == types.float32 for t in array_types)


def _array_data(context, builder, signature, args):
    """data(i): the data pointer of an intrinsic's array argument i."""

    def data(i):
        return context.make_array(signature.args[i])(context, builder, args[i]).data

    return data


def _element(context, builder, array_type, array, index, index_type):
    """A float* to array.data[index] (a C-contiguous 1-D float32 array)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [context.cast(builder, index, index_type, types.intp)])


def _adds(scaled: bool):
    """add_runs, or add_scaled_runs with `scaled`."""

    def codegen(context, builder, signature, args):
        target_ty, at_ty, at_step_ty, source_ty, start_ty, start_step_ty, runs_ty, count_ty = signature.args[:8]
        intp = context.get_value_type(types.intp)
        target = _element(context, builder, target_ty, args[0], args[1], at_ty)
        source = _element(context, builder, source_ty, args[3], args[4], start_ty)
        at_step = context.cast(builder, args[2], at_step_ty, types.intp)
        start_step = context.cast(builder, args[5], start_step_ty, types.intp)
        runs = context.cast(builder, args[6], runs_ty, types.intp)
        count = context.cast(builder, args[7], count_ty, types.intp)
        scale = None
        if scaled:
            value = context.cast(builder, args[8], signature.args[8], types.float32)
            scale = builder.insert_element(ir.Constant(_VECTOR_TYPE, None), value, ir.Constant(ir.IntType(32), 0))
            scale = builder.shuffle_vector(scale, ir.Constant(_VECTOR_TYPE, None),
                                           ir.Constant(ir.VectorType(ir.IntType(32), VECTOR), [0] * VECTOR))
        zero, one = ir.Constant(intp, 0), ir.Constant(intp, 1)
        vector_ptr = _VECTOR_TYPE.as_pointer()

        def add(to_run, from_run, offset):
            to = builder.bitcast(builder.gep(to_run, [offset]), vector_ptr)
            piece = builder.load(builder.bitcast(builder.gep(from_run, [offset]), vector_ptr), align=4)
            if scaled:
                piece = builder.fmul(scale, piece)
            builder.store(builder.fadd(builder.load(to, align=4), piece), to, align=4)

        def runs_loop(vectors):
            """The loop over the runs, each `vectors` vector adds unrolled (0: a loop over `count`)."""
            with cgutils.for_range_slice(builder, zero, runs, one) as (run, _):
                to_run = builder.gep(target, [builder.mul(run, at_step)])
                from_run = builder.gep(source, [builder.mul(run, start_step)])
                if vectors:
                    for k in range(vectors):
                        add(to_run, from_run, ir.Constant(intp, k * VECTOR))
                else:
                    with cgutils.for_range_slice(builder, zero, count, one) as (k, _):
                        add(to_run, from_run, builder.mul(k, ir.Constant(intp, VECTOR)))

        done = builder.append_basic_block("runs_done")
        general = builder.append_basic_block("runs_general")
        choice = builder.switch(count, general)
        for vectors in (*range(1, MAX_UNROLLED_RUN + 1), 0):
            if vectors:
                block = builder.append_basic_block(f"runs_of_{vectors}")
                choice.add_case(ir.Constant(intp, vectors), block)
            else:
                block = general
            builder.position_at_end(block)
            runs_loop(vectors)
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return codegen


@intrinsic
def add_runs(typingctx, target, at, at_step, source, start, start_step, runs, count):
    if not _float32_rows(target, source):
        return None
    return types.void(target, at, at_step, source, start, start_step, runs, count), _adds(False)


@intrinsic
def add_scaled_runs(typingctx, target, at, at_step, source, start, start_step, runs, count, scale):
    if not _float32_rows(target, source):
        return None
    return types.void(target, at, at_step, source, start, start_step, runs, count, scale), _adds(True)


def _transpose(builder, rows: list) -> list:
    """The 16 x 16 transpose of 16 vectors: at half-size h = 8, 4, 2, 1 each pair (i, i + h) swaps its off-diagonal
    h x h blocks."""
    rows = list(rows)
    index_type = ir.VectorType(ir.IntType(32), VECTOR)
    for half in (8, 4, 2, 1):
        low = [j if not j & half else VECTOR + j - half for j in range(VECTOR)]
        high = [j + half if not j & half else VECTOR + j for j in range(VECTOR)]
        for i in range(VECTOR):
            if i & half:
                continue
            a, b = rows[i], rows[i + half]
            rows[i] = builder.shuffle_vector(a, b, ir.Constant(index_type, low))
            rows[i + half] = builder.shuffle_vector(a, b, ir.Constant(index_type, high))
    return rows


@intrinsic
def store_transposed(typingctx, scratch, lanes, bias, out, positions, c_out, first, group):
    if not _float32_rows(scratch, bias, out):
        return None

    def codegen(context, builder, signature, args):
        scratch_ty, lanes_ty, bias_ty, out_ty, positions_ty, c_out_ty, first_ty, group_ty = signature.args
        intp = context.get_value_type(types.intp)
        lanes_v = context.cast(builder, args[1], lanes_ty, types.intp)
        positions_v = context.cast(builder, args[4], positions_ty, types.intp)
        c_out_v = context.cast(builder, args[5], c_out_ty, types.intp)
        first_v = context.cast(builder, args[6], first_ty, types.intp)
        channel0 = builder.mul(context.cast(builder, args[7], group_ty, types.intp), ir.Constant(intp, VECTOR))
        scratch_data = context.make_array(scratch_ty)(context, builder, args[0]).data
        out_data = context.make_array(out_ty)(context, builder, args[3]).data
        bias_pointer = builder.gep(context.make_array(bias_ty)(context, builder, args[2]).data, [channel0])
        bias_vector = builder.load(builder.bitcast(bias_pointer, _VECTOR_TYPE.as_pointer()), align=4)
        rows = []
        for p in range(VECTOR):
            at = builder.add(builder.mul(builder.add(first_v, ir.Constant(intp, p)), lanes_v), channel0)
            pointer = builder.bitcast(builder.gep(scratch_data, [at]), _VECTOR_TYPE.as_pointer())
            rows.append(builder.load(pointer, align=4))
            builder.store(bias_vector, pointer, align=4)
        columns = _transpose(builder, rows)
        for o in range(VECTOR):
            channel = builder.add(channel0, ir.Constant(intp, o))
            with builder.if_then(builder.icmp_signed("<", channel, c_out_v), likely=True):
                at = builder.add(builder.mul(channel, positions_v), first_v)
                pointer = builder.bitcast(builder.gep(out_data, [at]), _VECTOR_TYPE.as_pointer())
                builder.store(columns[o], pointer, align=4)
        return context.get_dummy_value()

    return types.void(scratch, lanes, bias, out, positions, c_out, first, group), codegen


def _int32_list(listed) -> bool:
    """Whether `listed` is a C-contiguous int32 array (a list of indices or events)."""
    return isinstance(listed, types.Array) and listed.layout == "C" and listed.dtype == types.int32


@intrinsic
def add_event_rows(typingctx, target, at, source, listed, first, stop, per_position, per_channel, count):
    if not (_float32_rows(target, source) and _int32_list(listed)):
        return None

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        sig = signature.args
        target = _element(context, builder, sig[0], args[0], args[1], sig[1])
        source_data = context.make_array(sig[2])(context, builder, args[2]).data
        listed_data = context.make_array(sig[3])(context, builder, args[3]).data
        first, stop, per_position, per_channel, count = (context.cast(builder, args[i], sig[i], types.intp)
                                                         for i in (4, 5, 6, 7, 8))
        with cgutils.for_range_slice(builder, ir.Constant(intp, 0), count, ir.Constant(intp, 1)) as (k, _):
            offset = builder.mul(k, ir.Constant(intp, VECTOR))
            to = builder.bitcast(builder.gep(target, [offset]), _VECTOR_TYPE.as_pointer())
            acc = cgutils.alloca_once_value(builder, builder.load(to, align=4))
            with cgutils.for_range_slice(builder, first, stop, ir.Constant(intp, 1)) as (e, _):
                event = builder.zext(builder.load(builder.gep(listed_data, [e])), intp)
                row = builder.add(builder.mul(builder.lshr(event, ir.Constant(intp, 16)), per_position),
                                  builder.mul(builder.and_(event, ir.Constant(intp, 0xFFFF)), per_channel))
                piece = builder.load(builder.bitcast(builder.gep(source_data, [builder.add(row, offset)]),
                                                     _VECTOR_TYPE.as_pointer()), align=4)
                builder.store(builder.fadd(builder.load(acc), piece), acc)
            builder.store(builder.load(acc), to, align=4)
        return context.get_dummy_value()

    return types.void(target, at, source, listed, first, stop, per_position, per_channel, count), codegen


@intrinsic
def list_nonzero(typingctx, values, start, listed, at):
    if not (_float32_rows(values) and _int32_list(listed)):
        return None

    def codegen(context, builder, signature, args):
        values_ty, start_ty, listed_ty, at_ty = signature.args
        index = ir.IntType(32)
        indices_type, mask_type = ir.VectorType(index, VECTOR), ir.VectorType(ir.IntType(1), VECTOR)
        mask_bits = ir.IntType(VECTOR)
        pointer = _element(context, builder, values_ty, args[0], args[1], start_ty)
        loaded = builder.load(builder.bitcast(pointer, _VECTOR_TYPE.as_pointer()), align=4)
        mask = builder.fcmp_unordered("!=", loaded, ir.Constant(_VECTOR_TYPE, None))
        first = builder.trunc(context.cast(builder, args[1], start_ty, types.intp), index)
        broadcast = builder.shuffle_vector(
            builder.insert_element(ir.Constant(indices_type, None), first, ir.Constant(index, 0)),
            ir.Constant(indices_type, None), ir.Constant(indices_type, [0] * VECTOR))
        indices = builder.add(broadcast, ir.Constant(indices_type, list(range(VECTOR))))
        listed_data = context.make_array(listed_ty)(context, builder, args[2]).data
        target = builder.gep(listed_data, [context.cast(builder, args[3], at_ty, types.intp)])
        if REGISTER_COMPRESS:
            compress = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(indices_type, [indices_type, indices_type, mask_type]),
                f"llvm.x86.avx512.mask.compress.v{VECTOR}i32")
            packed = builder.call(compress, [indices, ir.Constant(indices_type, None), mask])
            builder.store(packed, builder.bitcast(target, indices_type.as_pointer()), align=4)
        else:
            compress = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [indices_type, index.as_pointer(), mask_type]),
                f"llvm.masked.compressstore.v{VECTOR}i32")
            builder.call(compress, [indices, target, mask])
        popcount = cgutils.get_or_insert_function(builder.module, ir.FunctionType(mask_bits, [mask_bits]),
                                                  f"llvm.ctpop.i{VECTOR}")
        return builder.zext(builder.call(popcount, [builder.bitcast(mask, mask_bits)]), ir.IntType(64))

    return types.int64(values, start, listed, at), codegen


_PREFETCH_LINE = 64          # bytes per prefetch (a cache line of x86-64 CPUs)


@intrinsic
def prefetch_array(typingctx, values):
    if not (isinstance(values, types.Array) and values.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        byte_pointer, flag = ir.IntType(8).as_pointer(), ir.IntType(32)
        start = builder.bitcast(array.data, byte_pointer)
        size = builder.mul(array.nitems,
                           ir.Constant(intp, context.get_abi_sizeof(context.get_data_type(array_type.dtype))))
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, flag, flag, flag]), "llvm.prefetch.p0")
        read, highest_locality, data_cache = (ir.Constant(flag, value) for value in (0, 3, 1))
        with cgutils.for_range_slice(builder, ir.Constant(intp, 0), size, ir.Constant(intp, _PREFETCH_LINE)) as (k, _):
            builder.call(prefetch, [builder.gep(start, [k]), read, highest_locality, data_cache])
        return context.get_dummy_value()

    return types.void(values), codegen
