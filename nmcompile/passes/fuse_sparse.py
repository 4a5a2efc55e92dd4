"""Pool chains without a convolution form, stored as one sparse (CSR) projection (part of fuse_projections).

Between two neuron layers, a chain of Conv, SumPool, Scale, Flatten and Linear is one affine map y = M x + c.
Three pooling variants have no exact convolution form, so the chain is materialised as M (a SparseLinear,
CSR rows) and c (a bias projection from a Constant(1) source, as `retime` builds for every bias):

    a padded pool, or a ceil_mode pool with a partial window, on a conv's currents (its zero border is no conv output)
    a per-position divisor (count_include_pad=False, ceil_mode's partial windows) not followed by a Linear
    a padded pool (or one with overlapping windows) into a padded conv

M's column i is the chain's linear part applied to the unit vector e_i (no biases); c is the chain applied to 0.
The layer after the chain becomes flat (per-position parameters in C order); a consumer that is not a Flatten
reads it through a Reshape to the layer's old shape (a conv gets its map back). A matrix of more than
MAX_SPARSE_NONZEROS entries is refused.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import arraymath
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.passes.common import unique_name

MAX_SPARSE_NONZEROS = 50_000_000   # 50M synapses: ~600 MB of CSR in float64 + int32 indices before quantization
_COLUMN_CHUNK = 256                # unit vectors evaluated per batch
CHAIN_KINDS = ("Conv1d", "Conv2d", "SumPool1d", "SumPool2d", "Scale", "Flatten", "Reshape", "Linear")


def materialise(g: Graph, notes: list[str]) -> None:
    """Replace every chain that needs it (see the module docstring) by Flatten -> SparseLinear (+ bias source)."""
    for name in list(g.order()):
        if name not in g or g.node(name).kind not in ("SumPool1d", "SumPool2d", "Scale"):
            continue
        reason = _no_conv_form(g, name)
        if reason is None:
            continue
        src, chain, dst = _chain_around(g, name, reason)
        _replace(g, src, chain, dst, reason, notes)


def _no_conv_form(g: Graph, name: str) -> str | None:
    """Why the chain through pool/scale `name` has no convolution form, or None when it has one."""
    shapes = g.shapes()
    op = g.node(name)
    ins, outs = g.in_edges(name), g.out_edges(name)
    if len(ins) != 1 or len(outs) != 1:
        return None
    before = g.node(ins[0].src)
    if op.kind == "Scale":
        if np.ptp(op.scale) == 0 or op.provenance is None:
            return None
        nxt = _next_weighted(g, name)
        if nxt is not None and g.node(nxt).kind == "Linear":
            return None
        return f"'{name}' (from {op.provenance}) divides each pooling window by its own size"
    in_shape = shapes[ins[0].src]
    padded = any(op.padding) or op.partial_windows(in_shape)
    if before.kind == f"Conv{op.ndim}d" and padded:
        return f"{_pool(name, op)} pools the currents of conv '{ins[0].src}' with a zero border"
    nxt = _next_weighted(g, name)
    conv = g.node(nxt) if nxt is not None else None
    if conv is None or conv.kind != f"Conv{op.ndim}d" or not any(np.atleast_1d(conv.padding)):
        return None
    uneven = any(k > s or n % s for k, s, n in zip(op.kernel_size, op.stride, in_shape[1:], strict=True))
    if padded or uneven:
        return f"{_pool(name, op)} feeds the padded conv '{nxt}'"
    return None


def _pool(name: str, op) -> str:
    source = f" (from {op.provenance})" if op.provenance is not None else ""
    return (f"pool '{name}'{source} with kernel {op.kernel_size}, stride {op.stride}, padding {op.padding}"
            f"{', ceil_mode=True' if op.ceil_mode else ''}")


def _next_weighted(g: Graph, name: str) -> str | None:
    """The first weighted op after `name` along single edges through pools, scales and flattens."""
    node = name
    while True:
        outs = g.out_edges(node)
        if len(outs) != 1:
            return None
        node = outs[0].dst
        op = g.node(node)
        if op.weighted:
            return node
        if op.kind not in CHAIN_KINDS:
            return None


def _chain_around(g: Graph, name: str, reason: str) -> tuple[str, list[str], str]:
    """(source layer, chain nodes in order, destination neuron layer) of the single path through `name`."""
    def refuse(why: str) -> UnsupportedError:
        return UnsupportedError(f"{reason}: no convolution form, and it cannot be stored as a sparse matrix: {why}")

    chain = [name]
    while True:
        ins = g.in_edges(chain[0])
        if len(ins) != 1:
            raise refuse(f"'{chain[0]}' sums {len(ins)} inputs")
        src = ins[0].src
        if g.node(src).kind not in CHAIN_KINDS:
            break
        if len(g.out_edges(src)) != 1 or ins[0].recurrent:
            raise refuse(f"'{src}' feeds several nodes")
        chain.insert(0, src)
    while True:
        outs = g.out_edges(chain[-1])
        if len(outs) != 1 or outs[0].recurrent:
            raise refuse(f"'{chain[-1]}' must feed exactly one node")
        dst = outs[0].dst
        if g.node(dst).kind not in CHAIN_KINDS:
            break
        if len(g.in_edges(dst)) != 1:
            raise refuse(f"'{dst}' sums several inputs")
        chain.append(dst)
    if g.node(dst).role != "neuron" or len(g.in_edges(dst)) != 1:
        raise refuse(f"it must feed one neuron layer alone, not '{dst}' ({g.node(dst).kind})")
    if not any(g.node(n).weighted for n in chain) and g.node(src).role == "neuron":
        raise refuse("the chain holds no Linear/Conv")
    for n in chain:
        op = g.node(n)
        if op.kind == "Linear" and op.delays is not None and op.delays.any():
            raise refuse(f"Linear '{n}' has per-synapse delays")
    return src, chain, dst


def _apply(op, x: np.ndarray, in_shape, with_bias: bool) -> np.ndarray:
    """op on a batch x [N, *in_shape] (float64)."""
    kind = op.kind
    if kind in ("Conv1d", "Conv2d"):
        nd = op.weight.ndim - 2
        tup = lambda v: tuple(np.broadcast_to(v, (nd,)).tolist())  # noqa: E731
        y = arraymath.conv(x, op.weight, tup(op.stride), tup(op.padding), tup(op.dilation), op.groups)
        if with_bias and op.bias is not None:
            y = y + op.bias.reshape((1, -1) + (1,) * nd)
        return y
    if kind in ("SumPool1d", "SumPool2d"):
        return arraymath.sum_pool(x, op.kernel_size, op.stride, op.pads(in_shape))
    if kind == "Scale":
        return x * np.broadcast_to(op.scale, in_shape)[None]
    if kind in ("Flatten", "Reshape"):
        return x.reshape((x.shape[0], *op.out_shape(in_shape)))
    y = x @ op.weight.T
    return y + op.bias if with_bias and op.bias is not None else y


def _run(ops: list, shapes: list, x: np.ndarray, with_bias: bool) -> np.ndarray:
    for op, shape in zip(ops, shapes, strict=True):
        x = _apply(op, x, shape, with_bias)
    return x.reshape(x.shape[0], -1)


def composed_map(ops: list, shapes: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, values, bias) of the chain `ops` whose inputs have `shapes` (first: the chain's input)."""
    n_in = int(np.prod(shapes[0]))
    rows, cols, vals = [], [], []
    total = 0
    for start in range(0, n_in, _COLUMN_CHUNK):
        stop = min(n_in, start + _COLUMN_CHUNK)
        basis = np.zeros((stop - start, n_in))
        basis[np.arange(stop - start), np.arange(start, stop)] = 1.0
        out = _run(ops, shapes, basis.reshape(stop - start, *shapes[0]), with_bias=False)
        col, row = np.nonzero(out)
        total += row.size
        if total > MAX_SPARSE_NONZEROS:
            return None
        rows.append(row)
        cols.append(col + start)
        vals.append(out[col, row])
    bias = _run(ops, shapes, np.zeros((1, *shapes[0])), with_bias=True)[0]
    row, col, val = (np.concatenate(a) for a in (rows, cols, vals))
    order = np.lexsort((col, row))
    indptr = np.zeros(bias.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=bias.size), out=indptr[1:])
    return indptr, col[order].astype(np.int32), val[order], bias


