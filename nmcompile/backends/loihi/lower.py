"""Lower the compiled integer graph to a Lava process graph description (structured, not text).

One Lava process per integer node: QNeuron -> LIF, QLinear -> Dense / DelayDense (per-synapse delays; Lava's Dense
adds one step, DelayDense one more per unit of delay) or Sparse / DelaySparse where the matrix is sparse, QConv ->
Conv (a true convolution on (X=W, Y=H, C) data: the kernel is flipped and transposed). Flatten becomes a port
transform. Inputs and constant sources are driven by RingBuffers the runner creates. Everything Lava's
bit-accurate models cannot run exactly is refused here, naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import fixed
from nmcompile.ir.graph import Graph

SPARSE_DENSITY = 0.2   # a projection with at most this fraction of non-zero weights becomes Sparse


@dataclass(frozen=True)
class ArrayRef:
    """A parameter stored in network.npz under `key`."""

    key: str


@dataclass(frozen=True)
class Expr:
    """A Python expression of the generated module, rendered as written (SignMode.MIXED, a helper call)."""

    text: str


@dataclass
class ProcessSpec:
    name: str
    cls: str                              # LIF, Dense, DelayDense, Sparse, DelaySparse, Conv
    kwargs: dict[str, object]


@dataclass
class Connection:
    src: str                              # process name
    src_port: str                         # s_out / a_out
    transform: list[tuple]                # ("transpose", axes) | ("flatten",) | ("reshape", shape)
    dst: str
    dst_port: str                         # s_in / a_in


@dataclass
class SourceUse:
    """A projection reading an Input or Constant: the data layout it needs and the port to drive."""

    layout: str                           # flat | chw | cl
    lava_shape: tuple[int, ...]
    process: str
    port: str
    start: int = 0                        # constants: first step with a spike


@dataclass
class LavaSpec:
    name: str
    processes: list[ProcessSpec] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, list[SourceUse]] = field(default_factory=dict)
    constants: dict[str, list[SourceUse]] = field(default_factory=dict)
    outputs: dict[str, tuple[str, tuple[int, ...], str]] = field(default_factory=dict)   # name -> (LIF, shape, layout)
    neurons: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)        # LIF -> (shape, layout)


def layout_of(shape: tuple[int, ...]) -> str:
    return {1: "flat", 2: "cl", 3: "chw"}.get(len(shape), "unsupported")


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """nmcompile (C, H, W) -> Lava (W, H, C); (C, L) -> (L, 1, C); (N,) -> (N,)."""
    if len(shape) == 3:
        return (shape[2], shape[1], shape[0])
    if len(shape) == 2:
        return (shape[1], 1, shape[0])
    return tuple(shape)


def to_lava(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-neuron array of layer `shape` in Lava layout."""
    full = np.broadcast_to(array, shape)
    if len(shape) == 3:
        return np.ascontiguousarray(full.transpose(2, 1, 0))
    if len(shape) == 2:
        return np.ascontiguousarray(full.transpose(1, 0)[:, None, :])
    return np.array(full)


def _uniform(array: np.ndarray) -> int | None:
    flat = np.asarray(array).reshape(-1)
    return int(flat[0]) if flat.size and np.all(flat == flat[0]) else None


def lower(graph: Graph) -> LavaSpec:
    recurrent = [f"{e.src} -> {e.dst}" for e in graph.edges if e.recurrent]
    if recurrent:
        raise UnsupportedError(f"edge {recurrent[0]} is marked recurrent (one extra step); the loihi2 lowering takes "
                               "graphs whose delays are all on projections: compile through the pipeline (retime)")
    spec = LavaSpec(graph.name)
    shapes = graph.shapes()
    for name in graph.order():
        op = graph.node(name)
        kind = op.kind
        if kind == "QNeuron":
            _lif(spec, name, op)
        elif kind == "QLinear":
            _dense(spec, graph, name, op, shapes)
        elif kind == "QConv":
            _conv(spec, graph, name, op, shapes)
        elif kind == "Output":
            srcs = [_trace_back(graph, e.src) for e in graph.in_edges(name)]
            if len(srcs) != 1 or graph.node(srcs[0][0]).kind != "QNeuron":
                raise UnsupportedError(f"output '{name}' must be fed by exactly one neuron layer on loihi2")
            neuron = srcs[0][0]
            spec.outputs[name] = (neuron, shapes[neuron], layout_of(shapes[neuron]))
        elif kind in ("Input", "Constant", "Flatten"):
            continue
        else:
            raise UnsupportedError(f"node '{name}' ({kind}) has no Lava process; loihi2 runs LIF, Dense, Sparse, "
                                   "DelayDense, DelaySparse and Conv")
    return spec


