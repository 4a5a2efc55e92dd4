"""The compiled loops of pair-based STDP (nmcompile.ir.plasticity's engine 'compiled'): the plastic projection's
product and its learning step, updating each sample's weights and traces in place, operation for operation as
`plasticity.stdp_update`. A module of its own so that importing plasticity (which the simulator always does) never
imports numba."""

from __future__ import annotations

from nmcompile.ir import jit
from nmcompile.ir.integer import TRACE_MAX


@jit.jit
def plastic_product(weight, pre, out):
    """out[b, o] = sum over i with pre[b, i] != 0 of weight[b, o, i] * pre[b, i] (int64, each sample its own
    weights [B, out, in]); reads only the weight columns of active inputs."""
    batch, outputs, inputs = weight.shape
    for b in range(batch):
        for o in range(outputs):
            out[b, o] = 0
        for i in range(inputs):
            value = pre[b, i]
            if value != 0:
                for o in range(outputs):
                    out[b, o] += weight[b, o, i] * value


@jit.jit
def stdp_learn(weight, pre_trace, post_trace, pre, post, pre_decay, pre_increment, post_decay, post_increment,
               ltp_shift, ltd_shift, w_min, w_max):
    """plasticity.stdp_update in place, operation for operation: for each sample b

        xp_i  = min(xp_i - (xp_i >> pre_decay) + pre_increment * pre_i, 255)
        W_oi  = max(W_oi - (yp_o >> ltd_shift), w_min)  where pre_i > 0      (yp before this step)
        W_oi  = min(W_oi + (xp_i >> ltp_shift), w_max)  where post_o > 0     (xp after this step)
        yp_o  = min(yp_o - (yp_o >> post_decay) + post_increment * post_o, 255)"""
    batch, outputs, inputs = weight.shape
    for b in range(batch):
        for i in range(inputs):
            trace = pre_trace[b, i]
            pre_trace[b, i] = min(trace - (trace >> pre_decay) + pre_increment * pre[b, i], TRACE_MAX)
        for o in range(outputs):
            depress = post_trace[b, o] >> ltd_shift
            fired = post[b, o] > 0
            for i in range(inputs):
                w = weight[b, o, i]
                w = max(w - depress, w_min) if pre[b, i] > 0 else w
                w = min(w + (pre_trace[b, i] >> ltp_shift), w_max) if fired else w
                weight[b, o, i] = w
        for o in range(outputs):
            trace = post_trace[b, o]
            post_trace[b, o] = min(trace - (trace >> post_decay) + post_increment * post[b, o], TRACE_MAX)
