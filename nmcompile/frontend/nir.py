"""NIR interop: read any `.nir` written by nir 1.0.x into the IR, and write the IR back to NIR.

NIR has no time step: continuous equations are discretised with forward Euler at `dt` (default 1e-4 s, the
convention of snnTorch, SpikingJelly and the NIR paper). For LIF, tau*dv/dt = (v_leak - v) + r*I gives

    beta = 1 - dt/tau,   gain = r*dt/tau,   bias = v_leak*dt/tau          (IF: gain = r*dt)
    CubaLIF current:     alpha = 1 - dt/tau_syn,   syn_gain = w_in*dt/tau_syn

NIR cannot carry reset by subtraction, delayed reset, '>=' or a refractory period. We write every IR field as
node metadata (`nmcompile.*`) and read it back when present and consistent with the NIR fields, so our own
round trips are exact. A foreign file gets NIR's own reading (reset to v_reset, immediately, fire on v > v_th),
with a warning that the source framework may have meant something else and how to say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nmcompile.errors import GraphError, InputFileError, UnsupportedError, existing_file, warn
from nmcompile.ir import ops as O
from nmcompile.ir.base import Op, Provenance
from nmcompile.ir.graph import Graph

DEFAULT_DT = 1e-4
META = "nmcompile."
SUPPORTED_NIR = ("Input", "Output", "Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten",
                 "Scale", "Delay", "Threshold", "LIF", "CubaLIF", "IF", "LI", "CubaLI", "I", "NIRGraph")


def _warn(message: str) -> None:
    warn(message)


# ======================================================================================================
# reading
# ======================================================================================================
def read_nir(path: str | Path, dt: float = DEFAULT_DT, reset_mode: str | None = None) -> Graph:
    """Read a `.nir` file. `reset_mode` ('zero' or 'subtract') overrides NIR's reset for foreign files."""
    import nir

    path = existing_file(path)
    try:
        nir_graph = nir.read(str(path))
    except Exception as first:  # nir/h5py raise OSError, KeyError, ValueError, AssertionError, TypeError...
        try:
            nir_graph = nir.read(str(path), type_check=False)
        except Exception:
            detail = " ".join(str(first).split())[:120]
            raise InputFileError(f"{path}: truncated, corrupt or not a NIR file ({type(first).__name__}: "
                                 f"{detail})") from None
    if not isinstance(nir_graph, nir.NIRGraph):
        nir_graph = nir.NIRGraph.from_list(nir_graph, type_check=False)
    return graph_from_nir(nir_graph, dt=dt, reset_mode=reset_mode, name=path.stem)


def graph_from_nir(nir_graph: Any, dt: float = DEFAULT_DT, reset_mode: str | None = None,
                   name: str = "network") -> Graph:
    """Convert an in-memory `nir.NIRGraph` into an IR graph (nested subgraphs are flattened)."""
    if not dt > 0:
        raise GraphError(f"dt must be > 0 seconds, got {dt}")
    if reset_mode not in (None, "zero", "subtract"):
        raise GraphError(f"reset_mode must be 'zero' or 'subtract', got {reset_mode!r}")
    graph_meta = dict(getattr(nir_graph, "metadata", {}) or {})
    nodes, edges = _flatten(nir_graph, "")
    recorded_order = [n for n in str(graph_meta.get(META + "order", "")).splitlines() if n]
    if sorted(recorded_order) == sorted(nodes):  # NIR's HDF5 groups sort names; ours records the IR order
        nodes = {n: nodes[n] for n in recorded_order}
    graph = Graph(str(graph_meta.get(META + "name", name)), dt=dt)
    foreign_neurons: list[str] = []
    for node_name, node in nodes.items():
        op, foreign = _node_to_op(node_name, node, dt, reset_mode)
        graph.add(_safe_name(node_name), op)
        if foreign:
            foreign_neurons.append(node_name)
    for src, dst in edges:
        graph.connect(_safe_name(src), _safe_name(dst))
    _mark_recurrent(graph, graph_meta)
    if foreign_neurons and reset_mode is None:
        _warn(
            f"NIR does not record reset mode or timing; {len(foreign_neurons)} neuron layer(s) "
            f"(e.g. '{foreign_neurons[0]}') read as reset to v_reset right after the spike, firing on v > threshold. "
            "If the source used reset by subtraction (snnTorch's default), pass --nir-reset subtract"
        )
    return graph


