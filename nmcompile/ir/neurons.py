"""Float neuron ops. One step t of a spiking neuron layer (docs/semantics.md gives the full contract):

    I   = x[t]                                   (LIF, IF)
    i   = alpha*i + syn_gain*x[t];  I = i        (CubaLIF; i is the current that drives v this step)
    h   = beta*v + gain*I + bias                 (IF: beta = 1)
    delayed timing:   p = [v cmp threshold]      (v is the stored, not yet reset, membrane of step t-1)
                      subtract: h -= p*threshold;   zero: h = v_reset where p
    snntorch_immediate timing: as delayed for p and h, then after firing v = h + p*threshold - s*threshold
    refractory:       while the counter runs, h = v_reset and no spike
    s   = [h cmp threshold]                      (cmp is '>' or '>=')
    immediate timing: zero: v = v_reset where s; subtract: v = h - s*threshold; none: v = h
    delayed timing:   v = h

Every array parameter broadcasts to the layer `shape` (scalar, per-channel (C,1,1) or per-neuron).

Start step s (`start_step`, default 0): in the steps t < s the layer does not update. Its state (v, i, the refractory
counter, a pending reset) stays at its initial value, an input delivered in those steps is discarded, and its output
is 0 (no spikes; a readout outputs 0 too); from step s on it updates as above. The retime pass sets
s = the step at which the layer's first input arrives on hardware, so the retimed layer's output at t + s is the
source layer's at t even where the source layer changes on its own before any input (a non-zero v_init that leaks,
a bias, a threshold at or below rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nmcompile.ir.base import Op, Shape, array_field, as_shape, broadcastable, optional_field

COMPARISONS = (">", ">=")
RESET_MODES = ("zero", "subtract", "none")
RESET_TIMINGS = ("immediate", "delayed", "snntorch_immediate")


@dataclass(frozen=True, kw_only=True, eq=False)
class NeuronOp(Op, abstract=True):
    """Fields shared by every neuron layer; see the module docstring for the update."""

    role = "neuron"
    spiking: ClassVar[bool] = True
    shape: Shape
    gain: np.ndarray = array_field(np.float64, default=1.0)
    bias: np.ndarray = array_field(np.float64, default=0.0)
    threshold: np.ndarray = array_field(np.float64, default=1.0)
    compare: str = ">"
    reset_mode: str = "zero"
    v_reset: np.ndarray = array_field(np.float64, default=0.0)
    reset_timing: str = "immediate"
    refractory: int = 0
    v_init: np.ndarray = array_field(np.float64, default=0.0)
    start_step: int = optional_field(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", as_shape(self.shape))
        super().__post_init__()

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def decay(self) -> np.ndarray:
        """Membrane decay beta (1 for IF)."""
        return np.ones(())

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is not None and tuple(in_shape) != self.shape:
            raise ValueError(f"layer shape {self.shape} but receives {tuple(in_shape)}")
        return self.shape

    def check(self) -> None:
        if any(d <= 0 for d in self.shape):
            raise ValueError(f"shape {self.shape} has a non-positive dimension")
        for key, array in self.array_params().items():
            if not broadcastable(array, self.shape):
                raise ValueError(f"parameter '{key}' of shape {array.shape} does not broadcast to {self.shape}")
        if self.compare not in COMPARISONS:
            raise ValueError(f"compare must be one of {COMPARISONS}, got {self.compare!r}")
        if self.reset_mode not in RESET_MODES:
            raise ValueError(f"reset_mode must be one of {RESET_MODES}, got {self.reset_mode!r}")
        if self.reset_timing not in RESET_TIMINGS:
            raise ValueError(f"reset_timing must be one of {RESET_TIMINGS}, got {self.reset_timing!r}")
        if self.reset_timing == "snntorch_immediate" and self.reset_mode != "subtract":
            raise ValueError("reset_timing 'snntorch_immediate' only applies to reset_mode 'subtract'")
        if self.refractory < 0:
            raise ValueError("refractory must be >= 0 steps")
        if self.refractory and self.reset_timing != "immediate":
            raise ValueError("a refractory period needs reset_timing 'immediate'")
        if self.start_step < 0:
            raise ValueError("start_step must be >= 0 steps")


@dataclass(frozen=True, kw_only=True, eq=False)
class LIF(NeuronOp):
    """Leaky integrate-and-fire: h = beta*v + gain*x + bias."""

    beta: np.ndarray = array_field(np.float64, default=1.0)

    def decay(self) -> np.ndarray:
        return self.beta


@dataclass(frozen=True, kw_only=True, eq=False)
class IF(NeuronOp):
    """Integrate-and-fire: h = v + gain*x + bias."""


@dataclass(frozen=True, kw_only=True, eq=False)
class CubaLIF(NeuronOp):
    """Current-based LIF: i = alpha*i + syn_gain*x;  h = beta*v + gain*i + bias."""

    alpha: np.ndarray = array_field(np.float64, default=0.0)
    syn_gain: np.ndarray = array_field(np.float64, default=1.0)
    beta: np.ndarray = array_field(np.float64, default=1.0)
    i_init: np.ndarray = array_field(np.float64, default=0.0)

    def decay(self) -> np.ndarray:
        return self.beta


@dataclass(frozen=True, kw_only=True, eq=False)
class LI(NeuronOp):
    """Leaky integrator readout (no spikes; its output is the membrane): v = beta*v + gain*x + bias."""

    spiking: ClassVar[bool] = False
    beta: np.ndarray = array_field(np.float64, default=1.0)

    def decay(self) -> np.ndarray:
        return self.beta

    def check(self) -> None:
        super().check()
        if self.reset_mode != "none":
            raise ValueError("a leaky integrator readout does not spike, so reset_mode must be 'none'")


@dataclass(frozen=True, kw_only=True, eq=False)
class CubaLI(NeuronOp):
    """Current-based leaky integrator readout (no spikes): i = alpha*i + syn_gain*x;  v = beta*v + gain*i + bias."""

    spiking: ClassVar[bool] = False
    alpha: np.ndarray = array_field(np.float64, default=0.0)
    syn_gain: np.ndarray = array_field(np.float64, default=1.0)
    beta: np.ndarray = array_field(np.float64, default=1.0)
    i_init: np.ndarray = array_field(np.float64, default=0.0)

    def decay(self) -> np.ndarray:
        return self.beta

    def check(self) -> None:
        super().check()
        if self.reset_mode != "none":
            raise ValueError("a leaky integrator readout does not spike, so reset_mode must be 'none'")


@dataclass(frozen=True, kw_only=True, eq=False)
class MPBNLIF(NeuronOp):
    """LIF with membrane-potential batch norm before firing (pre-fold; `fold_mpbn` removes it).

        h = beta*v + gain*x + bias
        y = (h - bn_mean) / sqrt(bn_var + bn_eps) * bn_weight + bn_bias
        s = [y cmp threshold]                    (threshold is in the normalised domain)
        zero: v = v_reset where s;  subtract: v = h - s*reset_amount;  none: v = h   (raw domain)

    BN parameters broadcast to `shape`: (C,1,1) channel-wise on conv maps, (N,) or full shape element-wise.
    Only immediate reset timing is defined for this op.
    """

    removed_by = "fold_mpbn"

    beta: np.ndarray = array_field(np.float64, default=1.0)
    bn_mean: np.ndarray = array_field(np.float64, default=0.0)
    bn_var: np.ndarray = array_field(np.float64, default=1.0)
    bn_weight: np.ndarray = array_field(np.float64, default=1.0)
    bn_bias: np.ndarray = array_field(np.float64, default=0.0)
    bn_eps: float = 1e-5
    reset_amount: np.ndarray = array_field(np.float64, default=1.0)

    def decay(self) -> np.ndarray:
        return self.beta

    def check(self) -> None:
        super().check()
        if self.reset_timing != "immediate":
            raise ValueError("MPBNLIF supports only reset_timing 'immediate'")
        if np.any(self.bn_var < 0) or not self.bn_eps > 0:
            raise ValueError("bn_var must be >= 0 and bn_eps > 0")
