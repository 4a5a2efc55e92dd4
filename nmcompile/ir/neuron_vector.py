"""The float32 LIF/IF update of a channels-last layer in vectors of 16 lanes, listing the neurons that fire.

    count = update_and_list(v, sums, sums_at, bias, params, at, first, stop, lanes, flags, spikes, listed, found,
                            starts)

For the positions q = first .. stop - 1 of the layer, i.e. every n = q lanes + c (`lanes` a multiple of VECTOR,
channel c < lanes), with x = sums[sums_at + n], the state v[at + n] (v holds every layer of a chain, this one from
`at`; sums the same, sums_at = at, or a buffer of some of its positions) and the rows of params [5, m] (beta,
gain, bias, threshold, v_reset; per channel, params[:, c], when m = lanes, else per neuron, params[:, n]), the
operations of jit.float_neuron (no refractory period, batch norm or synaptic current) in its order:

    drive = gain * x           (jit.float_neuron skips the product for unit gain: gain is 1 there, the same value)
    h     = beta * v + drive   (beta is 1 for IF, where jit.float_neuron adds v: the same value)
    h     = h                  if zero_bias  else h + bias
    cross(u) = u >= threshold  if compare_ge else u > threshold        (ordered: NaN never crosses)
    delayed and snntorch_immediate timings, with p = cross(v) (the last step's spike, not yet reset):
          h = h - p * threshold                                        if reset subtract
          h = v_reset                                                  if p and reset zero
    spike = 1 if cross(h) else 0
    immediate timing:          h = v_reset if spike and reset zero;  h = h - spike * threshold if reset subtract
    snntorch_immediate timing: h = h - (spike - p) * threshold
    v[at + n] = h;   sums[sums_at + n] = bias[c] (the sums start the next step at the projection's bias) unless
    keep_sums (a projection that writes its sums rather than adding to them);   spikes[n] = spike with store_spikes

each an IEEE float32 operation (a product, then a sum: no fused multiply-add), so v and the spikes equal those of
the neuron kernel given the same x. The neurons that fire are listed as events (q << 16) | c in ascending n into
listed from listed[found] (the events of earlier positions, listed by earlier calls), and found plus their number
is returned; starts[q] is the index in listed of the first event of position q or after (starts[stop] = the
returned count). One vector compare, one compress (AVX-512 vpcompressd, or LLVM's expansion
elsewhere) and one population count per 16 neurons, no branch on the values. flags (int64) packs zero_bias (1),
compare_ge (2), store_spikes (4), the reset mode (8 x jit.RESET_*), the timing (32 x jit.TIMING_*) and keep_sums
(128; store_spikes and keep_sums are tested per vector, a branch taken the same way throughout a call). Each of the
36 combinations of zero_bias, compare_ge, reset mode and timing has a loop of its own, chosen once per call: with
one loop that tested the flags per vector (LLVM turns such selects into about 13 branches per 16 neurons),
bench_simulate's conv net chain took 10-13% longer (one thread, per sample-step, four rounds in one process). Where the
parameters are per channel and a position has one or two vectors of lanes (16 or 32), the loop holds the parameters
and biases in registers and unrolls each position: 3.1-3.7 against 4.1-4.6 ns per 16 neurons (900 positions of 16
lanes, one thread, the two alternated in one process).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from nmcompile.ir import jit
from nmcompile.ir.vector_ops import REGISTER_COMPRESS, VECTOR, _array_data, _float32_rows, _int32_list

CHANNEL_BITS = 16            # an event is (position << CHANNEL_BITS) | channel in one int32
ZERO_BIAS, COMPARE_GE, STORE_SPIKES, RESET_SHIFT, TIMING_SHIFT, KEEP_SUMS = 1, 2, 4, 3, 5, 128
_VARIANTS = [(zero_bias, compare_ge, reset, timing) for zero_bias in (False, True) for compare_ge in (False, True)
             for reset in (jit.RESET_NONE, jit.RESET_ZERO, jit.RESET_SUBTRACT)
             for timing in (jit.TIMING_IMMEDIATE, jit.TIMING_DELAYED, jit.TIMING_SNNTORCH)]


def neuron_flags(zero_bias: bool, compare_ge: bool, reset_mode: int, timing: int, store_spikes: bool) -> int:
    """update_and_list's flags word (reset_mode a jit.RESET_*, timing a jit.TIMING_*)."""
    if reset_mode not in (jit.RESET_NONE, jit.RESET_ZERO, jit.RESET_SUBTRACT) or \
            timing not in (jit.TIMING_IMMEDIATE, jit.TIMING_DELAYED, jit.TIMING_SNNTORCH):
        raise ValueError(f"no neuron update for reset mode {reset_mode} and timing {timing}")
    return (ZERO_BIAS * zero_bias | COMPARE_GE * compare_ge | STORE_SPIKES * store_spikes
            | reset_mode << RESET_SHIFT | timing << TIMING_SHIFT)


