"""Pair-based STDP with 8-bit integer traces: the reference kernel of `QPlasticLinear` (docs/semantics.md §3.5).

Every sample of a batch learns on its own copy of the weights. Per step the simulator calls `peek()` (the input
delivered at t with the weights at the start of t), then the neuron layer runs, then `push(x[t])` and
`learn(post[t])`. Importing this module registers the kernel (nmcompile.ir.simulate does). Engine 'compiled' runs
the product and the learning step as numba loops (nmcompile.ir.stdp_loops: plastic_product, stdp_learn) that update
the weights and traces in place, operation for operation as `stdp_update`; engine 'numpy' runs the numpy form below.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import fixed
from nmcompile.ir.base import Shape
from nmcompile.ir.graph import Graph
from nmcompile.ir.integer import TRACE_MAX, QPlasticLinear
from nmcompile.ir.kernels import Kernel, register_kernel


def post_layer(graph: Graph, name: str) -> str | None:
    """The neuron layer (QNeuron) that projection `name` feeds without a step in between (only Flatten may sit
    between them), or None. The rule pairs what the projection delivers at t with that layer's spikes at t."""
    try:
        trace = graph.trace_forward(name)
    except UnsupportedError:
        return None
    if graph.node(trace.end).kind != "QNeuron" or np.any(trace.delay(graph)):
        return None
    return trace.end


def decay_trace(trace: np.ndarray, shift: int, spikes: np.ndarray, increment: int) -> np.ndarray:
    """min(trace - (trace >> shift) + increment * spikes, 255)."""
    return np.minimum(trace - np.right_shift(trace, shift) + increment * spikes, TRACE_MAX)


def stdp_update(op: QPlasticLinear, weight: np.ndarray, pre_trace: np.ndarray, post_trace: np.ndarray,
                pre: np.ndarray, post: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One learning step for a batch: weight [B, out, in], traces [B, in] / [B, out], spikes pre [B, in] and
    post [B, out] (0/1). Returns the new (weight, pre_trace, post_trace)."""
    pre_trace = decay_trace(pre_trace, op.pre_decay, pre, op.pre_increment)
    depress = np.right_shift(post_trace, op.ltd_shift)[:, :, None]             # [B, out, 1]
    weight = np.where(pre[:, None, :] > 0, np.maximum(weight - depress, op.w_min), weight)
    potentiate = np.right_shift(pre_trace, op.ltp_shift)[:, None, :]           # [B, 1, in]
    weight = np.where(post[:, :, None] > 0, np.minimum(weight + potentiate, op.w_max), weight)
    post_trace = decay_trace(post_trace, op.post_decay, post, op.post_increment)
    return weight, pre_trace, post_trace


class PlasticLinear(Kernel):
    """a[t] = floor_shift(W(t) x[t - d], weight_exp) per sample, then W learns from (x[t - d], post[t])."""

    lagged = True
    state_names = ()

    def __init__(self, op: QPlasticLinear, in_shape, out_shape):
        super().__init__(in_shape, out_shape, np.dtype(np.int64))
        self.op = op
        self.delay = op.scalar_delay

    def reset(self, batch: int) -> None:
        op = self.op
        self.weight = np.broadcast_to(op.weight, (batch, *op.weight.shape)).astype(np.int64)
        self.pre_trace = np.zeros((batch, op.weight.shape[1]), dtype=np.int64)
        self.post_trace = np.zeros((batch, op.weight.shape[0]), dtype=np.int64)
        zero = np.zeros((batch, op.weight.shape[1]), dtype=np.int64)
        self._buffer: deque[np.ndarray] = deque([zero] * self.delay, maxlen=self.delay)
        self._pre = zero

    def peek(self) -> np.ndarray:
        self._pre = self._buffer[0]                                            # x[t - d]
        if self.engine == "compiled":
            from nmcompile.ir import stdp_loops

            total = np.empty(self.post_trace.shape, dtype=np.int64)
            stdp_loops.plastic_product(self.weight, np.ascontiguousarray(self._pre), total)
        else:
            total = np.einsum("boi,bi->bo", self.weight, self._pre)
        return fixed.floor_shift(total, self.op.weight_exp)

    def push(self, x: np.ndarray) -> None:
        self._buffer.append(np.asarray(x, dtype=np.int64).reshape(x.shape[0], -1))

    def learn(self, post: np.ndarray) -> None:
        post = np.asarray(post, dtype=np.int64).reshape(post.shape[0], -1)
        if self.engine != "compiled":
            self.weight, self.pre_trace, self.post_trace = stdp_update(self.op, self.weight, self.pre_trace,
                                                                       self.post_trace, self._pre, post)
            return
        from nmcompile.ir import stdp_loops

        op = self.op
        stdp_loops.stdp_learn(self.weight, self.pre_trace, self.post_trace, np.ascontiguousarray(self._pre),
                       np.ascontiguousarray(post), op.pre_decay, op.pre_increment, op.post_decay, op.post_increment,
                       op.ltp_shift, op.ltd_shift, op.w_min, op.w_max)

    def run(self, x: np.ndarray, record: bool = False) -> np.ndarray:
        raise AssertionError("plastic projections are simulated step by step")


@register_kernel(QPlasticLinear, mode="integer")
def _plastic_linear(op: QPlasticLinear, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    return PlasticLinear(op, in_shape, out_shape)
