"""fuse_projections: exactly one weighted projection (Linear/Conv) between consecutive neuron layers.

Hardware connects neuron layers through one synapse stage, so the float graph is rewritten (exactly, in real
arithmetic) until every path from a neuron layer or input to the next neuron layer holds one Linear/Conv,
possibly with Flatten, Reshape and Delay around it:

    AvgPoolNd(k)        -> SumPoolNd(k) then Scale(1 / prod(k))          (N = 1, 2 throughout)
    Scale(1) joining several inputs -> removed (a node's input is the sum of its in-edges anyway)
    SumPoolNd after a conv (pooling currents) -> folded into that conv: stride s*pool stride, kernel
                           (kp-1)*s + (k-1)*d + 1 (the pool's taps summed), bias * prod(kp)
    no weighted op on a path        -> an identity projection before the neuron (Linear(I), depthwise 1x1 conv)
    Scale next to a projection      -> folded into its input columns or output rows
    SumPoolNd before a projection   -> fused: a conv with a stride x pool-stride kernel, or W @ P for a Linear
                           (W @ P also takes padding with per-position divisors and ceil_mode's partial windows)
    Linear -> Linear                -> one Linear (W2 W1, W2 b1 + b2)
    no convolution form (a padded/partial pool on a conv's currents, a per-position divisor not before a Linear,
    a padded pool into a padded conv) -> the chain's matrix as a SparseLinear (CSR), its bias from a Constant
                           source (fuse_sparse.py)

Outputs must be fed by neuron layers (hardware emits spikes, not currents).
"""

from __future__ import annotations

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Edge, Graph
from nmcompile.passes import PassContext, fuse_sparse
from nmcompile.passes.common import per_channel, scale_rows, unique_name


def _passes_through(op: O.Op) -> bool:
    """Transparent (Flatten, Reshape, Delay) or fused away by this pass (pools, scales): no weights of its own."""
    return op.transparent or op.removed_by == "fuse_projections"


