"""Check a captured graph against the framework's own forward pass, spike for spike.

    with float64_model(model) as m:                       # the framework itself, in float64
        report = compare(m, graph, trace, spikes, "float64")
    report.mismatches, report.total

Frameworks emit spikes as float32 even in a float64 model (snnTorch's Heaviside is `.float()`); spikes are 0/1,
so casting them to float64 before the next layer is exact, and `float64_model` installs exactly that cast.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.frontend import lowering
from nmcompile.frontend.trace import Trace, call_step, prepare_model
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate


@contextlib.contextmanager
def float64_model(model) -> Iterator[object]:
    """A float64 copy of `model` whose leaf modules cast floating inputs to float64."""
    import torch

    twin = copy.deepcopy(model).double()
    handles = []

    def cast(module, args, kwargs):
        args = tuple(a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        return args, kwargs

    for module in twin.modules():
        if lowering.find(module) is not None:
            handles.append(module.register_forward_pre_hook(cast, with_kwargs=True))
    try:
        yield twin
    finally:
        for h in handles:
            h.remove()


def torch_forward(model, trace: Trace, x: np.ndarray) -> np.ndarray:
    """Run the framework model the way it was traced; x is [T, B, *shape], the result [T, B, *out]."""
    import torch

    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    prepare_model(model)
    with torch.no_grad():
        if trace.style == "step":
            state, outs = None, []
            for t in range(x.shape[0]):
                out, state = call_step(model, torch.as_tensor(x[t], dtype=dtype), state)
                outs.append(_first(out))
            result = torch.stack(outs)
        elif trace.style == "loop":
            if not np.all(x == x[:1]):
                raise UnsupportedError("this model loops over time with a constant input; give the same input at "
                                       "every step")
            result = _first(model(torch.as_tensor(x[0], dtype=dtype)))
        else:
            result = _first(model(torch.as_tensor(x, dtype=dtype)))
    return result.detach().cpu().double().numpy()


def _first(out):
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


@dataclass
class Agreement:
    mismatches: int
    total: int
    first: tuple[int, ...] | None  # (t, b, neuron...) of the first differing output

    def __str__(self) -> str:
        where = "" if self.first is None else f", first at step {self.first[0]}"
        return f"{self.mismatches} of {self.total} output values differ{where}"


def compare(model, graph: Graph, trace: Trace, x: np.ndarray, mode: str = "float64") -> Agreement:
    """Output spikes of the framework vs the IR simulation on the same input."""
    theirs = torch_forward(model, trace, x)
    steps = theirs.shape[0]
    ours = simulate(graph, x[:steps] if trace.style != "loop" else np.repeat(x[:1], steps, axis=0), mode=mode).output
    theirs = theirs.reshape(ours.shape)
    diff = ours != theirs
    first = tuple(int(i) for i in np.argwhere(diff)[0]) if diff.any() else None
    return Agreement(int(diff.sum()), int(diff.size), first)
