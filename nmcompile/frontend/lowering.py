"""How one PyTorch module becomes IR nodes, and the registry of modules the PyTorch frontend understands.

A mapper receives the module, its path in the model and the (unbatched) input and output shapes seen while
tracing, and returns a `Lowered` fragment: nodes named relative to the module path, internal edges, the node
that receives the module's input and the node whose output is the module's output. A passthrough module
(Dropout, Identity) has neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.base import Op, Provenance, Shape


@dataclass
class Lowered:
    nodes: list[tuple[str, Op]] = field(default_factory=list)
    edges: list[tuple[str, str, bool]] = field(default_factory=list)  # (src, dst, recurrent), local names
    entry: str | None = None
    exit: str | None = None
    # set when the fragment is exact only on 0/1 spikes: the refusal raised if its input is not a spiking layer
    requires_spikes: str | None = None

    @staticmethod
    def single(op: Op) -> Lowered:
        return Lowered(nodes=[("", op)], entry="", exit="")


Mapper = Callable[[object, str, Shape, Shape], Lowered]


@dataclass(frozen=True)
class Registration:
    module_type: type
    mapper: Mapper
    framework: str
    neuron: bool
    passthrough: bool = False  # the module is the identity at inference (Dropout in eval mode, Identity)


_REGISTRY: list[Registration] = []
_LOADED = False


def register(module_type: type, framework: str, neuron: bool = False,
             passthrough: bool = False) -> Callable[[Mapper], Mapper]:
    def deco(fn: Mapper) -> Mapper:
        _REGISTRY.append(Registration(module_type, fn, framework, neuron, passthrough))
        return fn

    return deco


def registry() -> list[Registration]:
    """All registrations; framework mappers are imported on first use (a missing framework is skipped)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        import importlib

        for name in ("torch_layers", "snntorch", "spikingjelly", "norse", "nmcompile_nn"):
            try:
                importlib.import_module(f"nmcompile.frontend.{name}")
            except ImportError as err:  # the framework itself is not installed
                if f"nmcompile.frontend.{name}" in str(err):
                    raise
    return _REGISTRY


def find(module: object) -> Registration | None:
    """The most specific registration for the module's class (subclasses of a registered class match)."""
    for cls in type(module).__mro__:
        for reg in registry():
            if reg.module_type is cls:
                return reg
    return None


def supported_names(neurons: bool | None = None) -> str:
    names = sorted({f"{r.framework}.{r.module_type.__name__}" for r in registry()
                    if neurons is None or r.neuron == neurons})
    return ", ".join(names)


def lower(module: object, path: str, in_shape: Shape, out_shape: Shape) -> Lowered:
    reg = find(module)
    if reg is None:
        raise UnsupportedError(
            f"module '{path}' ({type(module).__module__}.{type(module).__name__}) is not supported; "
            f"supported layers: {supported_names(neurons=False)}; neurons: {supported_names(neurons=True)}"
        )
    return reg.mapper(module, path, tuple(in_shape), tuple(out_shape))


# -- helpers for mappers ----------------------------------------------------------------------------------
def tensor(value: object) -> np.ndarray:
    """A torch tensor / number as a float64 numpy array (exact: float32 values widen losslessly)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64).numpy().copy()
    return np.asarray(value, dtype=np.float64)


def per_neuron(value: object, shape: Shape, what: str, path: str) -> np.ndarray:
    """A neuron parameter that broadcasts to the layer: scalar, per-neuron, or per-channel on conv maps."""
    array = tensor(value)
    if array.ndim == 0 or array.size == 1:
        return array.reshape(())
    for candidate in (array, array.reshape(array.shape + (1,) * (len(shape) - array.ndim))):
        try:
            if np.broadcast_shapes(candidate.shape, shape) == tuple(shape):
                return candidate
        except ValueError:
            continue
    raise UnsupportedError(f"module '{path}': {what} of shape {array.shape} does not fit the layer shape {shape}")


def prov(framework: str, path: str) -> Provenance:
    return Provenance(framework, path)


def average(pool: O.SumPool1d | O.SumPool2d, divisors: np.ndarray) -> list[Op]:
    """An average pool as IR ops: an AvgPool op where every window divides by the kernel's size, else the sum
    pool and a Scale by 1 / divisor (one per output position, or one number), exact either way."""
    if np.all(divisors == np.prod(pool.kernel_size)) and not pool.ceil_mode:
        cls = O.AvgPool2d if pool.ndim == 2 else O.AvgPool1d
        return [cls(kernel_size=pool.kernel_size, stride=pool.stride, padding=pool.padding,
                    provenance=pool.provenance)]
    scale = 1.0 / divisors if np.ptp(divisors) else np.array(1.0 / divisors.reshape(-1)[0])
    return [pool, O.Scale(scale=scale, provenance=pool.provenance)]
