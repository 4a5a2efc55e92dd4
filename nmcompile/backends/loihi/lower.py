"""Lower the compiled integer graph to a Lava process graph description (structured, not text).

One Lava process per integer node: QNeuron -> LIF, QLinear -> Dense / DelayDense (per-synapse delays; Lava's Dense
adds one step, DelayDense one more per unit of delay) or Sparse / DelaySparse where the matrix is sparse, QConv ->
Conv (a true convolution on (X=W, Y=H, C) data: the kernel is flipped and transposed). Flatten becomes a port
transform. Inputs and constant sources are driven by RingBuffers the runner creates. The loihi2 Target's limits
are checked by `nmcompile.lowered.limits` before; what is refused here is Lava's own format: weights that its
sign mode would change, a convolution of a layer's spikes delayed by more than one step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.lowered import Layer, LoweredNetwork, Projection

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


def lower(view: LoweredNetwork) -> LavaSpec:
    """The Lava process graph of a view that `check_target` accepted for loihi2."""
    spec = LavaSpec(view.name)
    for layer in view.layers.values():
        _lif(spec, layer)
    for p in view.projections:
        if p.form == "conv":
            _conv(spec, view, p)
        else:
            _dense(spec, view, p)
    for name, tap in view.outputs.items():
        shape = view.layers[tap.layer].shape
        spec.outputs[name] = (tap.layer, shape, layout_of(shape))
    return spec


def _lif(spec: LavaSpec, layer: Layer) -> None:
    op, name, shape = layer.op, layer.name, layer.shape
    kwargs: dict[str, object] = {"shape": lava_shape(shape), "du": _uniform(op.du), "dv": _uniform(op.dv),
                                 "vth": _uniform(op.vth)}
    arrays = {"bias_mant": op.bias_mant, "bias_exp": op.bias_exp, "u": op.u_init, "v": op.v_init}
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


def _source(spec: LavaSpec, view: LoweredNetwork, p: Projection, port: str, start: int = 0) -> None:
    """Connect the projection's input: a neuron layer (with a port transform) or an input/constant source."""
    expects, shape = tuple(p.in_shape), tuple(p.source_shape)
    if p.source not in view.layers:
        layout = "flat" if len(expects) == 1 else layout_of(expects)
        use = SourceUse(layout, lava_shape(expects) if layout != "flat" else (int(np.prod(expects)),), p.name, port,
                        start)
        (spec.inputs if p.source in view.inputs else spec.constants).setdefault(p.source, []).append(use)
        return
    spec.connections.append(Connection(p.source, "s_out", relayout(shape, expects), p.name, port))


def _target(spec: LavaSpec, view: LoweredNetwork, p: Projection) -> None:
    out_shape, shape = tuple(p.out_shape), tuple(view.layers[p.dest].shape)
    spec.connections.append(Connection(p.name, "a_out", relayout(out_shape, shape), p.dest, "a_in"))


def relayout(produced: tuple[int, ...], read: tuple[int, ...]) -> list[tuple]:
    """The port transforms that carry values of nmcompile shape `produced` to shape `read` (a Flatten or Reshape
    between them: the same values in C order), both in Lava's layout: to C order, then to the layout read."""
    transform: list[tuple] = []
    if produced == read:
        return transform
    if len(produced) > 1:
        transform += [("transpose", [2, 1, 0]), ("flatten",)]
    if len(read) > 1:
        c_h_w = (read[0], read[1] if len(read) == 3 else 1, read[-1])
        transform += [("reshape", c_h_w), ("transpose", [2, 1, 0])]
    return transform


def _dense(spec: LavaSpec, view: LoweredNetwork, p: Projection) -> None:
    name = p.name
    weight = p.weights.to_dense().astype(np.int64)
    if not np.array_equal(p.effective_matrix(), weight):
        raise UnsupportedError(f"projection '{name}': weights are not exactly representable in Lava's format")
    delay = np.broadcast_to(p.delay, weight.shape)
    sign = Expr(f"SignMode.{p.sign_mode.upper()}")
    kwargs: dict[str, object] = {"weight_exp": p.weight_exp, "num_weight_bits": p.num_weight_bits, "sign_mode": sign}
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
    _source(spec, view, p, "s_in")
    _target(spec, view, p)


def _conv(spec: LavaSpec, view: LoweredNetwork, p: Projection) -> None:
    name, w = p.name, p.weights
    start = p.uniform_delay() - 1
    if start and p.source not in view.constants:
        raise UnsupportedError(f"convolution '{name}' needs a delay of {start + 1} steps; Lava's Conv delivers after "
                               "exactly one (a delay on a convolution's input is supported for bias sources only)")
    in_shape = p.in_shape
    weight = w.kernel.astype(np.int64)
    if weight.ndim == 3:  # Conv1d (C, L) runs as a 2-D conv on (L, 1, C): L is Lava's X, a 2-D conv's W axis
        weight = weight[:, :, None, :]
        stride, padding, dilation = (1, w.stride[0]), (0, w.padding[0]), (1, w.dilation[0])
        lava_in = (in_shape[1], 1, in_shape[0])
    else:
        stride, padding, dilation = w.stride, w.padding, w.dilation
        lava_in = (in_shape[2], in_shape[1], in_shape[0])
    # PyTorch cross-correlation (out, in, H, W) -> Lava true convolution (out, X=W, Y=H, in), as netx does
    lava_weight = weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
    spec.arrays[f"{name}.weight"] = np.ascontiguousarray(lava_weight)
    kwargs = {"weight": ArrayRef(f"{name}.weight"), "input_shape": lava_in,
              "padding": (int(padding[1]), int(padding[0])), "stride": (int(stride[1]), int(stride[0])),
              "dilation": (int(dilation[1]), int(dilation[0])), "groups": int(w.groups), "name": name}
    spec.processes.append(ProcessSpec(name, "Conv", kwargs))
    _source(spec, view, p, "s_in", start)
    _target(spec, view, p)
