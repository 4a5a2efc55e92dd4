"""The float32 LIF/IF update of a channels-last layer in vectors of 16 lanes, listing the neurons that fire.

    count = update_and_list(v, sums, bias, params, at, size, lanes, flags, spikes, listed, starts)

For every n < size (size a multiple of `lanes`, `lanes` a multiple of VECTOR; position q = n // lanes, channel
c = n % lanes), with x = sums[at + n], the state v[at + n] (v and sums hold every layer of a chain, this one from
`at`) and the rows of params [5, m] (beta, gain, bias, threshold, v_reset; per channel, params[:, c], when m = lanes,
else per neuron, params[:, n]), the operations of jit.float_neuron (no refractory period, batch norm or synaptic
current) in its order:

    drive = x                  if unit_gain  else gain * x
    h     = v + drive          if not has_beta else beta * v + drive
    h     = h                  if zero_bias  else h + bias
    cross(u) = u >= threshold  if compare_ge else u > threshold        (ordered: NaN never crosses)
    delayed and snntorch_immediate timings, with p = cross(v) (the last step's spike, not yet reset):
          h = h - p * threshold                                        if reset subtract
          h = v_reset                                                  if p and reset zero
    spike = 1 if cross(h) else 0
    immediate timing:          h = v_reset if spike and reset zero;  h = h - spike * threshold if reset subtract
    snntorch_immediate timing: h = h - (spike - p) * threshold
    v[at + n] = h;   sums[at + n] = bias[c] (the sums start the next step at the projection's bias);
    spikes[n] = spike          with store_spikes

each an IEEE float32 operation (a product, then a sum: no fused multiply-add), so v and the spikes equal those of
the neuron kernel given the same x. The neurons that fire are listed as events (q << 16) | c in ascending n into
listed, and their number is returned; starts[q] is the index in listed of the first event of position q or after
(starts[size // lanes] = count). One vector compare, one compress (AVX-512 vpcompressd, or LLVM's expansion
elsewhere) and one population count per 16 neurons, no branch on the values. flags (int64) packs unit_gain (1),
has_beta (2), zero_bias (4), compare_ge (8), store_spikes (16), the reset mode (32 x jit.RESET_*) and the timing
(128 x jit.TIMING_*): the choices are vector selects, not branches.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from nmcompile.ir import jit
from nmcompile.ir.vector_ops import REGISTER_COMPRESS, VECTOR, _float32_rows, _int32_list

CHANNEL_BITS = 16            # an event is (position << CHANNEL_BITS) | channel in one int32
UNIT_GAIN, HAS_BETA, ZERO_BIAS, COMPARE_GE, STORE_SPIKES, RESET_SHIFT, TIMING_SHIFT = 1, 2, 4, 8, 16, 5, 7

_FLOAT = ir.FloatType()
_VECTOR_TYPE = ir.VectorType(_FLOAT, VECTOR)


def neuron_flags(unit_gain: bool, has_beta: bool, zero_bias: bool, compare_ge: bool, reset_mode: int, timing: int,
                 store_spikes: bool) -> int:
    """update_and_list's flags word (reset_mode a jit.RESET_*, timing a jit.TIMING_*)."""
    return (UNIT_GAIN * unit_gain | HAS_BETA * has_beta | ZERO_BIAS * zero_bias | COMPARE_GE * compare_ge
            | STORE_SPIKES * store_spikes | reset_mode << RESET_SHIFT | timing << TIMING_SHIFT)