def _safe_name(name: str) -> str:
    return name.replace("/", ".").replace(" ", "_")


def _flatten(nir_graph: Any, prefix: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Inline nested NIRGraphs: an edge to a subgraph goes to its Input nodes' successors, an edge from it
    comes from its Output nodes' predecessors. Names become 'outer.inner'."""
    import nir

    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, list[str]] = {}
    exit_: dict[str, list[str]] = {}
    for key, node in nir_graph.nodes.items():
        full = f"{prefix}{key}"
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten(node, f"{full}.")
            ins = {f"{full}.{k}" for k, v in node.nodes.items() if isinstance(v, nir.Input)}
            outs = {f"{full}.{k}" for k, v in node.nodes.items() if isinstance(v, nir.Output)}
            entry[full] = [d for s, d in sub_edges if s in ins]
            exit_[full] = [s for s, d in sub_edges if d in outs]
            nodes.update({k: v for k, v in sub_nodes.items() if k not in ins | outs})
            edges.extend((s, d) for s, d in sub_edges if s not in ins and d not in outs)
        else:
            nodes[full] = node
    for src, dst in nir_graph.edges:
        src, dst = f"{prefix}{src}", f"{prefix}{dst}"
        for s in exit_.get(src, [src]):
            for d in entry.get(dst, [dst]):
                if (s, d) not in edges:
                    edges.append((s, d))
    for s, d in edges:
        for end in (s, d):
            if end not in nodes:
                raise InputFileError(f"NIR edge ({s!r}, {d!r}) refers to a node '{end}' that does not exist")
    return nodes, edges


def _mark_recurrent(graph: Graph, graph_meta: dict[str, Any]) -> None:
    """Decide which edges read the previous step: ours are recorded in metadata; for a foreign file every
    edge that closes a cycle in a depth-first walk from the inputs (nirtorch's reading) is recurrent."""
    recorded = graph_meta.get(META + "recurrent")
    if recorded is not None:
        pairs = {tuple(line.split(" -> ")) for line in str(recorded).splitlines() if line}
        back = [e for e in graph.edges if (e.src, e.dst) in pairs]
    else:
        back = _back_edges(graph)
    for e in back:
        graph.remove_edge(e)
        graph.connect(e.src, e.dst, recurrent=True)


def _back_edges(graph: Graph):
    succ: dict[str, list] = {n: [] for n in graph}
    for e in graph.edges:
        succ[e.src].append(e)
    state: dict[str, int] = {}
    back = []
    roots = graph.inputs + [n for n in graph if n not in graph.inputs]
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            for e in it:
                if state.get(e.dst) == 1:
                    back.append(e)
                elif e.dst not in state:
                    state[e.dst] = 1
                    stack.append((e.dst, iter(succ[e.dst])))
                    break
            else:
                state[node] = 2
                stack.pop()
    return back


def _arr(node: Any, key: str) -> np.ndarray:
    return np.asarray(getattr(node, key), dtype=np.float64)


def _shape_of(type_dict: Any, key: str) -> tuple[int, ...]:
    value = type_dict.get(key) if isinstance(type_dict, dict) else type_dict
    if value is None:
        raise InputFileError(f"NIR {key} node has no shape")
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


