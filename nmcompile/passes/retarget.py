"""retarget: an integer network read as integers (a lava-dl netx file) re-expressed exactly in a target's formats.

Such a network skips fold/retime/quantize: it is already the integer model. What differs between targets is only
the weight format, and an even weight mantissa can move one bit into the exponent without changing any sum:

    floor_shift(sum_i W_i x_i, e) == floor_shift(sum_i (W_i / 2) x_i, e + 1)      (every W_i even)

A dense projection becomes its effective weights (`prepared_weights`, what Lava uses), halved while they exceed the
target's range and are all even; on a target without sign modes it is then stored mixed with the target's weight
bits (those weights survive `prepared_weights` unchanged). A convolution's kernel is halved the same way where the
target has conv exponents. What still does not fit is left to `lowered.limits`, which refuses it naming the
projection and the numbers.
"""

from __future__ import annotations

import numpy as np

from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.passes import PassContext


def _halve(weight: np.ndarray, exp: int, target, allowed: bool) -> tuple[np.ndarray, int]:
    while (allowed and weight.size and (weight.min() < target.weight_min or weight.max() > target.weight_max)
           and not np.any(weight % 2) and exp < target.weight_exp_range[1]):
        weight, exp = weight // 2, exp + 1
    return weight, exp


def run(graph: Graph, ctx: PassContext) -> Graph:
    target = ctx.require_target("retarget")
    out = graph.copy()
    for name, op in graph.nodes.items():
        if isinstance(op, O.QLinear) and type(op) is O.QLinear:
            if target.sign_modes:
                continue
            weight, exp = _halve(op.effective_weight(), op.weight_exp, target, True)
            replaced = op.replace(weight=weight, weight_exp=exp, num_weight_bits=target.num_weight_bits,
                                  sign_mode="mixed")
            if np.array_equal(replaced.effective_weight(), weight):
                out.replace_node(name, replaced)
        elif isinstance(op, O.QConv) and target.conv_weight_exp:
            weight, exp = _halve(op.weight, op.weight_exp, target, True)
            out.replace_node(name, op.replace(weight=weight, weight_exp=exp))
    return out

