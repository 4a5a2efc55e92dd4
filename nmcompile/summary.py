"""Human-readable summaries of a graph: the per-layer table of `nmcompile inspect`."""

from __future__ import annotations

import numpy as np

from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph


def synapse_count(op: O.Op, in_shape, out_shape) -> int:
    """Connections a projection makes (non-zero weights for dense layers, fan-in x outputs for conv/pool)."""
    out_size = int(np.prod(out_shape))
    if isinstance(op, (O.Linear, O.QLinear)):
        return int(np.count_nonzero(op.weight))
    if isinstance(op, (O.SparseLinear, O.QSparseLinear)):
        return int(np.count_nonzero(op.values))
    if isinstance(op, (O.Conv1d, O.Conv2d, O.QConv)):
        return out_size * int(np.prod(op.weight.shape[1:]))
    if isinstance(op, (O.SumPool1d, O.SumPool2d, O.AvgPool1d, O.AvgPool2d)):
        return out_size * int(np.prod(op.kernel_size))
    if isinstance(op, O.Scale):
        return out_size
    return 0


def layer_rows(graph: Graph) -> list[dict[str, object]]:
    shapes = graph.shapes()
    rows = []
    for name in graph.order():
        op = graph.node(name)
        preds = graph.in_edges(name)
        in_shape = shapes[preds[0].src] if preds else None
        neurons = op.size if op.role == "neuron" else 0
        rows.append({
            "layer": name,
            "op": op.kind,
            "shape": "x".join(str(d) for d in shapes[name]),
            "neurons": neurons,
            "synapses": synapse_count(op, in_shape, shapes[name]),
            "parameters": sum(int(a.size) for a in op.array_params().values()),
        })
    return rows


def layer_table(graph: Graph) -> str:
    rows = layer_rows(graph)
    headers = ["layer", "op", "shape", "neurons", "synapses", "parameters"]
    cells = [[str(r[h]) if r[h] != 0 or h in ("layer", "op", "shape") else "-" for h in headers] for r in rows]
    totals = ["total", "", "", *(str(sum(int(r[h]) for r in rows)) for h in headers[3:])]
    widths = [max(len(h), *(len(c[i]) for c in [*cells, totals])) for i, h in enumerate(headers)]
    right = {3, 4, 5}

    def fmt(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                   strict=True)))

    lines = [fmt(headers), fmt(["-" * w for w in widths])]
    lines += [fmt(c) for c in cells]
    lines += [fmt(["-" * w for w in widths]), fmt(totals)]
    edges = sum(1 for e in graph.edges if e.recurrent)
    lines.append(f"{len(rows)} nodes, {len(graph.edges)} edges ({edges} recurrent), "
                 f"{'integer' if graph.is_integer else 'float'} graph")
    return "\n".join(line.rstrip() for line in lines)
