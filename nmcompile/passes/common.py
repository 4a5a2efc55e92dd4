"""Helpers shared by passes: reshaping per-channel arrays, rewiring, scaling projection rows.

Which ops are weighted projections, transparent, neutral or integer is asked of the op (`op.weighted`, ...).
"""

from __future__ import annotations

import numpy as np

from nmcompile.ir import ops as O
from nmcompile.ir.base import Op
from nmcompile.ir.graph import Graph


def channel_shape(array: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) array reshaped to broadcast over a (C, *spatial) tensor of `ndim` dims."""
    return array.reshape((-1,) + (1,) * (ndim - 1))


def bypass(graph: Graph, name: str, to: str) -> None:
    """Remove node `name`, connecting its consumers to `to` instead (edge flags preserved)."""
    for e in graph.out_edges(name):
        graph.connect(to, e.dst, e.recurrent)
    graph.remove_node(name)


def scale_rows(op: Op, factor: np.ndarray) -> Op:
    """A projection whose output unit j is multiplied by factor[j] (weights and bias).

    `factor` is per output unit: shape (out,) for Linear, (C_out,) or broadcastable to (C_out, ...) for convs.
    """
    factor = np.asarray(factor, dtype=np.float64)
    if op.kind == "Linear":
        f = np.broadcast_to(factor.reshape(-1), (op.weight.shape[0],))
        return op.replace(weight=op.weight * f[:, None], bias=None if op.bias is None else op.bias * f)
    if op.kind in ("Conv1d", "Conv2d"):
        f = per_channel(factor, op.weight.shape[0])
        return op.replace(weight=op.weight * channel_shape(f, op.weight.ndim),
                          bias=None if op.bias is None else op.bias * f)
    raise TypeError(op.kind)


def per_channel(array: np.ndarray, channels: int) -> np.ndarray:
    """(C,) values of an array that is uniform within each channel; raises ValueError otherwise."""
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 0:
        return np.full(channels, float(a))
    flat = a.reshape(a.shape[0], -1) if a.shape[0] == channels else None
    if flat is None:
        if a.size == 1:
            return np.full(channels, float(a.reshape(-1)[0]))
        raise ValueError(f"array of shape {a.shape} is not per-channel for {channels} channels")
    if not np.all(flat == flat[:, :1]):
        raise ValueError("values differ within a channel")
    return flat[:, 0].copy()


def add_bias(op: Op, bias: np.ndarray) -> Op:
    """A projection with `bias` (per output unit / channel) added to its own."""
    current = np.zeros(op.weight.shape[0]) if op.bias is None else op.bias
    return op.replace(bias=current + np.asarray(bias, dtype=np.float64))


def unique_name(graph: Graph, base: str) -> str:
    name, k = base, 1
    while name in graph:
        k += 1
        name = f"{base}{k}"
    return name


__all__ = [
    "O",
    "add_bias",
    "bypass",
    "channel_shape",
    "per_channel",
    "scale_rows",
    "unique_name",
]
