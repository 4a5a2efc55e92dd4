"""fold_bn: remove every BatchNorm by folding it into the Linear/Conv next to it (exact in real arithmetic).

    after a projection:  y = a*(W x + b) + c           ->  W' = a W (per output row), b' = a b + c
    before a Linear:     W (a x + c) + b                ->  W' = W diag(a),           b' = b + W c
    before a Conv:       the same per input channel, exact only without zero padding (a padded border would
                         receive c where the original saw 0): refused with an error naming the layer
with a = weight / sqrt(var + eps) and c = bias - mean * a (PyTorch's eval arithmetic).
"""

from __future__ import annotations

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.passes import PassContext
from nmcompile.passes.common import bypass, channel_shape, scale_rows


def affine_of(bn: O.BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    a = 1.0 / np.sqrt(bn.var + bn.eps) * bn.weight
    return a, bn.bias - bn.mean * a


def run(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.copy()
    folded = []
    for name in [n for n in g.order() if g.node(n).kind == "BatchNorm"]:
        bn = g.node(name)
        a, c = affine_of(bn)
        preds = g.in_edges(name)
        src = preds[0].src if len(preds) == 1 and not preds[0].recurrent else None
        if src is not None and g.node(src).weighted and len(g.out_edges(src)) == 1:
            op = g.node(src)
            bias = np.zeros(op.weight.shape[0]) if op.bias is None else op.bias
            g.replace_node(src, scale_rows(op, a).replace(bias=bias * a + c))
            bypass(g, name, src)
            folded.append(f"{name} -> {src}")
            continue
        succ = g.out_edges(name)
        dst = succ[0].dst if len(succ) == 1 and not succ[0].recurrent and len(preds) == 1 else None
        if dst is not None and g.node(dst).weighted and len(g.in_edges(dst)) == 1:
            g.replace_node(dst, _fold_into_input(g.node(dst), a, c, name, dst))
            for e in preds:
                g.connect(e.src, dst, e.recurrent)
            g.remove_node(name)
            folded.append(f"{name} -> {dst}")
            continue
        raise UnsupportedError(f"BatchNorm '{name}' is neither the only consumer of a Linear/Conv nor the only input "
                               "of one, so it cannot be folded exactly")
    ctx.reports["fold_bn"] = _Report(folded)
    return g


def _fold_into_input(op, a: np.ndarray, c: np.ndarray, bn_name: str, name: str):
    if op.kind == "Linear":
        if op.delays is not None and op.delays.any():
            raise UnsupportedError(f"BatchNorm '{bn_name}' feeds '{name}', which has per-synapse delays; the constant "
                                   "term would arrive at different steps")
        bias = (np.zeros(op.weight.shape[0]) if op.bias is None else op.bias) + op.weight @ c
        return op.replace(weight=op.weight * a[None, :], bias=bias)
    padding = np.atleast_1d(op.padding)
    if np.any(padding > 0):
        raise UnsupportedError(f"BatchNorm '{bn_name}' sits before the zero-padded convolution '{name}': folding it "
                               "would add its shift to the padded border, which the original never saw; move the "
                               "BatchNorm after the convolution")
    groups = op.groups
    cin_g = op.weight.shape[1]
    cout_g = op.weight.shape[0] // groups
    a_in = np.concatenate([a[g * cin_g:(g + 1) * cin_g] for g in range(groups)])
    weight = op.weight.copy()
    bias = np.zeros(op.weight.shape[0]) if op.bias is None else op.bias.copy()
    for g in range(groups):
        rows = slice(g * cout_g, (g + 1) * cout_g)
        a_g = a_in[g * cin_g:(g + 1) * cin_g]
        c_g = c[g * cin_g:(g + 1) * cin_g]
        bias[rows] += (weight[rows] * channel_shape(c_g, weight.ndim - 1)).reshape(cout_g, -1).sum(axis=1)
        weight[rows] = weight[rows] * channel_shape(a_g, weight.ndim - 1)
    return op.replace(weight=weight, bias=bias)


class _Report:
    def __init__(self, folded: list[str]):
        self.folded = folded

    def lines(self) -> list[str]:
        if not self.folded:
            return ["no BatchNorm layers"]
        return [f"folded {len(self.folded)} BatchNorm layer(s): {', '.join(self.folded)}"]