def _replace(g: Graph, src: str, chain: list[str], dst: str, reason: str, notes: list[str]) -> None:
    shapes = g.shapes()
    ops = [g.node(n) for n in chain]
    in_shapes = [shapes[src]] + [shapes[n] for n in chain[:-1]]
    composed = composed_map(ops, in_shapes)
    if composed is None:
        raise UnsupportedError(f"{reason}: no convolution form, and its sparse matrix would exceed "
                               f"{MAX_SPARSE_NONZEROS} non-zeros")
    indptr, indices, values, bias = composed
    recurrent = g.in_edges(chain[0])[0].recurrent
    last_weighted = next((op for op in reversed(ops) if op.weighted), ops[-1])
    for n in chain:
        g.remove_node(n)
    head = src
    if len(shapes[src]) > 1:
        head = g.add(unique_name(g, f"{chain[0]}.flatten"), O.Flatten())
        g.connect(src, head, recurrent)
        recurrent = False
    sparse = g.add(unique_name(g, f"{chain[-1]}.sparse"),
                   O.SparseLinear(indptr=indptr, indices=indices, values=values, in_features=int(np.prod(shapes[src])),
                                  provenance=last_weighted.provenance))
    g.connect(head, sparse, recurrent)
    g.connect(sparse, dst)
    if np.any(bias != 0):
        source = g.add(unique_name(g, f"{sparse}.bias_source"), O.Constant(shape=(1,)))
        proj = g.add(unique_name(g, f"{sparse}.bias"), O.Linear(weight=bias.reshape(-1, 1)))
        g.connect(source, proj)
        g.connect(proj, dst)
    if len(shapes[dst]) > 1:
        _make_flat(g, dst, shapes)
    notes.append(f"{', '.join(chain)}: {reason}; '{sparse}' into '{dst}' (now flat) stored as a sparse matrix of "
                 f"{values.size} non-zeros: no convolution form")


