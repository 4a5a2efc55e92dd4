"""Rest: whether a neuron layer changes on its own before its first input arrives.

A neuron is at rest when its initial state is a fixed point of its update without input: one step of the
simulator's own kernel (float or integer, the op's semantics exactly) from the initial state with zero input
changes none of its state variables (v, i or u, the refractory counter) and does not fire it. A layer at rest
can be started late without any mechanism (holding it changes nothing); any other layer needs a start step
(docs/semantics.md), or is refused where the target has none.
"""

from __future__ import annotations

import numpy as np

from nmcompile.ir.base import Op, Shape
from nmcompile.ir.kernels import make_kernel


def restless_neurons(op: Op, shape: Shape) -> np.ndarray:
    """Flat indices of the neurons that change state or fire in one step without input."""
    kernel = make_kernel(op, shape, shape, "integer" if op.numeric == "integer" else "float64")
    kernel.reset(1)
    before = {k: np.array(getattr(kernel, k)) for k in kernel.state_names}
    out = kernel.step(np.zeros((1, *shape), dtype=kernel.dtype))
    changed = (out != 0) if op.spiking else np.zeros(out.shape, dtype=bool)
    for k, value in before.items():
        changed = changed | (np.asarray(getattr(kernel, k)) != value)
    refractory = getattr(kernel, "refractory_left", None)
    if refractory is not None:
        changed = changed | (refractory != 0)
    return np.flatnonzero(changed.reshape(-1))


def at_rest(op: Op, shape: Shape) -> bool:
    """Whether no neuron of the layer changes state or fires without input."""
    return restless_neurons(op, shape).size == 0
