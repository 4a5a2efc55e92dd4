"""fuse_projections: exactly one weighted projection (Linear/Conv) between consecutive neuron layers.

Hardware connects neuron layers through one synapse stage, so the float graph is rewritten (exactly, in real
arithmetic) until every path from a neuron layer or input to the next neuron layer holds one Linear/Conv,
possibly with Flatten and Delay around it:

    AvgPool2d(k)        -> SumPool2d(k) then Scale(1 / kH kW)
    Scale(1) joining several inputs -> removed (a node's input is the sum of its in-edges anyway)
    SumPool2d after a conv (pooling currents) -> folded into that conv: stride s*pool stride, kernel
                           (kp-1)*s + (k-1)*d + 1 (the pool's taps summed), bias * kH kW
    no weighted op on a path        -> an identity projection before the neuron (Linear(I), depthwise 1x1 conv)
    Scale next to a projection      -> folded into its input columns or output rows
    SumPool2d before a projection   -> fused: a conv with a stride x pool-stride kernel, or W @ P for a Linear
    Linear -> Linear                -> one Linear (W2 W1, W2 b1 + b2)

Outputs must be fed by neuron layers (hardware emits spikes, not currents).
"""

from __future__ import annotations

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Edge, Graph
from nmcompile.passes import PassContext
from nmcompile.passes.common import per_channel, scale_rows, unique_name


def _passes_through(op: O.Op) -> bool:
    """Transparent (Flatten, Delay) or fused away by this pass (pools, scales): no weights of its own."""
    return op.transparent or op.removed_by == "fuse_projections"