def _make_flat(g: Graph, layer: str, shapes: dict[str, tuple[int, ...]]) -> None:
    """Make `layer` flat. A Flatten after it to a vector flattens nothing more; every other consumer reads it
    through a Reshape to the shape it read before (a partial Flatten becomes that Reshape)."""
    g.replace_node(layer, _flat_layer(g.node(layer)))
    for edge in g.out_edges(layer):
        consumer = g.node(edge.dst)
        if consumer.kind == "Flatten":
            flat = len(shapes[edge.dst]) == 1
            g.replace_node(edge.dst, O.Flatten(provenance=consumer.provenance) if flat else
                           O.Reshape(shape=shapes[edge.dst], provenance=consumer.provenance))
            continue
        reshape = g.add(unique_name(g, f"{layer}.reshape"), O.Reshape(shape=shapes[layer]))
        g.remove_edge(edge)
        g.connect(layer, reshape, edge.recurrent)
        g.connect(reshape, edge.dst)


def _flat_layer(op):
    """The neuron layer `op` on (prod(shape),): per-position parameters flattened in C order."""
    shape = op.shape
    changes = {"shape": (int(np.prod(shape)),)}
    for field in dataclasses.fields(op):
        value = getattr(op, field.name)
        if field.name != "shape" and isinstance(value, np.ndarray) and value.ndim > 0:
            changes[field.name] = np.broadcast_to(value, shape).reshape(-1)
    return op.replace(**changes)
