"""Per-op simulation kernels: the executable form of docs/semantics.md.

A kernel runs one node. Stateless and delay-only kernels process a whole sequence of steps at once (`run`, one
matrix product for a feed-forward projection); stateful kernels loop over steps. `run(x)` starts from the initial
state, `run_chunk(x)` continues from the state the previous chunk left (what lets the simulator stream long inputs
in chunks). Inside a recurrent loop the simulator drives kernels step by step: `step(x_t)`, or for a kernel whose
output lags its input by >= 1 step (`lagged`), `peek()` before and `push(x_t)` after the loop body.
Arrays are [T, B, *shape] in `run` and [B, *shape] in `step`.

Engines (`Kernel.engine`): 'compiled' (the default) runs the neuron updates as numba loops fused over the state
variables (nmcompile.ir.jit) and integer products of sparse spikes event-driven; 'numpy' runs the vectorised numpy
form below, the reference the compiled loops are tested against. Both give identical bits.

Kernels are registered per op class, for a mode ('float', 'integer' or 'any'), and found along the op's MRO:

    @register_kernel(O.QNeuron, mode="integer")
    def _integer_neuron(op, in_shape, out_shape, dtype) -> Kernel: ...
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import arraymath, fixed
from nmcompile.ir import ops as O
from nmcompile.ir.base import Op, Shape
from nmcompile.ir.neurons import NeuronOp
from nmcompile.ir.spare import SpareOutputs

Apply = Callable[[np.ndarray], np.ndarray]


ENGINES = ("compiled", "numpy")


class Kernel:
    """Base: a stateless elementwise/linear map `apply` on arrays with any leading dims."""

    lagged = False
    state_names: tuple[str, ...] = ()
    engine = "compiled"

    def __init__(self, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype):
        self.in_shape = in_shape
        self.out_shape = out_shape
        self.dtype = dtype
        self._recorded: dict[str, np.ndarray] = {}

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, x: np.ndarray, record: bool = False) -> np.ndarray:
        return self.apply(x)

    def run_chunk(self, x: np.ndarray, record: bool = False) -> np.ndarray:
        """`run` continued from the current state (after `reset`); a stateless kernel needs nothing more."""
        return self.run(x, record)

    @property
    def chunkable(self) -> bool:
        """Whether `run_chunk` continues the state: true for stateless kernels and for every kernel here; a
        stateful kernel of another module that overrides `run` only is run over whole sequences."""
        return type(self).run is Kernel.run or type(self).run_chunk is not Kernel.run_chunk

    def set_engine(self, engine: str) -> None:
        """'compiled' or 'numpy' (see the module docstring)."""
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine

    def reset(self, batch: int) -> None:
        """Prepare step-by-step evaluation for `batch` samples."""

    def step(self, x: np.ndarray) -> np.ndarray:
        return self.apply(x)

    def states(self) -> dict[str, np.ndarray]:
        """Per-step state recorded by the last run (stateful kernels only)."""
        return self._recorded

    def set_recorded(self, recorded: dict[str, np.ndarray]) -> None:
        self._recorded = recorded


def _flat_lead(x: np.ndarray, in_shape: Shape) -> tuple[np.ndarray, tuple[int, ...]]:
    lead = x.shape[: x.ndim - len(in_shape)]
    return x.reshape((-1, *in_shape)), lead


class Identity(Kernel):
    def apply(self, x: np.ndarray) -> np.ndarray:
        return x


class ConstantSource(Kernel):
    """Emits the same value at every step; it has no input (run/step receive zeros of the batch shape)."""

    def __init__(self, in_shape, out_shape, dtype, value):
        super().__init__(in_shape, out_shape, dtype)
        if dtype.kind == "i" and value != int(value):
            raise UnsupportedError(f"a constant source of value {value} has no integer form")
        self.value = value

    def apply(self, x: np.ndarray) -> np.ndarray:
        lead = x.shape[: x.ndim - len(self.out_shape)]
        return np.full((*lead, *self.out_shape), self.value, dtype=self.dtype)


class FlattenKernel(Kernel):
    def apply(self, x: np.ndarray) -> np.ndarray:
        lead = x.shape[: x.ndim - len(self.in_shape)]
        return x.reshape((*lead, *self.out_shape))


class MapKernel(Kernel):
    """A kernel defined by a function on [N, *in_shape] arrays."""

    def __init__(self, in_shape, out_shape, dtype, fn: Apply):
        super().__init__(in_shape, out_shape, dtype)
        self.fn = fn

    def apply(self, x: np.ndarray) -> np.ndarray:
        flat, lead = _flat_lead(x, self.in_shape)
        return self.fn(flat).reshape((*lead, *self.out_shape))

    def set_engine(self, engine: str) -> None:
        super().set_engine(engine)
        if hasattr(self.fn, "set_engine"):
            self.fn.set_engine(engine)


class DelayedSum(Kernel):
    """y[t] = sum over groups (d, f) of f(x[t - d]) + const; the general form of delayed projections."""

    def __init__(self, in_shape, out_shape, dtype, groups: list[tuple[int, Apply]],
                 const: np.ndarray | None = None):
        super().__init__(in_shape, out_shape, dtype)
        self.groups = groups
        self.const = const
        self.max_delay = max(d for d, _ in groups)
        self.lagged = min(d for d, _ in groups) >= 1 and const is None
        self.history: deque[np.ndarray] = deque()   # the last max_delay + 1 inputs, oldest first

    def _map(self, f: Apply, x: np.ndarray) -> np.ndarray:
        flat, lead = _flat_lead(x, self.in_shape)
        return f(flat).reshape((*lead, *self.out_shape))

    def set_engine(self, engine: str) -> None:
        super().set_engine(engine)
        for _, f in self.groups:
            if hasattr(f, "set_engine"):            # SpikeProduct, IntegerConv, Float32Linear: an engine choice
                f.set_engine(engine)

    def run(self, x: np.ndarray, record: bool = False) -> np.ndarray:
        self.reset(x.shape[1])
        return self.run_chunk(x, record)

    def run_chunk(self, x: np.ndarray, record: bool = False) -> np.ndarray:
        """y[t] = sum f(x[t - d]) + const for the chunk's steps; x[t - d] before the chunk comes from the buffer
        (the last max_delay + 1 inputs), which the chunk then extends."""
        steps = x.shape[0]
        if len(self.groups) == 1 and self.const is None and steps:     # one product over the shifted input
            d, f = self.groups[0]
            late = list(self.history)[len(self.history) - d:][:steps] if d else []
            shifted = np.concatenate([np.stack(late), x[: steps - d]]) if late else x
            self.history.extend(x[-(self.max_delay + 1):].copy())
            return self._map(f, shifted)
        y = np.zeros((steps, *x.shape[1 : x.ndim - len(self.in_shape)], *self.out_shape), dtype=self.dtype)
        for d, f in self.groups:
            for t in range(min(d, steps)):
                y[t] += self._map(f, self.history[t - d])
            if d < steps:
                y[d:] += self._map(f, x[: steps - d])
        if self.const is not None:
            y += self.const
        self.history.extend(x[-(self.max_delay + 1):].copy())
        return y

    def reset(self, batch: int) -> None:
        zero = np.zeros((batch, *self.in_shape), dtype=self.dtype)
        self.history = deque([zero] * (self.max_delay + 1), maxlen=self.max_delay + 1)

    def _emit(self, offset: int) -> np.ndarray:
        y = None
        for d, f in self.groups:       # from zero, as run_chunk's sums (the same bits, the sign of a zero too)
            part = self._map(f, self.history[-1 - d + offset])
            y = np.zeros_like(part) + part if y is None else y + part
        if self.const is not None:
            y = y + self.const
        return y

    def step(self, x: np.ndarray) -> np.ndarray:
        self.history.append(x)
        return self._emit(0)

    def peek(self) -> np.ndarray:
        return self._emit(1)  # x[t] is not pushed yet: x[t - d] sits at position -d

    def push(self, x: np.ndarray) -> None:
        self.history.append(x)


# -- neurons --------------------------------------------------------------------------------------------
class NeuronKernel(Kernel):
    """A neuron layer: `step` advances one step for the whole batch; `run` loops over the steps and, with
    `record`, keeps every state variable (`state_names`) of every step. A class with a compiled loop over all
    steps names itself `fused_base` and defines `_run_fused(x, out, rec)`; it is used when `fused`: engine
    'compiled' and `reset`/`step` not overridden (a subclass that changes the update keeps the numpy loop over its
    own `step`)."""

    fused_base: type | None = None

    @property
    def fused(self) -> bool:
        base = self.fused_base
        return (self.engine == "compiled" and base is not None and type(self).step is base.step
                and type(self).reset is base.reset)

    def _step_fused(self, x: np.ndarray) -> np.ndarray:
        """One step through the compiled loop ([B, *shape] in and out)."""
        out = np.empty((1, *x.shape), dtype=self.dtype)
        self._run_fused(np.ascontiguousarray(x, dtype=self.dtype)[None], out, {})
        return out[0]

    def run(self, x: np.ndarray, record: bool = False) -> np.ndarray:
        self.reset(x.shape[1])
        return self.run_chunk(x, record)

    def run_chunk(self, x: np.ndarray, record: bool = False) -> np.ndarray:
        steps, batch = x.shape[0], x.shape[1]
        if "_spares" not in self.__dict__:       # outputs of earlier calls that nothing holds any more (ir/spare.py)
            self._spares = SpareOutputs()
        out = self._spares.take((steps, batch, *self.out_shape), self.dtype)
        rec = {k: np.empty_like(out) for k in self.state_names} if record else {}
        if self.fused:
            self._run_fused(np.ascontiguousarray(x, dtype=self.dtype), out, rec)
        else:
            for t in range(steps):
                out[t] = self.step(x[t])
                for k in rec:
                    rec[k][t] = getattr(self, k)
        self._recorded = rec
        return out

    def _flat(self, array: np.ndarray) -> np.ndarray:
        """A parameter broadcast to the layer and flattened: [N] in the kernel dtype."""
        return np.ascontiguousarray(np.broadcast_to(array, self.out_shape).reshape(-1), dtype=self.dtype)

    def _rows(self, array: np.ndarray) -> np.ndarray:
        """A [B, *shape] state as the [B, N] view the compiled loops update in place."""
        return array.reshape(array.shape[0], -1) if array.size else array.reshape(0, 0)



class FloatNeuron(NeuronKernel):
    """The float neuron update of nmcompile.ir.neurons (one step vectorised over batch and neurons; compiled over
    all steps by jit.float_neuron)."""

    def __init__(self, op: NeuronOp, out_shape: Shape, dtype: np.dtype):
        super().__init__(out_shape, out_shape, dtype)
        self.op = op
        p = {k: v.astype(dtype) for k, v in op.array_params().items()}
        self.p = p
        self.cuba = isinstance(op, (O.CubaLIF, O.CubaLI))
        self.mpbn = isinstance(op, O.MPBNLIF)
        self.beta = None if isinstance(op, O.IF) else p["beta"]
        self.unit_gain = bool(np.all(op.gain == 1.0))
        self.zero_bias = bool(np.all(op.bias == 0.0))
        if self.mpbn:  # ATen's eval batch norm: y = x * a + b, a = weight / sqrt(var + eps), b = bias - mean * a
            a = (1.0 / np.sqrt(op.bn_var + op.bn_eps) * op.bn_weight).astype(dtype)
            self.bn_scale = a
            self.bn_shift = (op.bn_bias - op.bn_mean * a).astype(dtype)
        self.state_names = ("v", "i") if self.cuba else ("v",)

    def _fire(self, value: np.ndarray) -> np.ndarray:
        if self.op.compare == ">":
            return value > self.p["threshold"]
        return value >= self.p["threshold"]

    def reset(self, batch: int) -> None:
        shape = (batch, *self.out_shape)
        self.v = np.broadcast_to(self.p["v_init"], shape).astype(self.dtype)
        self.i = np.broadcast_to(self.p["i_init"], shape).astype(self.dtype) if self.cuba else None
        self.refractory_left = np.zeros(shape, dtype=np.int64) if self.op.refractory else None

    def _run_fused(self, x: np.ndarray, out: np.ndarray, rec: dict[str, np.ndarray]) -> None:
        from nmcompile.ir import jit

        jit.run_float_neuron(self, x, out, rec)

    def step(self, x: np.ndarray) -> np.ndarray:
        if self.fused:
            return self._step_fused(x)
        op, p = self.op, self.p
        if self.cuba:
            self.i = p["alpha"] * self.i + p["syn_gain"] * x
            current = self.i
        else:
            current = x
        drive = current if self.unit_gain else p["gain"] * current
        h = (self.v + drive) if self.beta is None else (self.beta * self.v + drive)
        if not self.zero_bias:
            h = h + p["bias"]
        if not op.spiking:
            self.v = h
            return h
        pending = None
        if op.reset_timing != "immediate":
            pending = self._fire(self.v)
            if op.reset_mode == "subtract":
                h = h - pending * p["threshold"]
            elif op.reset_mode == "zero":
                h = np.where(pending, p["v_reset"], h)
        if self.refractory_left is not None:
            held = self.refractory_left > 0
            h = np.where(held, p["v_reset"], h)
        spikes = self._fire(h * self.bn_scale + self.bn_shift) if self.mpbn else self._fire(h)
        if self.refractory_left is not None:
            spikes &= ~held
            self.refractory_left = np.where(spikes, op.refractory, np.maximum(self.refractory_left - 1, 0))
        if op.reset_timing == "immediate":
            if op.reset_mode == "zero":
                h = np.where(spikes, p["v_reset"], h)
            elif op.reset_mode == "subtract":
                h = h - spikes * (p["reset_amount"] if self.mpbn else p["threshold"])
        elif op.reset_timing == "snntorch_immediate":
            h = h - (spikes.astype(self.dtype) - pending) * p["threshold"]
        self.v = h
        return spikes.astype(self.dtype)


class IntegerNeuron(NeuronKernel):
    """The integer CUBA LIF of nmcompile.ir.integer.QNeuron (Lava 0.10 bit-accurate plus options; compiled over all
    steps by jit.integer_neuron)."""

    state_names = ("u", "v")

    def __init__(self, op: O.QNeuron, out_shape: Shape):
        super().__init__(out_shape, out_shape, np.dtype(np.int64))
        self.op = op
        self.du_plus = op.du.astype(np.int64) + 1
        self.clears_current = bool(np.all(self.du_plus == fixed.DECAY_UNITY))  # u = a << 6 every step
        self.dv = op.dv.astype(np.int64)
        self.vth = np.left_shift(op.vth.astype(np.int64), fixed.VTH_SHIFT)
        self.bias = fixed.effective_bias(op.bias_mant, op.bias_exp)

    def _fire(self, v: np.ndarray) -> np.ndarray:
        return v > self.vth if self.op.compare == ">" else v >= self.vth

    def reset(self, batch: int) -> None:
        shape = (batch, *self.out_shape)
        self.u = np.broadcast_to(self.op.u_init, shape).astype(np.int64)
        self.v = np.broadcast_to(self.op.v_init, shape).astype(np.int64)
        self.refractory_left = np.zeros(shape, dtype=np.int64) if self.op.refractory else None

    def _run_fused(self, x: np.ndarray, out: np.ndarray, rec: dict[str, np.ndarray]) -> None:
        from nmcompile.ir import jit

        jit.run_integer_neuron(self, x, out, rec)

    def step(self, a: np.ndarray) -> np.ndarray:
        if self.fused:
            return self._step_fused(a)
        op = self.op
        drive = np.left_shift(a, fixed.ACT_SHIFT)
        self.u = fixed.wrap_current(drive if self.clears_current else fixed.decay(self.u, self.du_plus) + drive)
        v = fixed.decay(self.v, self.dv) + self.u + self.bias
        if not op.spiking:
            self.v = fixed.clip_voltage(v)
            return self.v
        if op.reset_timing == "delayed":
            pending = self._fire(self.v)
            if op.reset_mode == "subtract":
                v = v - pending * self.vth
            elif op.reset_mode == "zero":
                v = np.where(pending, 0, v)
        v = fixed.clip_voltage(v)
        if self.refractory_left is not None:
            held = self.refractory_left > 0
            v = np.where(held, 0, v)
        spikes = self._fire(v)
        if self.refractory_left is not None:
            spikes &= ~held
            self.refractory_left = np.where(spikes, op.refractory, np.maximum(self.refractory_left - 1, 0))
        if op.reset_timing == "immediate":
            if op.reset_mode == "zero":
                v = np.where(spikes, 0, v)
            elif op.reset_mode == "subtract":
                v = v - spikes * self.vth
        self.v = v
        return spikes.astype(np.int64)


FloatNeuron.fused_base = FloatNeuron
IntegerNeuron.fused_base = IntegerNeuron


# -- registry -------------------------------------------------------------------------------------------
KernelFactory = Callable[[Op, Shape | None, Shape, np.dtype], Kernel]
KERNEL_MODES = ("float", "integer", "any")
_KERNELS: dict[tuple[type[Op], str], KernelFactory] = {}


def register_kernel(op_type: type[Op], mode: str = "any") -> Callable[[KernelFactory], KernelFactory]:
    """Register `factory(op, in_shape, out_shape, dtype) -> Kernel` for `op_type` in `mode`: 'float' (float64
    and float32), 'integer' or 'any'. Subclasses of `op_type` without a kernel of their own inherit it."""
    if mode not in KERNEL_MODES:
        raise ValueError(f"kernel mode must be one of {KERNEL_MODES}, got {mode!r}")

    def deco(factory: KernelFactory) -> KernelFactory:
        known = _KERNELS.get((op_type, mode))
        if known is not None and (known.__module__, known.__qualname__) != (factory.__module__, factory.__qualname__):
            raise ValueError(f"{op_type.__name__} already has a kernel for mode {mode!r}: "
                             f"{known.__module__}.{known.__qualname__}")
        _KERNELS[(op_type, mode)] = factory
        return factory

    return deco


def find_kernel(op_type: type[Op], mode: str) -> KernelFactory | None:
    """The factory of the nearest class along `op_type`'s MRO that has one for `mode` ('float' or 'integer');
    within one class a kernel for exactly that mode wins over an 'any' kernel."""
    for cls in op_type.__mro__:
        for key in ((cls, mode), (cls, "any")):
            if key in _KERNELS:
                return _KERNELS[key]
    return None


def make_kernel(op: Op, in_shape: Shape | None, out_shape: Shape, mode: str) -> Kernel:
    """The kernel for `op` in simulation mode `mode` ('float64', 'float32' or 'integer')."""
    integer = mode == "integer"
    dtype = np.dtype(np.int64) if integer else np.dtype(mode)
    factory = find_kernel(type(op), "integer" if integer else "float")
    if factory is not None:
        return factory(op, in_shape, out_shape, dtype)
    kind = op.kind
    if integer and op.numeric == "float":
        raise UnsupportedError(
            f"{kind} has no integer semantics; quantize the graph for a target before simulating it as integers"
        )
    if not integer and op.numeric == "integer":
        raise UnsupportedError(f"{kind} is an integer op; simulate this graph with --integer")
    which = "integer" if integer else "float"
    raise UnsupportedError(f"the {which} simulator has no kernel for {kind}; register one with "
                           f"@register_kernel({kind}, mode={which!r})")


# -- kernels of the ops ----------------------------------------------------------------------------------
def _channel_param(array: np.ndarray, in_shape: Shape, dtype) -> np.ndarray:
    """Reshape a per-channel (C,) array to broadcast over (C, *spatial)."""
    return array.reshape((array.shape[0],) + (1,) * (len(in_shape) - 1)).astype(dtype)


def _linear_groups(weight: np.ndarray, delays: np.ndarray, make: Callable[[np.ndarray], Apply]):
    if np.ndim(delays) == 0:
        return [(int(delays), make(weight))]
    delays = np.broadcast_to(delays, weight.shape)
    groups = []
    for d in np.unique(delays):
        wd = np.where(delays == d, weight, 0)
        groups.append((int(d), make(wd)))
    return groups


@register_kernel(O.Input)
@register_kernel(O.Output)
def _identity(op: Op, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    return Identity(in_shape, out_shape, dtype)


@register_kernel(O.Constant)
def _constant(op: O.Constant, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    return ConstantSource(in_shape, out_shape, dtype, op.value)


@register_kernel(O.Flatten)
@register_kernel(O.Reshape)
def _flatten(op: O.Flatten | O.Reshape, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    return FlattenKernel(in_shape, out_shape, dtype)


@register_kernel(O.SumPool1d)
@register_kernel(O.SumPool2d)
def _sum_pool(op: O.SumPool2d, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    pads = op.pads(in_shape)
    return MapKernel(in_shape, out_shape, dtype, lambda x: arraymath.sum_pool(x, op.kernel_size, op.stride, pads))


@register_kernel(O.Delay)
def _delay(op: O.Delay, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    delay = np.broadcast_to(op.delay, in_shape)
    groups = [(int(d), (lambda m: lambda x: x * m)((delay == d).astype(dtype))) for d in np.unique(delay)]
    return DelayedSum(in_shape, out_shape, dtype, groups)


def _float_neuron(op: NeuronOp, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    return FloatNeuron(op, out_shape, dtype)


for _neuron in (O.LIF, O.IF, O.CubaLIF, O.LI, O.CubaLI, O.MPBNLIF):
    register_kernel(_neuron, mode="float")(_float_neuron)


@register_kernel(O.Linear, mode="float")
def _linear(op: O.Linear, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    bias = None if op.bias is None else op.bias.astype(dtype)
    if op.delays is None or not op.delays.any():
        if dtype == np.float32:
            return MapKernel(in_shape, out_shape, dtype, arraymath.Float32Linear(op.weight, bias))
        w_t = np.ascontiguousarray(op.weight.astype(dtype).T)
        if bias is None:
            return MapKernel(in_shape, out_shape, dtype, lambda x: x @ w_t)
        return MapKernel(in_shape, out_shape, dtype, lambda x: x @ w_t + bias)
    if dtype == np.float32:     # each delay group's product in the row's own order (arraymath.Float32Linear)
        groups = _linear_groups(op.weight.astype(dtype), op.delays, lambda w: arraymath.Float32Linear(w, None))
    else:
        groups = _linear_groups(op.weight.astype(dtype), op.delays,
                                lambda w: (lambda wt: lambda x: x @ wt)(np.ascontiguousarray(w.T)))
    return DelayedSum(in_shape, out_shape, dtype, groups, const=bias)


@register_kernel(O.SparseLinear, mode="float")
def _sparse_linear(op: O.SparseLinear, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    from scipy.sparse import csr_matrix

    matrix = csr_matrix((op.values.astype(dtype), op.indices, op.indptr), shape=(op.out_features, op.in_features))
    transposed = matrix.T.tocsr()
    return MapKernel(in_shape, out_shape, dtype, lambda x: np.asarray(x @ transposed))


@register_kernel(O.Conv1d, mode="float")
@register_kernel(O.Conv2d, mode="float")
def _conv(op: O.Conv1d | O.Conv2d, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    bias = None if op.bias is None else _channel_param(op.bias, out_shape, dtype)
    stride, padding, dilation = (
        ((op.stride,), (op.padding,), (op.dilation,)) if isinstance(op, O.Conv1d)
        else (op.stride, op.padding, op.dilation)
    )
    return MapKernel(in_shape, out_shape, dtype,
                     arraymath.Convolution(op.weight, stride, padding, dilation, op.groups, dtype, bias))


@register_kernel(O.AvgPool1d, mode="float")
@register_kernel(O.AvgPool2d, mode="float")
def _avg_pool(op: O.AvgPool2d, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    area = dtype.type(np.prod(op.kernel_size))
    pads = op.pads(in_shape)
    return MapKernel(in_shape, out_shape, dtype,
                     lambda x: arraymath.sum_pool(x, op.kernel_size, op.stride, pads) / area)


@register_kernel(O.Scale, mode="float")
def _scale(op: O.Scale, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    scale = op.scale.astype(dtype)
    return MapKernel(in_shape, out_shape, dtype, lambda x: x * scale)


@register_kernel(O.BatchNorm, mode="float")
def _batch_norm(op: O.BatchNorm, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    a = (1.0 / np.sqrt(op.var + op.eps) * op.weight)
    b = _channel_param(op.bias - op.mean * a, in_shape, dtype)
    a = _channel_param(a, in_shape, dtype)
    return MapKernel(in_shape, out_shape, dtype, lambda x: x * a + b)


@register_kernel(O.QNeuron, mode="integer")
def _integer_neuron(op: O.QNeuron, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    return IntegerNeuron(op, out_shape)


@register_kernel(O.QLinear, mode="integer")
def _integer_linear(op: O.QLinear, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    from nmcompile.ir.event_product import SpikeProduct

    weight = op.effective_weight()

    def make(w: np.ndarray) -> Apply:
        return SpikeProduct(w, op.weight_exp)

    return DelayedSum(in_shape, out_shape, np.dtype(np.int64), _linear_groups(weight, op.delay, make))


@register_kernel(O.QSparseLinear, mode="integer")
def _integer_sparse_linear(op: O.QSparseLinear, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    from scipy.sparse import csr_matrix

    matrix = csr_matrix((op.effective_values(), op.indices, op.indptr), shape=(op.out_features, op.in_features))
    transposed = matrix.T.tocsr()   # int64 sums: exact

    def apply(x: np.ndarray) -> np.ndarray:
        return fixed.floor_shift(np.asarray(x.astype(np.int64) @ transposed), op.weight_exp)

    return DelayedSum(in_shape, out_shape, np.dtype(np.int64), [(op.delay, apply)])


class IntegerConv:
    """A QConv's map: wrap_signed(floor_shift(conv(x, weight), weight_exp), wrap_bits), exact (arraymath)."""

    def __init__(self, op: O.QConv):
        self.op = op
        self.conv = arraymath.Convolution(op.weight, op.stride, op.padding, op.dilation, op.groups,
                                          np.dtype(np.int64))

    def set_engine(self, engine: str) -> None:
        self.conv.set_engine(engine)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The shift and the wrap are skipped where they are the identity: exponent 0, and |acc| provably below
        2^(wrap_bits - 1) (max|x| times the largest sum of |weight| over a kernel, shifted)."""
        acc, xmax = self.conv.exact(x)
        exp, bits = self.op.weight_exp, self.op.wrap_bits
        if exp:
            acc = fixed.floor_shift(acc, exp)
        most = xmax * self.conv.bound
        most = most << exp if exp > 0 else -(-most >> -exp)     # floor(-most / 2^k) is -ceil(most / 2^k)
        return fixed.wrap_signed(acc, bits) if bits and most >= 1 << (bits - 1) else acc


@register_kernel(O.QConv, mode="integer")
def _integer_conv(op: O.QConv, in_shape: Shape | None, out_shape: Shape, dtype: np.dtype) -> Kernel:
    return DelayedSum(in_shape, out_shape, np.dtype(np.int64), [(op.delay, IntegerConv(op))])


# QPlasticLinear's kernel lives with its learning rule in nmcompile.ir.plasticity, which registers it (this module
# never imports it). nmcompile.ir.simulate imports it, so it is registered whenever the simulator runs.