def _trace_back(graph: Graph, name: str) -> tuple[str, list[str]]:
    """The producing node behind Flatten nodes, and the Flatten nodes passed."""
    passed = []
    while graph.node(name).kind == "Flatten":
        passed.append(name)
        name = graph.in_edges(name)[0].src
    return name, passed


def _trace_forward(graph: Graph, name: str) -> str:
    out = graph.out_edges(name)
    while len(out) == 1 and graph.node(out[0].dst).kind == "Flatten":
        out = graph.out_edges(out[0].dst)
    if len(out) != 1 or graph.node(out[0].dst).kind != "QNeuron":
        raise UnsupportedError(f"projection '{name}' must feed one neuron layer")
    return out[0].dst


def _lif(spec: LavaSpec, name: str, op) -> None:
    where = f"layer '{name}'"
    if not op.spiking:
        raise UnsupportedError(f"{where}: Lava's LIF always spikes; a readout layer is not supported on loihi2")
    if op.compare != ">" or op.reset_mode != "zero" or op.reset_timing != "immediate" or op.refractory:
        raise UnsupportedError(f"{where}: Lava's LIF compares with '>', resets to zero immediately and has no "
                               "refractory period")
    shape = op.shape
    du, dv, vth = _uniform(op.du), _uniform(op.dv), _uniform(op.vth)
    if du is None or dv is None:
        raise UnsupportedError(f"{where}: per-neuron decays (du/dv) need one Lava LIF process per decay value; "
                               "give the layer one decay")
    if vth is None:
        raise UnsupportedError(f"{where}: per-neuron thresholds are not supported by Lava's LIF (one vth per process)")
    if vth >= 1 << fixed.VTH_BITS:
        raise UnsupportedError(f"{where}: vth {vth} exceeds Lava's 17 bits")
    arrays = {"bias_mant": op.bias_mant, "bias_exp": op.bias_exp, "u": op.u_init, "v": op.v_init}
    kwargs: dict[str, object] = {"shape": lava_shape(shape), "du": du, "dv": dv, "vth": vth}
    for key, array in arrays.items():
        value = _uniform(array)
        if value is not None:
            kwargs[key] = value
        else:
            ref = f"{name}.{key}"
            spec.arrays[ref] = to_lava(array, shape).astype(np.int64)
            kwargs[key] = ArrayRef(ref)
    kwargs["name"] = name
    spec.processes.append(ProcessSpec(name, "LIF", kwargs))
    spec.neurons[name] = (tuple(shape), layout_of(shape))


def _source(spec: LavaSpec, graph: Graph, proj: str, expects: tuple[int, ...], port: str, start: int = 0) -> None:
    """Connect the projection's input: a neuron layer (with a port transform) or an input/constant source."""
    src, _ = _trace_back(graph, graph.in_edges(proj)[0].src)
    src_op = graph.node(src)
    shape = graph.shapes()[src]
    if src_op.kind in ("Input", "Constant"):
        layout = "flat" if len(expects) == 1 else layout_of(expects)
        use = SourceUse(layout, lava_shape(expects) if layout != "flat" else (int(np.prod(expects)),), proj, port,
                        start)
        (spec.inputs if src_op.kind == "Input" else spec.constants).setdefault(src, []).append(use)
        if src_op.kind == "Input" and start:
            raise AssertionError("inputs are never shifted")
        return
    if start:
        raise UnsupportedError(f"projection '{proj}' needs more than Lava's one step of delay for a convolution")
    transform: list[tuple] = []
    if len(shape) > 1 and len(expects) == 1:
        transform = [("transpose", [2, 1, 0]), ("flatten",)]
    elif len(shape) == 1 and len(expects) > 1:
        c_h_w = (expects[0], expects[1] if len(expects) == 3 else 1, expects[-1])
        transform = [("reshape", c_h_w), ("transpose", [2, 1, 0])]
    elif tuple(shape) != tuple(expects):
        raise UnsupportedError(f"projection '{proj}': its input of shape {shape} cannot be laid out as {expects}")
    spec.connections.append(Connection(src, "s_out", transform, proj, port))


def _target(spec: LavaSpec, graph: Graph, proj: str, out_shape: tuple[int, ...]) -> None:
    dst = _trace_forward(graph, proj)
    shape = graph.shapes()[dst]
    transform: list[tuple] = []
    if len(out_shape) > 1 and len(shape) == 1:
        transform = [("transpose", [2, 1, 0]), ("flatten",)]
    elif tuple(out_shape) != tuple(shape):
        raise UnsupportedError(f"projection '{proj}' of shape {out_shape} cannot feed layer '{dst}' of shape {shape}")
    spec.connections.append(Connection(proj, "a_out", transform, dst, "a_in"))


