"""Consecutive output positions of a float32 convolution over listed events, summed in vector registers.

    event_offsets(offsets, listed, count, lanes, per_channel)
        offsets[e] = position(e) * lanes + channel(e) * per_channel        for e < count (int32)
    at = append_offsets(flat, at, offsets, first, stop, base)
        flat[at + i] = offsets[first + i] + base                           for i < stop - first; returns
                                                                           at + stop - first
    window_sums(sums, at, stored, bias, weights, flat, count, lanes, output_step)
        sums[at + j lanes : + lanes] = bias[:lanes] + the sum over i < count, in order, of
                                       weights[flat[i] - j output_step : + lanes]        for j < stored

where an event is (position << 16) | channel (nmcompile.ir.neuron_vector) and 1 <= stored <= OUTPUTS_PER_PASS
(channels-last sums, `lanes` a multiple of VECTOR). The caller (nmcompile.ir.float_chain) lists the events of each
input row in (column, channel) order and, for a group of `stored` consecutive outputs of a row, appends each row of
the group's window (the union of its outputs' windows) as the range of the events in its columns, shifted by the
weight offset that turns an event's position into its kernel column for output 0 (output j's column is output_step /
lanes further left). The weights are laid out with zero columns on both sides of the kernel, so an event outside
output j's own window adds an exact zero to it. Each lane is one IEEE float32 addition per event of the window (of
the group's, the extra ones adding 0), in the events' order, from the bias; integer-valued weights leave the exact
sum. Each group size has a loop of its own (so a row's last, shorter group adds nothing for outputs it does not
store).

Why a flat list per group: the events of a window row are a few (about 4 to 9 in the conv net of bench_simulate), so
a loop per window row ended in a mispredicted branch at almost every row, and one loop over the group's whole list
ends once per group. `append_offsets` copies 16 offsets whatever the row's count and advances by the count, so
building the list takes no branch on the events either (a second copy only for a row of more than 16 events). On
the 12 -> 32 5x5/2 layer of that net (one thread, its product alone, 200 random steps at the net's 6.6% rate, in
turn in one process): a loop per window row, four outputs per pass 11.6-14.8 us per step; flat lists with four
outputs 8.4-10.7, three 7.4-10.4, two 6.8-9.6, one 8.5-12 (more groups, each a loop: more mispredicted ends). Fewer
outputs per pass also add fewer zeros: with stride s and a kernel K wide each of a group's G outputs adds the events
of (G - 1) s + K columns, of which K are its own (2 outputs, 5 wide, stride 2: 5 of 7).

The sums of a group (outputs x vectors of 16 lanes, at most 8 vectors) are registers across the loop over its
events: numba's own loops keep them in memory, where each event's adds would wait for the previous event's stores.
Wider layers take their lanes in blocks of BLOCK_VECTORS vectors, each block one pass over the group's list.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from nmcompile.ir import jit
from nmcompile.ir.neuron_vector import CHANNEL_BITS
from nmcompile.ir.vector_ops import VECTOR, _array_data, _float32_rows, _int32_list

BLOCK_VECTORS = 4             # vectors of lanes per pass (4 x 16 lanes: 64 output channels)
OUTPUTS_PER_PASS = 2          # output positions per pass (the module docstring's measurement); the weights'
                              # zero margin is (this - 1) x stride columns

_VECTOR_TYPE = ir.VectorType(ir.FloatType(), VECTOR)
_OFFSETS_TYPE = ir.VectorType(ir.IntType(32), VECTOR)


@jit.inline
def event_offsets(offsets, listed, count, lanes, per_channel):
    """offsets[e] = position(e) x lanes + channel(e) x per_channel for the events listed[:count], as int32: the
    sums that follow wrap modulo 2^32, so the final weight offsets are exact wherever the weights hold fewer than
    2^31 values (float_chain._projection_fits)."""
    for e in range(count):
        event = listed[e]
        offsets[e] = (event >> CHANNEL_BITS) * lanes + (event & ((1 << CHANNEL_BITS) - 1)) * per_channel


@intrinsic
def _copy_offsets(typingctx, flat, at, offsets, first, base):
    """flat[at : at + 16] = offsets[first : first + 16] + base (int32 vectors; the caller keeps 16 values of room)."""
    if not (_int32_list(flat) and _int32_list(offsets)):
        return None

    def codegen(context, builder, signature, args):
        sig = signature.args
        data = _array_data(context, builder, signature, args)
        at, first = (context.cast(builder, args[i], sig[i], types.intp) for i in (1, 3))
        base = builder.trunc(context.cast(builder, args[4], sig[4], types.int64), ir.IntType(32))
        spread = builder.insert_element(ir.Constant(_OFFSETS_TYPE, None), base, ir.Constant(ir.IntType(32), 0))
        spread = builder.shuffle_vector(spread, ir.Constant(_OFFSETS_TYPE, None),
                                        ir.Constant(ir.VectorType(ir.IntType(32), VECTOR), [0] * VECTOR))
        source = builder.bitcast(builder.gep(data(2), [first]), _OFFSETS_TYPE.as_pointer())
        target = builder.bitcast(builder.gep(data(0), [at]), _OFFSETS_TYPE.as_pointer())
        builder.store(builder.add(builder.load(source, align=4), spread), target, align=4)
        return context.get_dummy_value()

    return types.void(flat, at, offsets, first, base), codegen


@jit.inline
def append_offsets(flat, at, offsets, first, stop, base):
    """flat[at + i] = offsets[first + i] + base for i < stop - first, 16 at a time (reads and writes up to 15 values
    past the range: the caller keeps that room); returns at + stop - first."""
    _copy_offsets(flat, at, offsets, first, base)
    for more in range(VECTOR, stop - first, VECTOR):
        _copy_offsets(flat, at + more, offsets, first + more, base)
    return at + stop - first


def _group_sums(outputs: int, vectors: int):
    """The intrinsic of one block of `vectors` vectors for `outputs` outputs per pass (the module docstring's
    window_sums, with the lanes from `block`)."""

    @intrinsic
    def group_sums(typingctx, sums, at, bias, weights, flat, count, lanes, output_step, block):
        if not (_float32_rows(sums, bias, weights) and _int32_list(flat)):
            return None

        def codegen(context, builder, signature, args):
            intp = context.get_value_type(types.intp)
            sig = signature.args
            vector_ptr = _VECTOR_TYPE.as_pointer()
            data = _array_data(context, builder, signature, args)

            def vector_at(pointer, offset):
                return builder.bitcast(builder.gep(pointer, [offset]), vector_ptr)

            sums_data, bias_data, weights_data, flat_data = (data(i) for i in (0, 2, 3, 4))
            at, count, lanes, output_step, block = (
                context.cast(builder, args[i], sig[i], types.intp) for i in (1, 5, 6, 7, 8))
            lane_offsets = [builder.add(block, ir.Constant(intp, g * VECTOR)) for g in range(vectors)]
            starting = [builder.load(vector_at(bias_data, offset), align=4) for offset in lane_offsets]
            accs = [[cgutils.alloca_once_value(builder, value) for value in starting] for _ in range(outputs)]
            shifts = [builder.sub(block, builder.mul(output_step, ir.Constant(intp, j))) for j in range(outputs)]
            zero, one = ir.Constant(intp, 0), ir.Constant(intp, 1)
            with cgutils.for_range_slice(builder, zero, count, one) as (i, _):
                offset = builder.sext(builder.load(builder.gep(flat_data, [i])), intp)
                for j in range(outputs):
                    shifted = builder.add(offset, shifts[j])
                    for g in range(vectors):
                        at_g = builder.add(shifted, ir.Constant(intp, g * VECTOR))
                        piece = builder.load(vector_at(weights_data, at_g), align=4)
                        builder.store(builder.fadd(builder.load(accs[j][g]), piece), accs[j][g])
            for j in range(outputs):
                first = builder.add(at, builder.mul(lanes, ir.Constant(intp, j)))
                for g in range(vectors):
                    target = vector_at(sums_data, builder.add(first, lane_offsets[g]))
                    builder.store(builder.load(accs[j][g]), target, align=4)
            return context.get_dummy_value()

        return types.void(sums, at, bias, weights, flat, count, lanes, output_step, block), codegen

    return group_sums


_GROUPS = {(outputs, vectors): _group_sums(outputs, vectors)
           for vectors in range(1, BLOCK_VECTORS + 1) for outputs in range(1, OUTPUTS_PER_PASS + 1)}
_g11, _g21, _g12, _g22 = _GROUPS[1, 1], _GROUPS[2, 1], _GROUPS[1, 2], _GROUPS[2, 2]
_g13, _g23, _g14, _g24 = _GROUPS[1, 3], _GROUPS[2, 3], _GROUPS[1, 4], _GROUPS[2, 4]


@jit.inline
def window_sums(sums, at, stored, bias, weights, flat, count, lanes, output_step):
    """The module docstring's sums of a group of `stored` consecutive positions (1 <= stored <= OUTPUTS_PER_PASS),
    BLOCK_VECTORS vectors of lanes per pass over the group's list, each pass adding for exactly `stored` outputs."""
    for block in range(0, lanes, BLOCK_VECTORS * VECTOR):
        vectors = min(BLOCK_VECTORS, (lanes - block) // VECTOR)
        args = (sums, at, bias, weights, flat, count, lanes, output_step, block)
        if vectors == 1:
            if stored == 2:
                _g21(*args)
            else:
                _g11(*args)
        elif vectors == 2:
            if stored == 2:
                _g22(*args)
            else:
                _g12(*args)
        elif vectors == 3:
            if stored == 2:
                _g23(*args)
            else:
                _g13(*args)
        elif stored == 2:
            _g24(*args)
        else:
            _g14(*args)
