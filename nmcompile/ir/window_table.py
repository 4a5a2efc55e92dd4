"""A float32 convolution of binary input planes summed by table, one lookup per output and kernel row.

Where an input step is binary (every value 0 or 1) and a kernel row of all input channels is a short bit pattern
(C_in x KW <= TABLE_BITS), the part of output (oy, ox)'s window in input row y = oy sh - ph + ky dh is the pattern

    pattern = sum over c < C_in, kx < KW of  (x[c, y, ox sw - pw + kx] != 0) << (c KW + kx)      (0 outside the input)

and `table[ky, pattern]` [KH, 2^(C_in KW), lanes] holds the sum of the weights w[:, c, ky, kx] of its set bits in
ascending bit order ((c, kx) order: ((w_a + w_b) + w_c) ..., from -0.0, so a single weight is itself and the empty
pattern adds an exact -0.0). The output's sum is then

    bias + table[0, pattern_0] + table[1, pattern_1] + ... + table[KH - 1, pattern_KH-1]

one IEEE float32 addition per lane and kernel row, in ascending ky: a summation order of its own (the kernel row's
partial sum first), which docs/semantics.md allows for float32; integer-valued weights give exact sums in any order.
The cost is KH vector adds per output position and 16 lanes whatever the input's density, against the scatter's
KH x ceil(KW / sw) read-modify-writes per nonzero input (nmcompile.ir.float_events): at the N-MNIST-sized conv net's
10 % input, 5 adds per output against about 6 scatter updates per output. For a step with any other value (a graded
input, or NaN) `find_patterns` returns False: the caller scatters it instead (nmcompile.ir.float_chain runs these
pieces an output row at a time, each row's sums into its neuron update).

Each input row's bits are found 16 values at a time (one vector compare against 0 and one against 1), then held in
one int64 per channel and row, shifted left by pw: so a row, with its padding, must fit in 62 bits (`applies`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from nmcompile.ir import jit
from nmcompile.ir.vector_ops import _VECTOR_TYPE, VECTOR, _array_data, _float32_rows

TABLE_BITS = 10              # C_in x KW: the 2 polarity channels of a DVS input with a kernel 5 wide
TABLE_MAX_BYTES = 1 << 20    # the table of one convolution, [KH, 2^(C_in KW), lanes] float32
ROW_BITS = 62                # a padded input row's bits in one non-negative int64


def applies(c_in: int, kernel_h: int, kernel_w: int, in_w: int, pad_w: int, lanes: int) -> bool:
    """Whether a convolution of this geometry has a table here (a first projection's, dilation 1 along the width)."""
    bits = c_in * kernel_w
    return (bits <= TABLE_BITS and kernel_h * (1 << bits) * lanes * 4 <= TABLE_MAX_BYTES
            and in_w + 2 * pad_w <= ROW_BITS)


def build_table(weight: np.ndarray, lanes: int) -> np.ndarray:
    """table [KH, 2^(C_in KW), lanes] (float32, padded lanes 0) of weight [C_out, C_in, KH, KW]: entry p of kernel row
    ky is the sum of w[:, c, ky, kx] over the set bits c KW + kx of p, in ascending bit order from -0.0 (the entry
    without p's highest bit, plus that bit's weight)."""
    c_out, c_in, kernel_h, kernel_w = weight.shape
    bits = c_in * kernel_w
    rows = np.zeros((kernel_h, bits, lanes), np.float32)          # [ky, c KW + kx, lane]
    rows[:, :, :c_out] = np.asarray(weight, np.float32).transpose(2, 1, 3, 0).reshape(kernel_h, bits, c_out)
    table = np.empty((kernel_h, 1 << bits, lanes), np.float32)
    table[:, 0] = np.float32(-0.0)
    for bit in range(bits):                                       # entries [2^bit, 2^(bit + 1)): highest bit `bit`
        table[:, 1 << bit:2 << bit] = table[:, :1 << bit] + rows[:, bit, None, :]
    return table


@intrinsic
def equal_bits(typingctx, values, start, target):
    """The 16-bit mask of values[start + i] == target (ordered: NaN never equal) for i < 16 (one vector compare)."""
    if not _float32_rows(values):
        return None

    def codegen(context, builder, signature, args):
        values_ty, start_ty, target_ty = signature.args
        data = context.make_array(values_ty)(context, builder, args[0]).data
        pointer = builder.gep(data, [context.cast(builder, args[1], start_ty, types.intp)])
        loaded = builder.load(builder.bitcast(pointer, _VECTOR_TYPE.as_pointer()), align=4)
        value = context.cast(builder, args[2], target_ty, types.float32)
        broadcast = builder.shuffle_vector(
            builder.insert_element(ir.Constant(_VECTOR_TYPE, None), value, ir.Constant(ir.IntType(32), 0)),
            ir.Constant(_VECTOR_TYPE, None), ir.Constant(ir.VectorType(ir.IntType(32), VECTOR), [0] * VECTOR))
        mask = builder.fcmp_ordered("==", loaded, broadcast)
        return builder.zext(builder.bitcast(mask, ir.IntType(VECTOR)), ir.IntType(64))

    return types.int64(values, start, target), codegen


OUTPUTS_PER_PASS = 4         # table_row_sums: independent sums of consecutive outputs interleaved (each output's KH
                             # adds are a chain of dependent additions)


@intrinsic
def table_row_sums(typingctx, sums, at, bias, table, patterns, rows, kh, out_w, lanes):
    """One row of outputs: for ox < out_w and i < lanes (a multiple of 16)

        sums[at + ox lanes + i] = bias[i] + table[rows[0, 1] + patterns[rows[0, 0] + ox] + i]
                                          + table[rows[1, 1] + patterns[rows[1, 0] + ox] + i] + ...

    over the kernel rows ky < kh in that order (rows [kh, 2]: the row of `patterns` and the table offset of each
    kernel row; patterns already times lanes), each vector of 16 sums in a register, OUTPUTS_PER_PASS outputs at
    a time."""
    if not (_float32_rows(sums, bias, table) and all(
            isinstance(a, types.Array) and a.layout == "C" and a.dtype == types.int64 for a in (patterns, rows))):
        return None

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        sig = signature.args
        vector_ptr = _VECTOR_TYPE.as_pointer()

        data = _array_data(context, builder, signature, args)

        sums_data, bias_data, table_data, patterns_data, rows_data = (data(i) for i in (0, 2, 3, 4, 5))
        at, kh, out_w, lanes = (context.cast(builder, args[i], sig[i], types.intp) for i in (1, 6, 7, 8))
        zero, one = ir.Constant(intp, 0), ir.Constant(intp, 1)

        def vector(pointer, offset):
            return builder.bitcast(builder.gep(pointer, [offset]), vector_ptr)

        def outputs(ox, count):
            """`count` consecutive outputs from ox, their sums in registers across the kernel rows."""
            with cgutils.for_range_slice(builder, zero, lanes, ir.Constant(intp, VECTOR)) as (lane, _):
                start = builder.load(vector(bias_data, lane), align=4)
                accs = [cgutils.alloca_once_value(builder, start) for _ in range(count)]
                with cgutils.for_range_slice(builder, zero, kh, one) as (ky, _):
                    pair = builder.mul(ky, ir.Constant(intp, 2))
                    row = builder.add(builder.load(builder.gep(rows_data, [pair])), ox)
                    base = builder.add(builder.load(builder.gep(rows_data, [builder.add(pair, one)])), lane)
                    for j in range(count):
                        pattern = builder.load(builder.gep(patterns_data, [builder.add(row, ir.Constant(intp, j))]))
                        piece = builder.load(vector(table_data, builder.add(base, pattern)), align=4)
                        builder.store(builder.fadd(builder.load(accs[j]), piece), accs[j])
                for j in range(count):
                    position = builder.add(ox, ir.Constant(intp, j))
                    target = vector(sums_data, builder.add(builder.add(at, builder.mul(position, lanes)), lane))
                    builder.store(builder.load(accs[j]), target, align=4)

        whole = builder.mul(builder.sdiv(out_w, ir.Constant(intp, OUTPUTS_PER_PASS)),
                            ir.Constant(intp, OUTPUTS_PER_PASS))
        with cgutils.for_range_slice(builder, zero, whole, ir.Constant(intp, OUTPUTS_PER_PASS)) as (ox, _):
            outputs(ox, OUTPUTS_PER_PASS)
        with cgutils.for_range_slice(builder, whole, out_w, one) as (ox, _):
            outputs(ox, 1)
        return context.get_dummy_value()

    return types.void(sums, at, bias, table, patterns, rows, kh, out_w, lanes), codegen


@jit.inline
def _row_bits(plane, start, width, pad):
    """(bits of plane[start:start + width] != 0 shifted left by pad, whether one of them is neither 0 nor 1)."""
    bits, graded = 0, 0
    k = 0
    while k < width:
        if start + k + VECTOR <= plane.shape[0]:
            nonzero = ~equal_bits(plane, start + k, 0.0) & 0xFFFF
            off = nonzero & ~equal_bits(plane, start + k, 1.0)
            if width - k < VECTOR:
                keep = (1 << (width - k)) - 1
                nonzero &= keep
                off &= keep
        else:                                                 # the plane's last values: one at a time
            nonzero, off = 0, 0
            for i in range(min(VECTOR, width - k)):
                value = plane[start + k + i]
                if value != 0:
                    nonzero |= 1 << i
                    if value != 1:
                        off |= 1 << i
        bits |= nonzero << k
        graded |= off
        k += VECTOR
    return bits << pad, graded != 0


@jit.inline
def find_patterns(planes, in_h, in_w, out_w, kw, sw, pw, lanes, row_words, patterns):
    """patterns[y OW + ox] = the pattern (module docstring) of input row y at output column ox, times lanes, for the
    input planes [C_in, H * W] of one step of one sample, if they are binary: True; else False (patterns unchanged
    or partly written). row_words [C_in, H] is scratch."""
    c_in = planes.shape[0]
    for c in range(c_in):
        for y in range(in_h):
            bits, graded = _row_bits(planes[c], y * in_w, in_w, pw)
            if graded:
                return False
            row_words[c, y] = bits
    window = (1 << kw) - 1
    for y in range(in_h):
        base = y * out_w
        first = row_words[0, y]
        if c_in == 2:                                     # one pass (a DVS input's two polarities)
            second = row_words[1, y]
            for ox in range(out_w):
                shift = ox * sw
                patterns[base + ox] = (((first >> shift) & window) | (((second >> shift) & window) << kw)) * lanes
            continue
        for ox in range(out_w):
            patterns[base + ox] = (first >> (ox * sw)) & window
        for c in range(1, c_in):
            word = row_words[c, y]
            for ox in range(out_w):
                patterns[base + ox] |= ((word >> (ox * sw)) & window) << (c * kw)
        for ox in range(out_w):
            patterns[base + ox] *= lanes
    return True


@jit.inline
def kernel_rows(oy, in_h, out_w, kh, sh, ph, dh, entries, lanes, rows):
    """rows [KH, 2] for output row oy (table_row_sums): each kernel row's row of patterns (row H, all 0, for a
    padding row) and table offset."""
    for ky in range(kh):
        y = oy * sh - ph + ky * dh
        rows[ky, 0] = (y if 0 <= y < in_h else in_h) * out_w
        rows[ky, 1] = ky * entries * lanes