def run(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.copy()
    notes: list[str] = []
    _avgpool_to_sumpool(g, notes)
    _remove_unit_junctions(g, notes)
    fuse_sparse.materialise(g, notes)
    _fold_pools_into_preceding(g, notes)
    _insert_identities(g, notes)
    _fold_scales(g, notes)
    _fuse_pools(g, notes)
    _compose_linears(g, notes)
    _check(g)
    ctx.reports["fuse_projections"] = _Report(notes)
    return g


# -- helpers ------------------------------------------------------------------------------------------------
def _only_out(g: Graph, name: str) -> Edge | None:
    out = g.out_edges(name)
    return out[0] if len(out) == 1 else None


def _only_in(g: Graph, name: str) -> Edge | None:
    ins = g.in_edges(name)
    return ins[0] if len(ins) == 1 else None


def _insert_after(g: Graph, name: str, new: str, op: O.Op) -> str:
    """Put `op` between `name` and all of its consumers."""
    new = unique_name(g, new)
    g.add(new, op)
    for e in g.out_edges(name):
        g.remove_edge(e)
        g.connect(new, e.dst, e.recurrent)
    g.connect(name, new)
    return new


def _insert_on_edge(g: Graph, edge: Edge, new: str, op: O.Op) -> str:
    new = unique_name(g, new)
    g.add(new, op)
    g.remove_edge(edge)
    g.connect(edge.src, new, edge.recurrent)
    g.connect(new, edge.dst)
    return new


def _identity(shape: tuple[int, ...]) -> O.Op:
    if len(shape) == 1:
        return O.Linear(weight=np.eye(shape[0]))
    if len(shape) == 2:
        return O.Conv1d(weight=np.ones((shape[0], 1, 1)), groups=shape[0])
    if len(shape) == 3:
        return O.Conv2d(weight=np.ones((shape[0], 1, 1, 1)), groups=shape[0])
    raise UnsupportedError(f"no identity projection for a {len(shape)}-D layer of shape {shape}")


# -- steps ----------------------------------------------------------------------------------------------------
def _avgpool_to_sumpool(g: Graph, notes: list[str]) -> None:
    for name in g.of_kind("AvgPool1d", "AvgPool2d"):
        op = g.node(name)
        cls = O.SumPool2d if op.ndim == 2 else O.SumPool1d
        g.replace_node(name, cls(kernel_size=op.kernel_size, stride=op.stride, padding=op.padding,
                                 provenance=op.provenance))
        _insert_after(g, name, f"{name}.scale", O.Scale(scale=1.0 / np.prod(op.kernel_size)))
        notes.append(f"{name}: average pool -> sum pool and scale")


def _remove_unit_junctions(g: Graph, notes: list[str]) -> None:
    for name in g.of_kind("Scale"):
        op = g.node(name)
        if len(g.in_edges(name)) < 2:
            continue
        if not np.all(op.scale == 1.0):
            raise UnsupportedError(f"Scale '{name}' multiplies a sum of {len(g.in_edges(name))} inputs; scale the "
                                   "inputs separately")
        for e_in in g.in_edges(name):
            for e_out in g.out_edges(name):
                if e_in.recurrent and e_out.recurrent:
                    raise UnsupportedError(f"two recurrent edges meet at '{name}'")
                g.connect(e_in.src, e_out.dst, e_in.recurrent or e_out.recurrent)
        g.remove_node(name)
        notes.append(f"{name}: summing junction removed")


def _describe(g: Graph, name: str) -> str:
    """A pool named with the module it comes from and every option that shapes its windows."""
    pool = g.node(name)
    source = f" (from {pool.provenance})" if pool.provenance is not None else ""
    return (f"pool '{name}'{source} with kernel {pool.kernel_size}, stride {pool.stride}, padding {pool.padding}"
            f"{', ceil_mode=True' if pool.ceil_mode else ''}")


def _conv_geometry(conv: O.Conv1d | O.Conv2d) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(stride, padding, dilation) as one value per spatial axis."""
    if conv.kind == "Conv1d":
        return (conv.stride,), (conv.padding,), (conv.dilation,)
    return conv.stride, conv.padding, conv.dilation


def _conv(like: O.Conv1d | O.Conv2d, weight: np.ndarray, bias, stride, padding, dilation) -> O.Conv1d | O.Conv2d:
    """A conv of the same kind and groups as `like` with the given geometry (tuples, one value per axis)."""
    if like.kind == "Conv1d":
        return O.Conv1d(weight=weight, bias=bias, stride=stride[0], padding=padding[0], dilation=dilation[0],
                        groups=like.groups, provenance=like.provenance)
    return O.Conv2d(weight=weight, bias=bias, stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation),
                    groups=like.groups, provenance=like.provenance)


def _fold_pools_into_preceding(g: Graph, notes: list[str]) -> None:
    """ConvNd -> SumPoolNd (the conv's only consumer): one conv whose kernel sums the pool's taps, strided."""
    shapes = g.shapes()
    for name in list(g.of_kind("SumPool1d", "SumPool2d")):
        edge_in = _only_in(g, name)
        if edge_in is None or edge_in.recurrent:
            continue
        conv = g.node(edge_in.src)
        pool = g.node(name)
        if conv.kind != f"Conv{pool.ndim}d" or len(g.out_edges(edge_in.src)) != 1:
            continue
        if any(pool.padding) or pool.partial_windows(shapes[edge_in.src]):
            raise UnsupportedError(
                f"{_describe(g, name)} pools the currents of conv '{edge_in.src}': its zero border and partial "
                "windows hold no conv outputs (a per-position bias and kernel), so no target takes it folded into the "
                "conv exactly; use padding=0 and ceil_mode=False, or move the pool after the neuron")
        g.replace_node(edge_in.src, _conv_then_pool(conv, pool))
        _remove(g, name)
        folded = g.node(edge_in.src)
        notes.append(f"{name}: sum pool over the currents of '{edge_in.src}' folded into it (kernel "
                     f"{folded.weight.shape[2:]}, stride {folded.stride})")


def _conv_then_pool(conv: O.Conv1d | O.Conv2d, pool: O.SumPool1d | O.SumPool2d) -> O.Conv1d | O.Conv2d:
    """sumpool(conv(x)) = conv'(x): stride s*sp, same padding, dilation 1, taps a*s + i*d summed."""
    s, p, d = _conv_geometry(conv)
    k = conv.weight.shape[2:]
    kernel = tuple((kp - 1) * s[axis] + (k[axis] - 1) * d[axis] + 1 for axis, kp in enumerate(pool.kernel_size))
    weight = np.zeros(conv.weight.shape[:2] + kernel)
    for tap in np.ndindex(*pool.kernel_size):
        window = tuple(slice(a * s[axis], a * s[axis] + d[axis] * (k[axis] - 1) + 1, d[axis])
                       for axis, a in enumerate(tap))
        weight[(slice(None), slice(None), *window)] += conv.weight
    taps = int(np.prod(pool.kernel_size))
    return _conv(conv, weight, None if conv.bias is None else conv.bias * taps,
                 tuple(a * b for a, b in zip(s, pool.stride, strict=True)), p, (1,) * len(s))


def _path_has_weights(g: Graph, edge: Edge) -> bool:
    """Whether walking back from `edge` through transparent single-input nodes reaches a weighted op."""
    node = edge.src
    seen = set()
    while node not in seen:
        seen.add(node)
        op = g.node(node)
        if op.weighted:
            return True
        if not _passes_through(op):
            return False
        ins = g.in_edges(node)
        if len(ins) != 1:
            return False
        node = ins[0].src
    return False


def _insert_identities(g: Graph, notes: list[str]) -> None:
    shapes = g.shapes()
    for name in list(g.order()):
        if g.node(name).role != "neuron":
            continue
        for edge in g.in_edges(name):
            if not _path_has_weights(g, edge):
                ident = _insert_on_edge(g, edge, f"{name}.synapse", _identity(shapes[edge.src]))
                notes.append(f"{ident}: identity projection into '{name}'")


def _fold_scales(g: Graph, notes: list[str]) -> None:
    for name in list(g.of_kind("Scale")):
        op = g.node(name)
        edge_in = _only_in(g, name)
        if edge_in is None:
            continue
        if _fold_scale_down(g, name, op, notes) or _fold_scale_up(g, name, op, edge_in, notes):
            continue
        if op.provenance is not None and np.ptp(op.scale) > 0:
            raise UnsupportedError(f"'{name}' (from {op.provenance}) divides each pooling window by its own size "
                                   "(count_include_pad=False at a padded border, or ceil_mode's partial windows); "
                                   "such per-position divisors fold exactly only into a following Flatten + Linear, "
                                   "not into a conv's shared kernel (on no target): use count_include_pad=True and "
                                   "ceil_mode=False")
        raise UnsupportedError(f"Scale '{name}' has no Linear/Conv next to it to fold into")


def _fold_scale_down(g: Graph, name: str, op: O.Scale, notes: list[str]) -> bool:
    """Scale -> [Flatten|Reshape|Delay]* -> weighted op (its only input): multiply the op's input columns."""
    shapes = g.shapes()
    try:
        trace = g.trace_forward(name)
    except UnsupportedError:
        return False
    target = trace.end
    nxt = g.node(target)
    if trace.recurrent_steps or not nxt.weighted or any(len(g.in_edges(n)) != 1 for n in (*trace.passed, target)):
        return False
    in_shape = shapes[g.in_edges(target)[0].src]    # the scale laid out as the op reads it (C order)
    scale = np.broadcast_to(op.scale, shapes[name]).reshape(in_shape)
    if nxt.kind == "Linear":
        columns = scale.reshape(-1)
        new = nxt.replace(weight=nxt.weight * columns[None, :])
    else:
        try:
            per_in = per_channel(scale, in_shape[0])
        except ValueError:
            return False
        cin_g = nxt.weight.shape[1]
        cout_g = nxt.weight.shape[0] // nxt.groups
        factor = np.stack([per_in[(o // cout_g) * cin_g:(o // cout_g + 1) * cin_g]
                           for o in range(nxt.weight.shape[0])])
        new = nxt.replace(weight=nxt.weight * factor.reshape(factor.shape + (1,) * (nxt.weight.ndim - 2)))
    g.replace_node(target, new)
    _remove(g, name)
    notes.append(f"{name}: scale folded into the inputs of '{target}'")
    return True


def _fold_scale_up(g: Graph, name: str, op: O.Scale, edge_in: Edge, notes: list[str]) -> bool:
    """weighted op -> Scale (its only consumer): multiply the op's output rows."""
    src = g.node(edge_in.src)
    if edge_in.recurrent or not src.weighted or len(g.out_edges(edge_in.src)) != 1:
        return False
    out_shape = g.shapes()[edge_in.src]
    scale = np.broadcast_to(op.scale, out_shape)
    try:
        factor = scale.reshape(-1) if src.kind == "Linear" else per_channel(scale, out_shape[0])
    except ValueError:
        return False
    g.replace_node(edge_in.src, scale_rows(src, factor))
    _remove(g, name)
    notes.append(f"{name}: scale folded into the outputs of '{edge_in.src}'")
    return True


def _remove(g: Graph, name: str) -> None:
    edge_in = g.in_edges(name)[0]
    for e in g.out_edges(name):
        g.connect(edge_in.src, e.dst, edge_in.recurrent or e.recurrent)
    g.remove_node(name)


def _fuse_pools(g: Graph, notes: list[str]) -> None:
    for name in list(g.of_kind("SumPool1d", "SumPool2d")):
        pool = g.node(name)
        edge_in = _only_in(g, name)
        in_shape = g.shapes()[edge_in.src]
        out = _only_out(g, name)
        if out is None or out.recurrent or len(g.in_edges(out.dst)) != 1:
            raise UnsupportedError(f"{_describe(g, name)} must feed exactly one Linear/Conv to be fused into it")
        consumer = g.node(out.dst)
        if consumer.kind == f"Conv{pool.ndim}d":
            g.replace_node(out.dst, _pool_into_conv(g, name, consumer, in_shape, out.dst))
            _remove(g, name)
        elif consumer.kind == "Flatten":
            after = _only_out(g, out.dst)
            linear = g.node(after.dst) if after is not None else None
            if linear is None or linear.kind != "Linear" or len(g.in_edges(after.dst)) != 1:
                raise UnsupportedError(f"{_describe(g, name)} -> flatten '{out.dst}' must feed one Linear to be "
                                       "fused")
            g.replace_node(after.dst, _pool_into_linear(pool, linear, in_shape, name, after.dst))
            g.replace_node(out.dst, O.Flatten(provenance=consumer.provenance))
            _remove(g, name)
        else:
            raise UnsupportedError(f"{_describe(g, name)} feeds '{out.dst}' ({consumer.kind}); it can only be fused "
                                   f"into a following Conv{pool.ndim}d or Flatten + Linear")
        notes.append(f"{name}: sum pool fused into '{out.dst if consumer.kind != 'Flatten' else after.dst}'")


def _pool_into_conv(g: Graph, pool_name: str, conv: O.Conv1d | O.Conv2d, in_shape,
                    conv_name: str) -> O.Conv1d | O.Conv2d:
    """conv(sumpool(x)) as one conv on x: stride s*sp, padding p*sp + pool padding, kernel (k-1)*d*sp + kp.

    ceil_mode's e extra zeros at the end of an axis: the padding grows by e on both ends and the kernel gets e
    leading zero taps, so every window starts where it did and the output keeps its length.
    """
    pool = g.node(pool_name)
    s, p, d = _conv_geometry(conv)
    k = conv.weight.shape[2:]
    if (any(pool.padding) or pool.partial_windows(in_shape)) and any(p):
        raise UnsupportedError(f"{_describe(g, pool_name)} cannot be fused into the padded conv '{conv_name}' "
                               "exactly on any target (the conv's zero border would read inputs through the pool's "
                               "padding); a padded pool fuses into a conv without padding, or a Flatten + Linear")
    kernel, stride, padding, dilation, lead = [], [], [], [], []
    for axis, (begin, end) in enumerate(pool.pads(in_shape)):
        kp, sp = pool.kernel_size[axis], pool.stride[axis]
        pooled = (in_shape[1 + axis] - kp) // sp + 1
        if p[axis] and (kp > sp or pooled * sp != in_shape[1 + axis]):
            raise UnsupportedError(f"{_describe(g, pool_name)} cannot be fused into the padded conv '{conv_name}' "
                                   f"exactly: its input ({in_shape[1 + axis]}) is not a multiple of the pool stride "
                                   f"{sp} or the windows overlap")
        lead.append(end - begin)
        kernel.append((k[axis] - 1) * d[axis] * sp + kp + lead[-1])
        stride.append(s[axis] * sp)
        padding.append(p[axis] * sp + end)
        dilation.append(d[axis] * sp)
    weight = np.zeros(conv.weight.shape[:2] + tuple(kernel))
    for tap in np.ndindex(*pool.kernel_size):
        window = tuple(slice(e + a, e + a + dilation[axis] * (k[axis] - 1) + 1, dilation[axis])
                       for axis, (a, e) in enumerate(zip(tap, lead, strict=True)))
        weight[(slice(None), slice(None), *window)] += conv.weight
    return _conv(conv, weight, conv.bias, stride, padding, (1,) * pool.ndim)


def _pool_into_linear(pool: O.SumPool1d | O.SumPool2d, linear: O.Linear, in_shape, pool_name: str,
                      lin_name: str) -> O.Linear:
    """W @ P: each pooled input column is spread over the pixels of its window (any padding, partial windows)."""
    if linear.delays is not None and linear.delays.any():
        raise UnsupportedError(f"'{lin_name}' has per-synapse delays; pool '{pool_name}' cannot be fused into it")
    pads = pool.pads(in_shape)
    pooled = pool.out_shape(in_shape)
    wl = linear.weight.reshape(-1, *pooled)
    padded = np.zeros((wl.shape[0], in_shape[0], *(n + b + e for n, (b, e) in zip(in_shape[1:], pads, strict=True))))
    for tap in np.ndindex(*pool.kernel_size):
        window = tuple(slice(a, a + st * (o - 1) + 1, st)
                       for a, st, o in zip(tap, pool.stride, pooled[1:], strict=True))
        padded[(slice(None), slice(None), *window)] += wl
    inside = tuple(slice(b, b + n) for n, (b, _) in zip(in_shape[1:], pads, strict=True))
    weight = padded[(slice(None), slice(None), *inside)]
    return linear.replace(weight=weight.reshape(wl.shape[0], -1))


def _compose_linears(g: Graph, notes: list[str]) -> None:
    for name in list(g.of_kind("Linear")):
        if name not in g:
            continue
        first = g.node(name)
        out = _only_out(g, name)
        if out is None or out.recurrent or len(g.in_edges(out.dst)) != 1 or g.node(out.dst).kind != "Linear":
            continue
        second = g.node(out.dst)
        if any(op.delays is not None and op.delays.any() for op in (first, second)):
            raise UnsupportedError(f"Linear '{name}' feeds Linear '{out.dst}' directly and one has per-synapse delays; "
                                   "put a neuron layer between them")
        b1 = np.zeros(first.weight.shape[0]) if first.bias is None else first.bias
        b2 = np.zeros(second.weight.shape[0]) if second.bias is None else second.bias
        g.replace_node(out.dst, second.replace(weight=second.weight @ first.weight, bias=second.weight @ b1 + b2))
        edge_in = g.in_edges(name)
        for e in edge_in:
            g.connect(e.src, out.dst, e.recurrent)
        g.remove_node(name)
        notes.append(f"{name} and {out.dst}: consecutive Linear layers composed")


def _check(g: Graph) -> None:
    for name in g.order():
        op = g.node(name)
        if op.removed_by == "fuse_projections":
            raise UnsupportedError(f"'{name}' ({op.kind}) could not be fused into a projection")
        if op.role == "neuron" or op.kind == "Output":
            for edge in g.in_edges(name):
                count = _weights_on_path(g, edge)
                if op.kind == "Output" and count:
                    raise UnsupportedError(f"output '{name}' is fed by the projection path through '{edge.src}' "
                                           "(currents); hardware emits spikes: end the network with a neuron layer")
                if op.role == "neuron" and count != 1:
                    raise UnsupportedError(f"'{name}' receives {count} weighted projections in a row through "
                                           f"'{edge.src}'; hardware needs a neuron layer between projections")


def _weights_on_path(g: Graph, edge: Edge) -> int:
    count, node = 0, edge.src
    while True:
        op = g.node(node)
        if op.role == "neuron" or op.kind in ("Input", "Constant"):
            return count
        if op.weighted:
            count += 1
        ins = g.in_edges(node)
        if len(ins) != 1:
            if op.weighted and count == 1:
                return count  # a projection summing several sources
            raise UnsupportedError(f"'{node}' ({op.kind}) sums {len(ins)} inputs between neuron layers")
        node = ins[0].src


class _Report:
    def __init__(self, notes: list[str]):
        self.notes = notes

    def lines(self) -> list[str]:
        return self.notes or ["every path already had one projection"]