def _variant_key(zero_bias: bool, compare_ge: bool, reset_mode: int, timing: int) -> int:
    return neuron_flags(zero_bias, compare_ge, reset_mode, timing, False)


_FLOAT = ir.FloatType()
_VECTOR_TYPE = ir.VectorType(_FLOAT, VECTOR)


@intrinsic
def update_and_list(typingctx, v, sums, sums_at, bias, params, at, first, stop, lanes, flags, spikes, listed, found,
                    starts):
    if not (_float32_rows(v, sums, bias, params, spikes) and v.ndim == 1 and params.ndim == 2
            and _int32_list(listed) and _int32_list(starts)):
        return None

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        index = ir.IntType(32)
        indices_type, mask_type = ir.VectorType(index, VECTOR), ir.VectorType(ir.IntType(1), VECTOR)
        mask_bits = ir.IntType(VECTOR)
        vector_ptr = _VECTOR_TYPE.as_pointer()

        data = _array_data(context, builder, signature, args)

        def scalar(i):
            return context.cast(builder, args[i], signature.args[i], types.intp)

        v_data, sums_data, bias_data, params_data = data(0), data(1), data(3), data(4)
        spikes_data, listed_data, starts_data = data(10), data(11), data(13)
        sums_at, at, first_position, stop_position = scalar(2), scalar(5), scalar(6), scalar(7)
        lanes, flags, found_before = scalar(8), scalar(9), scalar(12)
        sums_data, v_data = builder.gep(sums_data, [sums_at]), builder.gep(v_data, [at])
        width = builder.extract_value(context.make_array(signature.args[4])(context, builder, args[4]).shape, 1)
        per_neuron = builder.icmp_unsigned("!=", width, lanes)
        rows = [builder.gep(params_data, [builder.mul(ir.Constant(intp, r), width)]) for r in range(5)]

        store_spikes = builder.icmp_unsigned("!=", builder.and_(flags, ir.Constant(intp, STORE_SPIKES)),
                                             ir.Constant(intp, 0))
        reset_sums = builder.icmp_unsigned("==", builder.and_(flags, ir.Constant(intp, KEEP_SUMS)),
                                           ir.Constant(intp, 0))
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
        found = cgutils.alloca_once_value(builder, found_before)
        step = ir.Constant(intp, VECTOR)
        zero = ir.Constant(intp, 0)

        def load(pointer, n):
            return builder.load(builder.bitcast(builder.gep(pointer, [n]), vector_ptr), align=4)

        def store(value, pointer, n):
            builder.store(value, builder.bitcast(builder.gep(pointer, [n]), vector_ptr), align=4)

        def update(n, variant, parameters):
            """The new v and the fire mask of the 16 neurons from n (the module docstring, for one variant), with
            the parameters (beta, gain, bias, threshold, v_reset) of their lanes."""
            zero_bias, compare_ge, reset, timing = variant

            def crosses(value, threshold):
                return builder.fcmp_ordered(">=" if compare_ge else ">", value, threshold)

            x, old = load(sums_data, n), load(v_data, n)
            beta, gain, bias, threshold, v_reset = parameters
            h = builder.fadd(builder.fmul(beta, old), builder.fmul(gain, x))
            if not zero_bias:
                h = builder.fadd(h, bias)
            pending_spike = None
            if timing != jit.TIMING_IMMEDIATE:        # delayed timings: the reset of the last step's spike
                pending = crosses(old, threshold)
                pending_spike = builder.select(pending, ones, zeros)
                if reset == jit.RESET_SUBTRACT:
                    h = builder.fsub(h, builder.fmul(pending_spike, threshold))
                elif reset == jit.RESET_ZERO:
                    h = builder.select(pending, v_reset, h)
            fire = crosses(h, threshold)
            spike = builder.select(fire, ones, zeros)
            if timing == jit.TIMING_IMMEDIATE:
                if reset == jit.RESET_ZERO:
                    h = builder.select(fire, v_reset, h)
                elif reset == jit.RESET_SUBTRACT:
                    h = builder.fsub(h, builder.fmul(spike, threshold))
            elif timing == jit.TIMING_SNNTORCH:
                h = builder.fsub(h, builder.fmul(builder.fsub(spike, pending_spike), threshold))
            return h, spike, fire

        def vector(variant, n, tag, parameters, bias):
            """Update the 16 neurons from n (tag: the event of the first), reset their sums to `bias` (unless
            keep_sums), list those that fire."""
            h, spike, fire = update(n, variant, parameters)
            store(h, v_data, n)
            with builder.if_then(store_spikes):
                store(spike, spikes_data, n)
            with builder.if_then(reset_sums):
                store(bias, sums_data, n)
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

        def positions_loop(variant, vectors):
            """The loop over positions; with `vectors` (per-channel parameters, lanes = vectors x VECTOR) the
            parameters and biases are loaded once and held in registers and each position is unrolled, else each
            position loops over its lanes and loads their parameters."""
            if vectors:
                offsets = [ir.Constant(intp, g * VECTOR) for g in range(vectors)]
                held = [([load(row, offset) for row in rows], load(bias_data, offset)) for offset in offsets]
            with cgutils.for_range_slice(builder, first_position, stop_position, ir.Constant(intp, 1)) as (position, _):
                first = builder.mul(position, ir.Constant(intp, vectors * VECTOR) if vectors else lanes)
                tag0 = builder.shl(position, ir.Constant(intp, CHANNEL_BITS))
                builder.store(builder.trunc(builder.load(found), index), builder.gep(starts_data, [position]))
                if vectors:
                    for offset, (parameters, bias) in zip(offsets, held, strict=True):
                        vector(variant, builder.add(first, offset), builder.trunc(builder.or_(tag0, offset), index),
                               parameters, bias)
                else:
                    with cgutils.for_range_slice(builder, zero, lanes, step) as (channel, _):
                        n = builder.add(first, channel)
                        parameter = builder.select(per_neuron, n, channel)
                        vector(variant, n, builder.trunc(builder.or_(tag0, channel), index),
                               [load(row, parameter) for row in rows], load(bias_data, channel))

        def variant_loops(variant):
            """positions_loop with the parameters held for per-channel parameters and 16 or 32 lanes, else the
            general one."""
            held_lanes = builder.select(per_neuron, zero, lanes)
            joined = builder.append_basic_block("loops_done")
            general = builder.append_basic_block("general_loop")
            choice = builder.switch(held_lanes, general)
            for vectors in (1, 2, 0):
                if vectors:
                    block = builder.append_basic_block(f"held_loop_{vectors}")
                    choice.add_case(ir.Constant(intp, vectors * VECTOR), block)
                else:
                    block = general
                builder.position_at_end(block)
                positions_loop(variant, vectors)
                builder.branch(joined)
            builder.position_at_end(joined)

        key = builder.and_(flags, ir.Constant(intp, ~(STORE_SPIKES | KEEP_SUMS)))
        done = builder.append_basic_block("variants_done")
        choice = builder.switch(key, done)            # flags outside the variants (none made by neuron_flags): no loop
        for variant in _VARIANTS:
            block = builder.append_basic_block(f"variant_{_variant_key(*variant)}")
            choice.add_case(ir.Constant(intp, _variant_key(*variant)), block)
            builder.position_at_end(block)
            variant_loops(variant)
            builder.branch(done)
        builder.position_at_end(done)
        builder.store(builder.trunc(builder.load(found), index), builder.gep(starts_data, [stop_position]))
        return builder.load(found)

    return types.int64(v, sums, sums_at, bias, params, at, first, stop, lanes, flags, spikes, listed, found,
                       starts), codegen