@intrinsic
def update_and_list(typingctx, v, sums, bias, params, at, size, lanes, flags, spikes, listed, starts):
    if not (_float32_rows(v, sums, bias, params, spikes) and v.ndim == 1 and params.ndim == 2
            and _int32_list(listed) and _int32_list(starts)):
        return None

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        index = ir.IntType(32)
        indices_type, mask_type = ir.VectorType(index, VECTOR), ir.VectorType(ir.IntType(1), VECTOR)
        mask_bits = ir.IntType(VECTOR)
        vector_ptr = _VECTOR_TYPE.as_pointer()

        def data(i):
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        def scalar(i):
            return context.cast(builder, args[i], signature.args[i], types.intp)

        v_data, sums_data, bias_data, params_data = data(0), data(1), data(2), data(3)
        spikes_data, listed_data, starts_data = data(8), data(9), data(10)
        at, size, lanes, flags = scalar(4), scalar(5), scalar(6), scalar(7)
        sums_data, v_data = builder.gep(sums_data, [at]), builder.gep(v_data, [at])
        width = builder.extract_value(context.make_array(signature.args[3])(context, builder, args[3]).shape, 1)
        per_neuron = builder.icmp_unsigned("!=", width, lanes)
        rows = [builder.gep(params_data, [builder.mul(ir.Constant(intp, r), width)]) for r in range(5)]

        def flag(bit):
            return builder.icmp_unsigned("!=", builder.and_(flags, ir.Constant(intp, bit)), ir.Constant(intp, 0))

        unit_gain, has_beta, zero_bias, compare_ge = flag(UNIT_GAIN), flag(HAS_BETA), flag(ZERO_BIAS), flag(COMPARE_GE)
        store_spikes = flag(STORE_SPIKES)
        reset = builder.and_(builder.lshr(flags, ir.Constant(intp, RESET_SHIFT)), ir.Constant(intp, 3))
        timing = builder.lshr(flags, ir.Constant(intp, TIMING_SHIFT))
        immediate = builder.icmp_unsigned("==", timing, ir.Constant(intp, jit.TIMING_IMMEDIATE))
        snntorch = builder.icmp_unsigned("==", timing, ir.Constant(intp, jit.TIMING_SNNTORCH))
        reset_zero = builder.icmp_unsigned("==", reset, ir.Constant(intp, jit.RESET_ZERO))
        reset_subtract = builder.icmp_unsigned("==", reset, ir.Constant(intp, jit.RESET_SUBTRACT))
        zeros, ones = ir.Constant(_VECTOR_TYPE, [0.0] * VECTOR), ir.Constant(_VECTOR_TYPE, [1.0] * VECTOR)
        lane_numbers = ir.Constant(indices_type, list(range(VECTOR)))
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(indices_type, [indices_type, indices_type, mask_type]),
            f"llvm.x86.avx512.mask.compress.v{VECTOR}i32") if REGISTER_COMPRESS else \
            cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [indices_type, index.as_pointer(), mask_type]),
                f"llvm.masked.compressstore.v{VECTOR}i32")
        popcount = cgutils.get_or_insert_function(builder.module, ir.FunctionType(mask_bits, [mask_bits]),
                                                  f"llvm.ctpop.i{VECTOR}")
        found = cgutils.alloca_once_value(builder, ir.Constant(intp, 0))
        step = ir.Constant(intp, VECTOR)

        def load(pointer, n):
            return builder.load(builder.bitcast(builder.gep(pointer, [n]), vector_ptr), align=4)

        def crosses(value, threshold):
            return builder.select(compare_ge, builder.fcmp_ordered(">=", value, threshold),
                                  builder.fcmp_ordered(">", value, threshold))

        def store(value, pointer, n):
            builder.store(value, builder.bitcast(builder.gep(pointer, [n]), vector_ptr), align=4)

        zero = ir.Constant(intp, 0)
        positions = builder.udiv(size, lanes)
        with cgutils.for_range_slice(builder, zero, positions, ir.Constant(intp, 1)) as (position, _):
            first = builder.mul(position, lanes)
            tag0 = builder.shl(position, ir.Constant(intp, CHANNEL_BITS))
            builder.store(builder.trunc(builder.load(found), index), builder.gep(starts_data, [position]))
            with cgutils.for_range_slice(builder, zero, lanes, step) as (channel, _):
                n = builder.add(first, channel)
                x, old = load(sums_data, n), load(v_data, n)
                parameter = builder.select(per_neuron, n, channel)
                beta, gain, bias, threshold, v_reset = (load(row, parameter) for row in rows)
                drive = builder.select(unit_gain, x, builder.fmul(gain, x))
                h = builder.select(has_beta, builder.fadd(builder.fmul(beta, old), drive), builder.fadd(old, drive))
                h = builder.select(zero_bias, h, builder.fadd(h, bias))
                pending = crosses(old, threshold)        # delayed timings: the reset of the last step's spike
                pending_spike = builder.select(pending, ones, zeros)
                delayed = builder.select(reset_subtract, builder.fsub(h, builder.fmul(pending_spike, threshold)),
                                         builder.select(reset_zero, builder.select(pending, v_reset, h), h))
                h = builder.select(immediate, h, delayed)
                fire = crosses(h, threshold)
                spike = builder.select(fire, ones, zeros)
                now = builder.select(reset_zero, builder.select(fire, v_reset, h),
                                     builder.select(reset_subtract, builder.fsub(h, builder.fmul(spike, threshold)), h))
                snntorch_reset = builder.fsub(h, builder.fmul(builder.fsub(spike, pending_spike), threshold))
                h = builder.select(immediate, now, builder.select(snntorch, snntorch_reset, h))
                store(h, v_data, n)
                with builder.if_then(store_spikes):
                    store(spike, spikes_data, n)
                store(load(bias_data, channel), sums_data, n)
                tag = builder.trunc(builder.or_(tag0, channel), index)
                tags = builder.add(builder.shuffle_vector(
                    builder.insert_element(ir.Constant(indices_type, None), tag, ir.Constant(index, 0)),
                    ir.Constant(indices_type, None), ir.Constant(indices_type, [0] * VECTOR)), lane_numbers)
                target = builder.gep(listed_data, [builder.load(found)])
                if REGISTER_COMPRESS:
                    packed = builder.call(compress, [tags, ir.Constant(indices_type, None), fire])
                    builder.store(packed, builder.bitcast(target, indices_type.as_pointer()), align=4)
                else:
                    builder.call(compress, [tags, target, fire])
                count = builder.zext(builder.call(popcount, [builder.bitcast(fire, mask_bits)]), intp)
                builder.store(builder.add(builder.load(found), count), found)
        builder.store(builder.trunc(builder.load(found), index), builder.gep(starts_data, [positions]))
        return builder.load(found)

    return types.int64(v, sums, bias, params, at, size, lanes, flags, spikes, listed, starts), codegen