def _dense(spec: LavaSpec, graph: Graph, name: str, op, shapes) -> None:
    weight = op.weight.astype(np.int64)
    if not np.array_equal(op.effective_weight(), weight):
        raise UnsupportedError(f"projection '{name}': weights are not exactly representable in Lava's format")
    delay = np.broadcast_to(op.delay, weight.shape)
    if delay.min() < 1 or delay.max() > 64:
        raise UnsupportedError(f"projection '{name}': delays {int(delay.min())}..{int(delay.max())} outside Lava's "
                               "1..64 steps (Dense adds 1, DelayDense up to 63 more)")
    sign = Expr(f"SignMode.{op.sign_mode.upper()}")
    kwargs: dict[str, object] = {"weight_exp": int(op.weight_exp), "num_weight_bits": int(op.num_weight_bits),
                                 "sign_mode": sign}
    delayed = bool(np.any(delay > 1))
    sparse = np.count_nonzero(weight) <= SPARSE_DENSITY * weight.size
    if sparse:
        rows, cols = np.nonzero(weight)
        spec.arrays[f"{name}.rows"] = rows.astype(np.int64)
        spec.arrays[f"{name}.cols"] = cols.astype(np.int64)
        spec.arrays[f"{name}.values"] = weight[rows, cols]
        kwargs = {"weights": Expr(f"_csr(p, {name!r}, {weight.shape!r})"), **kwargs}
        if delayed:
            spec.arrays[f"{name}.delays"] = (delay[rows, cols] - 1).astype(np.int64)
            kwargs["delays"] = Expr(f"_csr(p, {name!r}, {weight.shape!r}, 'delays')")
        cls = "DelaySparse" if delayed else "Sparse"
    else:
        spec.arrays[f"{name}.weights"] = weight
        kwargs = {"weights": ArrayRef(f"{name}.weights"), **kwargs}
        if delayed:
            spec.arrays[f"{name}.delays"] = (delay - 1).astype(np.int64)
            kwargs["delays"] = ArrayRef(f"{name}.delays")
        cls = "DelayDense" if delayed else "Dense"
    kwargs["name"] = name
    spec.processes.append(ProcessSpec(name, cls, kwargs))
    _source(spec, graph, name, (weight.shape[1],), "s_in")
    _target(spec, graph, name, (weight.shape[0],))


def _conv(spec: LavaSpec, graph: Graph, name: str, op, shapes) -> None:
    if op.weight_exp != 0 or op.wrap_bits != fixed.UV_BITS:
        raise UnsupportedError(f"convolution '{name}': Lava's fixed-point Conv has no weight exponent and wraps at "
                               "24 bits")
    in_shape = shapes[graph.in_edges(name)[0].src]
    src, _ = _trace_back(graph, graph.in_edges(name)[0].src)
    start = op.delay - 1
    if start and graph.node(src).kind != "Constant":
        raise UnsupportedError(f"convolution '{name}' needs a delay of {op.delay} steps; Lava's Conv delivers after "
                               "exactly one")
    weight = op.weight.astype(np.int64)
    if weight.ndim == 3:  # Conv1d (C, L) runs as a 2-D conv on (L, 1, C)
        weight = weight[:, :, :, None]
        stride, padding, dilation = (op.stride[0], 1), (op.padding[0], 0), (op.dilation[0], 1)
        lava_in = (in_shape[1], 1, in_shape[0])
    else:
        stride, padding, dilation = op.stride, op.padding, op.dilation
        lava_in = (in_shape[2], in_shape[1], in_shape[0])
    # PyTorch cross-correlation (out, in, H, W) -> Lava true convolution (out, X=W, Y=H, in), as netx does
    lava_weight = weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
    spec.arrays[f"{name}.weight"] = np.ascontiguousarray(lava_weight)
    kwargs = {"weight": ArrayRef(f"{name}.weight"), "input_shape": lava_in,
              "padding": (int(padding[1]), int(padding[0])), "stride": (int(stride[1]), int(stride[0])),
              "dilation": (int(dilation[1]), int(dilation[0])), "groups": int(op.groups), "name": name}
    spec.processes.append(ProcessSpec(name, "Conv", kwargs))
    out_shape = op.out_shape(in_shape)
    _source(spec, graph, name, tuple(in_shape), "s_in", start)
    _target(spec, graph, name, tuple(out_shape))