def run(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.copy()
    notes: list[str] = []
    _avgpool_to_sumpool(g, notes)
    _remove_unit_junctions(g, notes)
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
    for name in g.of_kind("AvgPool2d"):
        op = g.node(name)
        g.replace_node(name, O.SumPool2d(kernel_size=op.kernel_size, stride=op.stride, padding=op.padding,
                                         provenance=op.provenance))
        _insert_after(g, name, f"{name}.scale", O.Scale(scale=1.0 / (op.kernel_size[0] * op.kernel_size[1])))
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


def _fold_pools_into_preceding(g: Graph, notes: list[str]) -> None:
    """Conv2d -> SumPool2d (the conv's only consumer): one conv whose kernel sums the pool's taps, strided."""
    for name in list(g.of_kind("SumPool2d")):
        edge_in = _only_in(g, name)
        if edge_in is None or edge_in.recurrent:
            continue
        conv = g.node(edge_in.src)
        if conv.kind != "Conv2d" or len(g.out_edges(edge_in.src)) != 1:
            continue
        pool = g.node(name)
        if any(pool.padding):
            raise UnsupportedError(
                f"pool '{name}' has padding {pool.padding} and pools the currents of conv '{edge_in.src}': its zero "
                "border is not an output of the conv (a per-position bias), so it cannot be folded exactly; use "
                "padding=0, or move the pool after the neuron")
        g.replace_node(edge_in.src, _conv_then_pool(conv, pool))
        _remove(g, name)
        notes.append(f"{name}: sum pool over the currents of '{edge_in.src}' folded into it (kernel "
                     f"{g.node(edge_in.src).weight.shape[2:]}, stride {g.node(edge_in.src).stride})")


def _conv_then_pool(conv: O.Conv2d, pool: O.SumPool2d) -> O.Conv2d:
    """sumpool(conv(x)) = conv'(x): stride s*sp, same padding, dilation 1, taps a*s + i*d summed."""
    s, d, (kh, kw) = conv.stride, conv.dilation, conv.weight.shape[2:]
    kernel = [(kp - 1) * s[axis] + (k - 1) * d[axis] + 1
              for axis, (kp, k) in enumerate(zip(pool.kernel_size, (kh, kw), strict=True))]
    weight = np.zeros(conv.weight.shape[:2] + tuple(kernel))
    for a in range(pool.kernel_size[0]):
        for b in range(pool.kernel_size[1]):
            weight[:, :, a * s[0] : a * s[0] + d[0] * (kh - 1) + 1 : d[0],
                   b * s[1] : b * s[1] + d[1] * (kw - 1) + 1 : d[1]] += conv.weight
    taps = pool.kernel_size[0] * pool.kernel_size[1]
    return O.Conv2d(weight=weight, bias=None if conv.bias is None else conv.bias * taps,
                    stride=(s[0] * pool.stride[0], s[1] * pool.stride[1]), padding=conv.padding, dilation=1,
                    groups=conv.groups, provenance=conv.provenance)


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
        raise UnsupportedError(f"Scale '{name}' has no Linear/Conv next to it to fold into")


def _fold_scale_down(g: Graph, name: str, op: O.Scale, notes: list[str]) -> bool:
    """Scale -> [Flatten|Delay]* -> weighted op (its only input): multiply the op's input columns."""
    shapes = g.shapes()
    in_shape = shapes[name]
    scale = np.broadcast_to(op.scale, in_shape)
    try:
        trace = g.trace_forward(name)
    except UnsupportedError:
        return False
    target = trace.end
    nxt = g.node(target)
    if trace.recurrent_steps or not nxt.weighted or any(len(g.in_edges(n)) != 1 for n in (*trace.passed, target)):
        return False
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
    for name in list(g.of_kind("SumPool2d")):
        pool = g.node(name)
        edge_in = _only_in(g, name)
        in_shape = g.shapes()[edge_in.src]
        out = _only_out(g, name)
        if out is None or out.recurrent or len(g.in_edges(out.dst)) != 1:
            raise UnsupportedError(f"pool '{name}' must feed exactly one Linear/Conv to be fused into it")
        consumer = g.node(out.dst)
        if consumer.kind == "Conv2d":
            g.replace_node(out.dst, _pool_into_conv(pool, consumer, in_shape, name, out.dst))
            _remove(g, name)
        elif consumer.kind == "Flatten":
            after = _only_out(g, out.dst)
            linear = g.node(after.dst) if after is not None else None
            if linear is None or linear.kind != "Linear" or len(g.in_edges(after.dst)) != 1:
                raise UnsupportedError(f"pool '{name}' -> flatten '{out.dst}' must feed one Linear to be fused")
            g.replace_node(after.dst, _pool_into_linear(pool, linear, in_shape, name, after.dst))
            g.replace_node(out.dst, O.Flatten(provenance=consumer.provenance))
            _remove(g, name)
        else:
            raise UnsupportedError(f"pool '{name}' feeds '{out.dst}' ({consumer.kind}); it can only be fused into a "
                                   "following Conv2d or Flatten + Linear")
        notes.append(f"{name}: sum pool fused into '{out.dst if consumer.kind == 'Conv2d' else after.dst}'")


def _pool_into_conv(pool: O.SumPool2d, conv: O.Conv2d, in_shape, pool_name: str, conv_name: str) -> O.Conv2d:
    """conv(sumpool(x)) as one conv on x: stride s*sp, padding p*sp, kernel (k-1)*d*sp + kp."""
    pointwise = conv.weight.shape[2:] == (1, 1) and not any(conv.padding)   # e.g. an inserted identity
    if any(pool.padding) and not pointwise:
        raise UnsupportedError(f"pool '{pool_name}' has padding; it cannot be fused into '{conv_name}' (only into a "
                               "1x1 conv without padding)")
    kernel, stride, padding, dilation = [], [], [], []
    for axis in range(2):
        kp, sp = pool.kernel_size[axis], pool.stride[axis]
        k, s, p, d = conv.weight.shape[2 + axis], conv.stride[axis], conv.padding[axis], conv.dilation[axis]
        pooled = (in_shape[1 + axis] - kp) // sp + 1
        if p and (kp > sp or pooled * sp != in_shape[1 + axis]):
            raise UnsupportedError(f"pool '{pool_name}' cannot be fused into the padded conv '{conv_name}' exactly: "
                                   f"its input ({in_shape[1 + axis]}) is not a multiple of the pool stride {sp} or "
                                   "the windows overlap")
        kernel.append((k - 1) * d * sp + kp)
        stride.append(s * sp)
        padding.append(p * sp + pool.padding[axis])
        dilation.append(d * sp)
    weight = np.zeros(conv.weight.shape[:2] + tuple(kernel))
    kh, kw = conv.weight.shape[2:]
    for a in range(pool.kernel_size[0]):
        for b in range(pool.kernel_size[1]):
            weight[:, :, a : a + dilation[0] * (kh - 1) + 1 : dilation[0],
                   b : b + dilation[1] * (kw - 1) + 1 : dilation[1]] += conv.weight
    return O.Conv2d(weight=weight, bias=conv.bias, stride=tuple(stride), padding=tuple(padding), dilation=1,
                    groups=conv.groups, provenance=conv.provenance)


def _pool_into_linear(pool: O.SumPool2d, linear: O.Linear, in_shape, pool_name: str, lin_name: str) -> O.Linear:
    """W @ P: each pooled input column is spread over the pixels of its window."""
    if linear.delays is not None and linear.delays.any():
        raise UnsupportedError(f"'{lin_name}' has per-synapse delays; pool '{pool_name}' cannot be fused into it")
    c, h, w = in_shape
    ph, pw = pool.out_shape(in_shape)[1:]
    wl = linear.weight.reshape(-1, c, ph, pw)
    padded = np.zeros((wl.shape[0], c, h + 2 * pool.padding[0], w + 2 * pool.padding[1]))
    sy, sx = pool.stride
    for a in range(pool.kernel_size[0]):
        for b in range(pool.kernel_size[1]):
            padded[:, :, a : a + sy * (ph - 1) + 1 : sy, b : b + sx * (pw - 1) + 1 : sx] += wl
    weight = padded[:, :, pool.padding[0] : pool.padding[0] + h, pool.padding[1] : pool.padding[1] + w]
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
        if op.role == "neuron" or op.kind == "Input":
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
