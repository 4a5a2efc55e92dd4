"""Deterministic text form of a graph (`nmcompile inspect --ir`), the golden form used by tests.

Small arrays are printed in full, uniform arrays as `full[shape](value)`, larger ones as a summary with a
sha256 prefix of their bytes, so any change to any element changes the dump.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from nmcompile.errors import GraphError
from nmcompile.ir.graph import Graph

FORMAT_LINE = "# nmcompile IR v1"
_DTYPE_TAG = {"f": "f", "i": "i", "u": "u", "b": "b"}


def array_digest(array: np.ndarray) -> str:
    a = np.array(array, order="C", copy=True)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()[:12]


def _scalar(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(x)


def format_array(array: np.ndarray) -> str:
    tag = f"{_DTYPE_TAG.get(array.dtype.kind, array.dtype.kind)}{array.dtype.itemsize * 8}"
    shape = ",".join(str(d) for d in array.shape)
    if array.ndim == 0:
        return _scalar(array.item())
    flat = array.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return f"full[{shape}]({_scalar(flat[0])})"
    if flat.size <= 8:
        body = ", ".join(_scalar(v) for v in flat)
        return f"{tag}[{shape}]{{{body}}}"
    return (
        f"{tag}[{shape}](min={float(flat.min()):.6g}, max={float(flat.max()):.6g}, "
        f"nonzero={int(np.count_nonzero(flat))}, sha={array_digest(array)})"
    )


def format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(_scalar(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return _scalar(value)


def dump(graph: Graph) -> str:
    """The text form of `graph`: header, one line per node in evaluation order, one line per edge."""
    try:
        order = graph.order()
    except GraphError:
        order = list(graph)
    try:
        shapes = graph.shapes()
    except GraphError:
        shapes = {}
    width = max((len(n) for n in order), default=1)
    header = f"graph {graph.name!r} dt={_scalar(graph.dt) if graph.dt is not None else 'none'}"
    if graph.latency:
        header += f" latency={graph.latency}"
    lines = [FORMAT_LINE, header]
    for name in order:
        op = graph.node(name)
        parts = [f"node {name:<{width}} {op.kind}"]
        if name in shapes:
            parts.append(f"-> {format_value(shapes[name])}")
        for key, value in op.scalar_params().items():
            parts.append(f"{key}={format_value(value)}")
        for key, array in op.array_params().items():
            parts.append(f"{key}={format_array(array)}")
        if op.provenance is not None:
            parts.append(f"# {op.provenance}")
        lines.append(" ".join(parts))
    for edge in graph.edges:
        lines.append(f"edge {edge}")
    return "\n".join(lines) + "\n"