def _conv_padding(padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...],
                  name: str) -> tuple[int, ...]:
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * len(kernel)
        if padding == "same":
            spans = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            if any(s % 2 for s in spans) or any(s != 1 for s in stride):
                raise UnsupportedError(f"NIR node '{name}': padding 'same' with an even kernel span or stride > 1 "
                                       "is asymmetric; export with explicit padding")
            return tuple(s // 2 for s in spans)
        raise InputFileError(f"NIR node '{name}': unknown padding {padding!r}")
    values = [int(v) for v in np.asarray(padding).reshape(-1)]
    return tuple(values * len(kernel)) if len(values) == 1 else tuple(values)


def _tup(value: Any, n: int) -> tuple[int, ...]:
    values = [int(v) for v in np.asarray(value).reshape(-1)]
    return tuple(values * n) if len(values) == 1 else tuple(values)


def _node_to_op(name: str, node: Any, dt: float, reset_mode: str | None) -> tuple[Op, bool]:
    """Map one NIR node; returns the op and whether it is a neuron whose reset semantics were assumed."""
    kind = type(node).__name__
    prov = Provenance("nir", name)
    meta = dict(getattr(node, "metadata", {}) or {})
    if kind not in SUPPORTED_NIR:
        raise UnsupportedError(f"NIR node '{name}' has type {kind}, which nmcompile does not read; "
                               f"supported: {', '.join(SUPPORTED_NIR[:-1])}")
    if kind == "Input":
        return O.Input(shape=_shape_of(node.input_type, "input"), provenance=prov), False
    if kind == "Output":
        return O.Output(shape=_shape_of(node.output_type, "output"), provenance=prov), False
    if kind in ("Affine", "Linear"):
        weight = _arr(node, "weight")
        if weight.ndim != 2:
            raise UnsupportedError(f"NIR node '{name}': {kind} weight of shape {weight.shape} (only 2-D supported)")
        bias = _arr(node, "bias") if kind == "Affine" else None
        return O.Linear(weight=weight, bias=bias, provenance=prov), False
    if kind in ("Conv1d", "Conv2d"):
        weight = _arr(node, "weight")
        nd = weight.ndim - 2
        stride, dilation = _tup(node.stride, nd), _tup(node.dilation, nd)
        padding = _conv_padding(node.padding, tuple(weight.shape[2:]), dilation, stride, name)
        bias = _arr(node, "bias") if getattr(node, "bias", None) is not None else None
        if bias is not None and bias.shape != (weight.shape[0],):
            bias = np.broadcast_to(bias, (weight.shape[0],)).copy()
        if kind == "Conv1d":
            return O.Conv1d(weight=weight, bias=bias, stride=stride[0], padding=padding[0], dilation=dilation[0],
                            groups=int(node.groups), provenance=prov), False
        return O.Conv2d(weight=weight, bias=bias, stride=stride, padding=padding, dilation=dilation,
                        groups=int(node.groups), provenance=prov), False
    if kind in ("SumPool2d", "AvgPool2d"):
        cls = O.SumPool2d if kind == "SumPool2d" else O.AvgPool2d
        return cls(kernel_size=_tup(node.kernel_size, 2), stride=_tup(node.stride, 2),
                   padding=_tup(node.padding, 2), provenance=prov), False
    if kind == "Flatten":
        return O.Flatten(start_dim=int(node.start_dim), end_dim=int(node.end_dim), provenance=prov), False
    if kind == "Scale":
        return O.Scale(scale=_arr(node, "scale"), provenance=prov), False
    if kind == "Delay":
        steps = _arr(node, "delay") / dt
        if not np.allclose(steps, np.round(steps), rtol=0, atol=1e-6):
            raise UnsupportedError(f"NIR node '{name}': delay {np.unique(_arr(node, 'delay'))[:3]} s is not a whole "
                                   f"number of steps of dt={dt} s; pass --nir-dt")
        return O.Delay(delay=np.round(steps).astype(np.int64), provenance=prov), False
    return _neuron_to_op(name, kind, node, dt, reset_mode, meta, prov)


def _neuron_to_op(name: str, kind: str, node: Any, dt: float, reset_mode: str | None, meta: dict,
                  prov: Provenance) -> tuple[Op, bool]:
    exact = _op_from_metadata(name, meta, prov)
    op = _euler_neuron(kind, node, dt, prov)
    if exact is not None:
        # the recorded op is the one NIR's type reads as, or a subclass of it (a variant written as its base type)
        if isinstance(exact, type(op)) and _nir_fields_agree(exact, node, kind, dt):
            return exact, False
        _warn(f"NIR node '{name}': nmcompile metadata disagrees with its NIR fields (edited by another tool?); "
              "using the NIR fields")
        # keep what NIR cannot express from the metadata
        keep = {k: getattr(exact, k) for k in ("compare", "reset_mode", "reset_timing", "refractory")
                if hasattr(op, k)}
        return op.replace(**keep), False
    spiking = getattr(op, "spiking", False)
    if spiking and reset_mode is not None:
        op = op.replace(reset_mode=reset_mode)
    return op, spiking


def _euler_neuron(kind: str, node: Any, dt: float, prov: Provenance) -> Op:
    if kind == "Threshold":
        theta = _arr(node, "threshold")
        return O.LIF(shape=theta.shape, beta=0.0, threshold=theta, reset_mode="none", provenance=prov)
    if kind in ("IF", "I"):
        r = _arr(node, "r")
        if kind == "I":
            return O.LI(shape=r.shape, beta=1.0, gain=r * dt, reset_mode="none", provenance=prov)
        return O.IF(shape=r.shape, gain=r * dt, threshold=_arr(node, "v_threshold"), v_reset=_v_reset(node),
                    provenance=prov)
    if kind in ("LIF", "LI"):
        k = dt / _arr(node, "tau")
        fields = {"beta": 1.0 - k, "gain": _arr(node, "r") * k, "bias": _arr(node, "v_leak") * k}
        shape = _layer_shape(prov.source, *fields.values())
        if kind == "LI":
            return O.LI(shape=shape, reset_mode="none", provenance=prov, **fields)
        return O.LIF(shape=shape, threshold=_arr(node, "v_threshold"), v_reset=_v_reset(node), provenance=prov,
                     **fields)
    ks = dt / _arr(node, "tau_syn")
    km = dt / _arr(node, "tau_mem")
    fields = {"alpha": 1.0 - ks, "syn_gain": _arr(node, "w_in") * ks, "beta": 1.0 - km,
              "gain": _arr(node, "r") * km, "bias": _arr(node, "v_leak") * km}
    shape = _layer_shape(prov.source, *fields.values())
    if kind == "CubaLI":
        return O.CubaLI(shape=shape, reset_mode="none", provenance=prov, **fields)
    return O.CubaLIF(shape=shape, threshold=_arr(node, "v_threshold"), v_reset=_v_reset(node), provenance=prov,
                     **fields)


def _layer_shape(name: str, *arrays: np.ndarray) -> tuple[int, ...]:
    try:
        shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
    except ValueError:
        raise InputFileError(f"NIR node '{name}': its parameter arrays have different shapes") from None
    if not shape:
        raise InputFileError(f"NIR node '{name}': all parameters are scalars, so its layer size is unknown; "
                             "re-export with per-neuron arrays (NIR requires them)")
    return tuple(int(d) for d in shape)


def _v_reset(node: Any) -> np.ndarray:
    value = getattr(node, "v_reset", None)
    return np.zeros(()) if value is None else np.asarray(value, dtype=np.float64)


def _op_from_metadata(name: str, meta: dict, prov: Provenance) -> Op | None:
    kind = meta.get(META + "op")
    if kind is None:
        return None
    op_type = O.OP_TYPES.get(str(kind))
    if op_type is None:
        _warn(f"NIR node '{name}': unknown nmcompile op {kind!r} in metadata; ignoring the metadata")
        return None
    kwargs = {k[len(META):]: v for k, v in meta.items() if k.startswith(META) and k != META + "op"}
    for key, value in list(kwargs.items()):
        if isinstance(value, np.generic):
            kwargs[key] = value.item()
        if key == "shape":
            kwargs[key] = tuple(int(v) for v in np.asarray(value).reshape(-1))
    try:
        return op_type(provenance=prov, **kwargs)
    except (TypeError, ValueError) as err:
        _warn(f"NIR node '{name}': unreadable nmcompile metadata ({err}); ignoring it")
        return None


def _nir_fields_agree(op: Op, node: Any, kind: str, dt: float) -> bool:
    expected = _nir_neuron_fields(op, dt, "<check>")[1]
    for key, value in expected.items():
        if not hasattr(node, key) or getattr(node, key) is None:
            continue
        have = np.asarray(getattr(node, key), dtype=np.float64)
        want = np.broadcast_to(np.asarray(value, dtype=np.float64), have.shape) if have.shape else value
        if not np.allclose(have, want, rtol=1e-9, atol=1e-12):
            return False
    return True


# ======================================================================================================
# writing
# ======================================================================================================
def write_nir(graph: Graph, path: str | Path, dt: float | None = None) -> Path:
    """Write `graph` as a NIR file (our exact fields ride along as metadata)."""
    import nir

    path = Path(path)
    nir.write(str(path), graph_to_nir(graph, dt))
    return path


def graph_to_nir(graph: Graph, dt: float | None = None) -> Any:
    import nir

    dt = dt if dt is not None else (graph.dt if graph.dt is not None else DEFAULT_DT)
    graph.verify()
    shapes = graph.shapes()
    nodes: dict[str, Any] = {}
    for name, op in graph.nodes.items():
        in_edges = graph.in_edges(name)
        in_shape = shapes[in_edges[0].src] if in_edges else None
        nodes[name] = _op_to_nir(name, op, dt, in_shape, shapes[name])
    lossy = [name for name, op in graph.nodes.items() if _beyond_nir(op)]
    if lossy:
        _warn(f"{len(lossy)} layer(s) (e.g. '{lossy[0]}') use reset by subtraction, delayed reset, '>=', a "
              "refractory period, a bias on a non-leaky neuron or a non-zero initial state, which NIR cannot "
              "express; they are kept as nmcompile metadata, which other NIR readers ignore")
    recurrent = "\n".join(f"{e.src} -> {e.dst}" for e in graph.edges if e.recurrent)
    metadata = {META + "dt": float(dt), META + "recurrent": recurrent, META + "name": graph.name,
                META + "order": "\n".join(graph.nodes)}
    edges = [(e.src, e.dst) for e in graph.edges]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def _op_to_nir(name: str, op: Op, dt: float, in_shape, out_shape) -> Any:
    import nir

    kind = op.kind
    if kind == "Input":
        return nir.Input(input_type=np.array(op.shape))
    if kind == "Output":
        return nir.Output(output_type=np.array(op.shape))
    if kind == "Linear":
        if op.delays is not None and op.delays.any():
            raise UnsupportedError(f"node '{name}': per-synapse delays cannot be written to NIR")
        if op.bias is not None:
            return nir.Affine(weight=np.array(op.weight), bias=np.array(op.bias))
        return nir.Linear(weight=np.array(op.weight))
    if kind in ("Conv1d", "Conv2d"):
        bias = np.zeros(op.weight.shape[0]) if op.bias is None else np.array(op.bias)
        if kind == "Conv1d":
            return nir.Conv1d(input_shape=int(in_shape[1]), weight=np.array(op.weight), stride=op.stride,
                              padding=op.padding, dilation=op.dilation, groups=op.groups, bias=bias)
        return nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]), weight=np.array(op.weight),
                          stride=op.stride, padding=op.padding, dilation=op.dilation, groups=op.groups, bias=bias)
    if kind in ("SumPool2d", "AvgPool2d"):
        if op.ceil_mode:
            raise UnsupportedError(f"node '{name}': a sum pool with ceil_mode's partial windows cannot be written to "
                                   "NIR (its SumPool2d has no ceil_mode); run fuse_projections first, which folds it "
                                   "into the next projection")
        cls = nir.SumPool2d if kind == "SumPool2d" else nir.AvgPool2d
        return cls(kernel_size=np.array(op.kernel_size), stride=np.array(op.stride), padding=np.array(op.padding))
    if kind == "Flatten":
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=op.start_dim, end_dim=op.end_dim)
    if kind == "Reshape":
        if len(op.shape) != 1:
            raise UnsupportedError(f"node '{name}' (Reshape to {op.shape}) cannot be written to NIR: NIR 1.0 has "
                                   "Flatten but no reshape to several dimensions")
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
    if kind == "Scale":
        return nir.Scale(scale=np.broadcast_to(op.scale, in_shape).copy())
    if kind == "Delay":
        return nir.Delay(delay=np.broadcast_to(op.delay * dt, in_shape).astype(np.float64))
    if isinstance(op, O.NeuronOp) and not isinstance(op, O.MPBNLIF):
        nir_kind, fields = _nir_neuron_fields(op, dt, name)
        node = getattr(nir, nir_kind)(**{k: _full(v, op.shape) for k, v in fields.items()})
        node.metadata = _metadata_of(op)
        return node
    if op.numeric == "integer":
        hint = "NIR has no integer ops; export the float graph"
    elif op.removed_by is not None:
        hint = f"run the {op.removed_by} pass first"
    else:
        hint = "NIR has no equivalent"
    raise UnsupportedError(f"node '{name}' ({kind}) cannot be written to NIR: {hint}")


