"""Consecutive output positions of a float32 convolution over listed events, summed in vector registers.

    window_sums(sums, at, stored, bias, weights, listed, spans, rows, lanes, per_channel, output_step)

sets sums[at + j lanes : + lanes] for the j < stored output positions of a group of `stored` consecutive ones in a
row (1 <= stored <= outputs_per_pass(lanes); channels-last, `lanes` a multiple of VECTOR) to

    bias[:lanes] + the sum over the window rows r < rows, and over the events e = spans[r, 0] .. spans[r, 1] - 1 in
    order, of weights[spans[r, 2] + position(e) * lanes + channel(e) * per_channel - j * output_step : + lanes]

where an event is (position << 16) | channel (nmcompile.ir.neuron_vector). The caller lists the events of each input
row in (column, channel) order and gives, for each row of the group's window (the union of its outputs' windows),
the range of the events in its columns and the weight offset that turns an event's position into its kernel column
for output 0; output j's column is output_step / lanes further left. The weights are laid out with zero columns on
both sides of the kernel (nmcompile.ir.float_chain), so an event outside output j's own window adds an exact zero
to it. Each lane is one IEEE float32 addition per event of the window (of the group's, the extra ones adding 0),
in the events' order, from the bias; integer-valued weights leave the exact sum. Each group size has a loop of its
own (so a row's last, shorter group adds nothing for outputs it does not store); the caller splits a row of W outputs
into ceil(W / outputs_per_pass) groups of as equal sizes as possible (13 outputs in 4 + 3 + 3 + 3: 125 weight columns
per event row visit in all, against 152 for 4 + 4 + 4 + 1 with four sums each, measured 2% faster).

The sums of a group (outputs x vectors of 16 lanes, at most MAX_ACCUMULATORS vectors) are registers across the loop
over its events: numba's own loops keep them in memory, where each event's adds would wait for the previous event's
stores. Several outputs per pass share the loop's control: each (output, window row) pair of a single-output pass
ended its loop over a few events in a mispredicted branch (measured on the 12->32 5x5/2 layer of bench_simulate's conv
net, one thread, the whole chain per sample-step: 42-53 us with one output per pass, 34-41 with two, 34-41 with
three, the three measured in turn five times). Wider layers take their lanes in blocks, each block one pass over the
events.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from nmcompile.ir import jit
from nmcompile.ir.neuron_vector import CHANNEL_BITS
from nmcompile.ir.vector_ops import VECTOR, _array_data, _float32_rows, _int32_list

BLOCK_VECTORS = 4             # vectors of lanes per pass (4 x 16 lanes: 64 output channels)
MAX_ACCUMULATORS = 8          # vectors of sums held in registers per pass (outputs x vectors)

_VECTOR_TYPE = ir.VectorType(ir.FloatType(), VECTOR)


def outputs_per_pass(lanes: int) -> int:
    """Output positions per pass for a layer of `lanes` lanes: 4 with 2 vectors of lanes (all MAX_ACCUMULATORS
    registers: measured on the 12->32 5x5/2 layer of bench_simulate's conv net, one thread, the gather alone per
    sample-step, 11.0-11.8 us against 11.8-12.7 with 3 and 13.1-14.4 with 2, in turn in one process), 3 with one
    vector, 2 with wider blocks (each further output adds zero-weight adds for the events outside its window)."""
    return _MOST_OUTPUTS[min(BLOCK_VECTORS, lanes // VECTOR)]


def _group_sums(outputs: int, vectors: int):
    """The intrinsic of one block of `vectors` vectors for `outputs` outputs per pass (the module docstring, with the
    lanes from `block`)."""

    @intrinsic
    def group_sums(typingctx, sums, at, bias, weights, listed, spans, rows, lanes, per_channel, output_step, block):
        if not (_float32_rows(sums, bias, weights) and _int32_list(listed) and isinstance(spans, types.Array)
                and spans.layout == "C" and spans.dtype == types.int64):
            return None

        def codegen(context, builder, signature, args):
            intp = context.get_value_type(types.intp)
            sig = signature.args
            vector_ptr = _VECTOR_TYPE.as_pointer()

            data = _array_data(context, builder, signature, args)

            def vector_at(pointer, offset):
                return builder.bitcast(builder.gep(pointer, [offset]), vector_ptr)

            sums_data, bias_data, weights_data, listed_data, spans_data = (data(i) for i in (0, 2, 3, 4, 5))
            at, rows, lanes, per_channel, output_step, block = (
                context.cast(builder, args[i], sig[i], types.intp) for i in (1, 6, 7, 8, 9, 10))
            lane_offsets = [builder.add(block, ir.Constant(intp, g * VECTOR)) for g in range(vectors)]
            starting = [builder.load(vector_at(bias_data, offset), align=4) for offset in lane_offsets]
            accs = [[cgutils.alloca_once_value(builder, value) for value in starting] for _ in range(outputs)]
            shifts = [builder.mul(output_step, ir.Constant(intp, j)) for j in range(outputs)]
            zero, one = ir.Constant(intp, 0), ir.Constant(intp, 1)
            with cgutils.for_range_slice(builder, zero, rows, one) as (r, _):
                row = builder.mul(r, ir.Constant(intp, 3))
                lo = builder.load(builder.gep(spans_data, [row]))
                hi = builder.load(builder.gep(spans_data, [builder.add(row, one)]))
                base = builder.add(builder.load(builder.gep(spans_data, [builder.add(row, ir.Constant(intp, 2))])),
                                   block)
                with cgutils.for_range_slice(builder, lo, hi, one) as (e, _):
                    event = builder.zext(builder.load(builder.gep(listed_data, [e])), intp)
                    position = builder.lshr(event, ir.Constant(intp, CHANNEL_BITS))
                    channel = builder.and_(event, ir.Constant(intp, (1 << CHANNEL_BITS) - 1))
                    offset = builder.add(base, builder.add(builder.mul(position, lanes),
                                                           builder.mul(channel, per_channel)))
                    for j in range(outputs):
                        shifted = builder.sub(offset, shifts[j])
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

        return types.void(sums, at, bias, weights, listed, spans, rows, lanes, per_channel, output_step, block), \
            codegen

    return group_sums


_MOST_OUTPUTS = {1: 3, 2: 4, 3: 2, 4: 2}      # outputs_per_pass by vectors of a block
_GROUPS = {(outputs, vectors): _group_sums(outputs, vectors)
           for vectors, most in _MOST_OUTPUTS.items() for outputs in range(1, most + 1)}
_g11, _g21, _g31 = (_GROUPS[outputs, 1] for outputs in (1, 2, 3))
_g12, _g22, _g32, _g42 = (_GROUPS[outputs, 2] for outputs in (1, 2, 3, 4))
_g13, _g23, _g14, _g24 = _GROUPS[1, 3], _GROUPS[2, 3], _GROUPS[1, 4], _GROUPS[2, 4]


@jit.inline
def window_sums(sums, at, stored, bias, weights, listed, spans, rows, lanes, per_channel, output_step):
    """The module docstring's sums of a group of `stored` consecutive positions (1 <= stored <=
    outputs_per_pass(lanes)), BLOCK_VECTORS vectors of lanes per pass over the events, each pass adding for exactly
    `stored` outputs."""
    for block in range(0, lanes, BLOCK_VECTORS * VECTOR):
        vectors = min(BLOCK_VECTORS, (lanes - block) // VECTOR)
        args = (sums, at, bias, weights, listed, spans, rows, lanes, per_channel, output_step, block)
        if vectors == 1:
            if stored == 3:
                _g31(*args)
            elif stored == 2:
                _g21(*args)
            else:
                _g11(*args)
        elif vectors == 2:
            if stored == 4:
                _g42(*args)
            elif stored == 3:
                _g32(*args)
            elif stored == 2:
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
