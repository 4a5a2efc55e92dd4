"""fold_mpbn: turn every MPBNLIF into a plain LIF with per-neuron thresholds (exact in real arithmetic).

The MPBN neuron fires on y = a*h + c > theta (a = bn_weight / sqrt(bn_var + eps), c = bn_bias - bn_mean*a) and
keeps its raw membrane h. Per neuron:

    a > 0   fire on h > theta' with theta' = (theta - c) / a
    a < 0   fire on h < theta', i.e. on -h > -theta': the neuron is negated (its incoming weight rows and biases,
            its bias, initial state and reset value change sign; spikes are unchanged). Reset to zero only: a
            negated neuron that resets by subtraction would have to add, and is refused
    a = 0   y = c is constant: the neuron never fires (c <= theta) or fires at every step (c > theta); it is
            replaced by an equivalent constant neuron and reported

Reset to zero keeps the threshold theta'. Reset by subtraction of R (`reset_amount`) is handled by the offset
rewrite of passes.md §1.6: with w = h - (theta' - R), the neuron fires on w > R, subtracts R, and needs
bias' = bias + (beta - 1)(theta' - R) and w_0 = v_0 - (theta' - R); exact, and R is a normal LIF threshold.
"""

from __future__ import annotations

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.passes import PassContext
from nmcompile.passes.common import per_channel, scale_rows


def run(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.copy()
    notes: list[str] = []
    for name in [n for n in g.order() if g.node(n).kind == "MPBNLIF"]:
        op: O.MPBNLIF = g.node(name)
        shape = op.shape
        a = np.broadcast_to(1.0 / np.sqrt(op.bn_var + op.bn_eps) * op.bn_weight, shape).astype(np.float64)
        c = np.broadcast_to(op.bn_bias - op.bn_mean * a, shape).astype(np.float64)
        theta = np.broadcast_to(op.threshold, shape)
        sign = np.where(a < 0, -1.0, 1.0)
        dead = a == 0
        safe_a = np.where(dead, 1.0, a)
        threshold = (theta - c) / safe_a  # the raw membrane crosses this, downwards where a < 0
        if np.any(sign < 0):
            if op.reset_mode == "subtract":
                raise UnsupportedError(
                    f"MPBN layer '{name}' resets by subtraction and has gamma < 0 for {int(np.sum(sign < 0))} "
                    "neuron(s): negating such a neuron turns its reset into adding the reset amount, which no neuron "
                    "model expresses; retrain with reset to zero or constrain gamma > 0")
            _negate_inputs(g, name, sign, shape)
        beta = np.broadcast_to(op.beta, shape)
        params = dict(shape=shape, beta=op.beta, gain=op.gain, bias=sign * op.bias, compare=op.compare,
                      reset_mode=op.reset_mode, v_reset=sign * op.v_reset, v_init=sign * op.v_init,
                      reset_timing="immediate", refractory=op.refractory, start_step=op.start_step,
                      provenance=op.provenance)
        threshold = sign * threshold
        if op.reset_mode == "subtract":
            amount = np.broadcast_to(op.reset_amount, shape)
            offset = threshold - amount            # w = v - offset fires on w > R
            params.update(threshold=amount, bias=params["bias"] + (beta - 1.0) * offset,
                          v_init=params["v_init"] - offset)
        else:
            params["threshold"] = threshold
        if np.any(dead):
            params = _constant_neurons(g, name, params, dead, np.broadcast_to(c, shape) > theta, notes)
        g.replace_node(name, O.LIF(**{k: _compact(v) for k, v in params.items()}))
        negated = int(np.sum(sign < 0))
        notes.append(f"{name}: {op.size} thresholds folded ({negated} negated for gamma < 0, "
                     f"{int(np.sum(dead))} constant for gamma = 0)")
    ctx.reports["fold_mpbn"] = _Report(notes)
    return g


def _compact(value):
    if isinstance(value, np.ndarray) and value.size and np.all(value == value.reshape(-1)[0]):
        return value.reshape(-1)[0]
    return value


def _negate_inputs(g: Graph, name: str, sign: np.ndarray, shape) -> None:
    """Multiply the rows of every projection feeding `name` by `sign` (per neuron or per channel)."""
    for edge in g.in_edges(name):
        src = g.node(edge.src)
        if not src.weighted or len(g.out_edges(edge.src)) != 1:
            raise UnsupportedError(
                f"MPBN layer '{name}' has neurons with gamma < 0, which fold exactly only by negating their inputs, "
                f"but its input '{edge.src}' ({src.kind}) is not a Linear/Conv feeding only this layer")
        if src.kind == "Linear":
            factor = sign.reshape(-1)
        else:
            try:
                factor = per_channel(sign, src.weight.shape[0])
            except ValueError:
                raise UnsupportedError(
                    f"MPBN layer '{name}': gamma < 0 on part of a channel of the convolution '{edge.src}'; element-"
                    "wise MPBN cannot be folded into shared kernels (use channel-wise MPBN)") from None
        g.replace_node(edge.src, scale_rows(src, factor))


def _constant_neurons(g: Graph, name: str, params: dict, dead: np.ndarray, always: np.ndarray, notes: list) -> dict:
    """gamma = 0: a never-firing neuron gets an unreachable threshold from a silent input; an always-firing one a
    bias above its threshold. Both need their inputs removed, so only whole layers or inputs we can zero."""
    for edge in g.in_edges(name):
        src = g.node(edge.src)
        if not src.weighted or len(g.out_edges(edge.src)) != 1:
            raise UnsupportedError(f"MPBN layer '{name}' has neurons with gamma = 0 (constant output) fed by "
                                   f"'{edge.src}' ({src.kind}), whose rows cannot be zeroed")
        keep = (~dead).astype(np.float64)
        factor = keep.reshape(-1) if src.kind == "Linear" else per_channel(keep, src.weight.shape[0])
        g.replace_node(edge.src, scale_rows(src, factor))
    out = dict(params)
    for key in ("threshold", "bias", "v_init", "v_reset", "beta"):
        out[key] = np.array(np.broadcast_to(params[key], dead.shape), dtype=np.float64)
    out["threshold"][dead] = 1.0
    out["beta"][dead] = 0.0
    out["v_reset"][dead] = 0.0
    out["v_init"][dead] = 0.0
    out["bias"][dead] = np.where(always[dead], 2.0, 0.0)
    notes.append(f"{name}: {int(np.sum(dead & always))} neuron(s) fire at every step, "
                 f"{int(np.sum(dead & ~always))} never fire (gamma = 0)")
    return out


class _Report:
    def __init__(self, notes: list[str]):
        self.notes = notes

    def lines(self) -> list[str]:
        return self.notes or ["no MPBN layers"]