def _beyond_nir(op: Op) -> bool:
    if not isinstance(op, O.NeuronOp) or isinstance(op, O.MPBNLIF):
        return False
    if _nir_neuron_fields(op, 1.0, "<check>")[0] == "Threshold":
        return op.compare != ">"
    if op.spiking and (op.reset_mode != "zero" or op.reset_timing != "immediate" or op.compare != ">"
                       or op.refractory):
        return True
    if np.any(op.v_init != 0) or np.any(getattr(op, "i_init", 0) != 0):
        return True
    return bool(np.all(op.decay() == 1) and np.any(op.bias != 0))


def _full(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), shape).copy()


def _metadata_of(op: Op) -> dict[str, Any]:
    meta: dict[str, Any] = {META + "op": op.kind}
    for key, value in op.scalar_params().items():
        meta[META + key] = np.array(value) if isinstance(value, tuple) else value
    for key, array in op.array_params().items():
        # h5py cannot compress a scalar dataset, so 0-d arrays travel as plain numbers
        meta[META + key] = array.item() if array.ndim == 0 else np.array(array)
    return meta


def _nir_neuron_fields(op: Op, dt: float, name: str) -> tuple[str, dict[str, Any]]:
    """The NIR type and fields whose Euler discretisation at `dt` is `op` (inverse of `_euler_neuron`)."""
    beta = np.asarray(op.decay(), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if isinstance(op, (O.LIF, O.LI, O.IF)):
            if isinstance(op, O.LIF) and np.all(beta == 0) and np.all(op.gain == 1) and np.all(op.bias == 0) \
                    and op.reset_mode == "none":
                return "Threshold", {"threshold": op.threshold}
            if np.all(beta == 1):
                if isinstance(op, O.LI):
                    return "I", {"r": op.gain / dt}
                return "IF", {"r": op.gain / dt, "v_threshold": op.threshold, "v_reset": op.v_reset}
            _check_leak(beta, name)
            k = 1.0 - beta
            fields = {"tau": dt / k, "r": op.gain / k, "v_leak": op.bias / k}
            if isinstance(op, O.LI):
                return "LI", fields
            return "LIF", {**fields, "v_threshold": op.threshold, "v_reset": op.v_reset}
        alpha = np.asarray(op.alpha, dtype=np.float64)
        _check_leak(beta, name)
        _check_leak(alpha, name)
        ks, km = 1.0 - alpha, 1.0 - beta
        fields = {"tau_syn": dt / ks, "w_in": op.syn_gain / ks, "tau_mem": dt / km, "r": op.gain / km,
                  "v_leak": op.bias / km}
        if isinstance(op, O.CubaLI):
            return "CubaLI", fields
        return "CubaLIF", {**fields, "v_threshold": op.threshold, "v_reset": op.v_reset}


def _check_leak(decay: np.ndarray, name: str) -> None:
    if np.any(decay >= 1) or np.any(decay < 0):
        raise UnsupportedError(f"node '{name}': a decay outside [0, 1) (mixed leaky and non-leaky neurons, or an "
                               "unstable one) has no NIR time constant")
