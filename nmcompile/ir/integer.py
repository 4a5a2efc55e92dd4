"""Integer IR ops: the golden model every backend must equal bit for bit (docs/semantics.md, "Integer").

Projections deliver at step t + delay (hardware: delay >= 1). Neurons follow Lava 0.10's bit-accurate
CUBA LIF (`nmcompile.ir.fixed`), with the extension options a target may declare (reset by subtraction,
delayed reset, refractory period, '>=' comparison, a non-spiking readout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmcompile.ir import fixed
from nmcompile.ir.base import Op, Shape, array_field, as_pair, as_shape, broadcastable, conv_out_len, optional_field
from nmcompile.ir.neurons import COMPARISONS, RESET_MODES


def _check_delay(delay: np.ndarray, weight_shape: tuple[int, ...]) -> None:
    if not broadcastable(delay, weight_shape):
        raise ValueError(f"delay of shape {delay.shape} does not broadcast to the weights {weight_shape}")
    if delay.size and delay.min() < 0:
        raise ValueError("delays must be >= 0 steps")


@dataclass(frozen=True, kw_only=True, eq=False)
class QLinear(Op):
    """Integer dense projection (Lava Dense / DelayDense, bit-accurate):

        W'     = prepared_weights(weight, sign_mode, num_weight_bits)      (clip + truncate, fixed.py)
        a_j[t] = sum over d of floor_shift( sum_{i: delay[j,i] = d} W'[j,i] * x_i[t - d], weight_exp )

    `x` is binary spikes or graded integers; `delay` (steps) broadcasts to the weight shape.
    """

    role = "projection"
    numeric = "integer"
    weighted = True
    storage = "dense"
    weight: np.ndarray = array_field(np.int64)
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str = "mixed"
    delay: np.ndarray = array_field(np.int64, default=1)

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is not None and tuple(in_shape) != (self.weight.shape[1],):
            raise ValueError(f"weight expects input ({self.weight.shape[1]},) but receives {tuple(in_shape)}")
        return (self.weight.shape[0],)

    def check(self) -> None:
        if self.weight.ndim != 2:
            raise ValueError(f"weight must be 2-D (out, in), got {self.weight.shape}")
        if self.sign_mode not in fixed.SIGN_MODES:
            raise ValueError(f"sign_mode must be one of {fixed.SIGN_MODES}, got {self.sign_mode!r}")
        if not 1 <= self.num_weight_bits <= 9:
            raise ValueError(f"num_weight_bits must be in 1..9, got {self.num_weight_bits}")
        _check_delay(self.delay, self.weight.shape)

    def effective_weight(self) -> np.ndarray:
        return fixed.prepared_weights(self.weight, self.sign_mode, self.num_weight_bits)


@dataclass(frozen=True, kw_only=True, eq=False)
class QConv(Op):
    """Integer convolution, 1-D (C, L) or 2-D (C, H, W), PyTorch cross-correlation orientation:

        a[t + delay] = wrap(floor_shift(conv(x[t], weight), weight_exp), wrap_bits)

    Lava's fixed-point Conv has weight_exp = 0 and wraps its output to 24 bits (wrap_bits = 0: no wrap).
    """

    role = "projection"
    numeric = "integer"
    weighted = True
    storage = "conv"
    weight: np.ndarray = array_field(np.int64)
    stride: tuple[int, ...] = (1, 1)
    padding: tuple[int, ...] = (0, 0)
    dilation: tuple[int, ...] = (1, 1)
    groups: int = 1
    weight_exp: int = 0
    wrap_bits: int = 24
    delay: int = 1

    def __post_init__(self) -> None:
        spatial = max(np.ndim(self.weight) - 2, 1)
        for name in ("stride", "padding", "dilation"):
            value = getattr(self, name)
            pair = as_pair(value, name) if spatial == 2 else (int(np.asarray(value).reshape(-1)[0]),)
            object.__setattr__(self, name, pair)
        super().__post_init__()

    @property
    def spatial_dims(self) -> int:
        return self.weight.ndim - 2

    def out_shape(self, in_shape: Shape | None) -> Shape:
        nd = self.spatial_dims
        if in_shape is None or len(in_shape) != nd + 1:
            raise ValueError(f"expects an input with {nd} spatial dims plus channels, got {in_shape}")
        if in_shape[0] != self.weight.shape[1] * self.groups:
            raise ValueError(f"weight expects {self.weight.shape[1] * self.groups} channels, got {in_shape[0]}")
        out = [
            conv_out_len(in_shape[1 + k], self.weight.shape[2 + k], self.stride[k], self.padding[k], self.dilation[k])
            for k in range(nd)
        ]
        if min(out) <= 0:
            raise ValueError(f"input {in_shape} is too small for the kernel")
        return (self.weight.shape[0], *out)

    def check(self) -> None:
        if self.weight.ndim not in (3, 4):
            raise ValueError(f"weight must be 3-D or 4-D, got {self.weight.shape}")
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            raise ValueError(f"groups={self.groups} must divide {self.weight.shape[0]} output channels")
        if self.delay < 0:
            raise ValueError("delay must be >= 0 steps")
        if self.wrap_bits < 0:
            raise ValueError("wrap_bits must be >= 0")


@dataclass(frozen=True, kw_only=True, eq=False)
class QNeuron(Op):
    """Integer CUBA LIF (Lava 0.10 PyLifModelBitAcc) plus declared extension options:

        u = wrap_current( trunc12(u * (4096 - (du + 1))) + (a << 6) )
        v = clip_voltage( trunc12(v * (4096 - dv)) + u + (bias_mant << bias_exp) )
        s = [v cmp (vth << 6)]                           cmp: '>' (Lava) or '>='; vth < 0 on targets with
                                                         signed thresholds (Lava's is unsigned)
        zero: v = 0 where s;  subtract: v -= (vth << 6) where s;  none: no reset
        delayed timing: the reset of a spike at t is applied at t+1 (subtract after the decay; zero
                        replaces the whole update of t+1 by 0)
        refractory R:   for R steps after a spike v is held at 0 and cannot spike (u keeps integrating)
        spiking=False:  a readout; the output is v instead of spikes (no threshold, no reset)
        start_step s:   for t < s no update: u, v, the refractory counter stay at their initial values, inputs of
                        those steps are discarded, the output is 0 (no spikes; a readout too) (nmcompile.ir.neurons)
    """

    role = "neuron"
    numeric = "integer"
    shape: Shape
    du: np.ndarray = array_field(np.int64, default=4095)
    dv: np.ndarray = array_field(np.int64, default=0)
    vth: np.ndarray = array_field(np.int64, default=1)
    bias_mant: np.ndarray = array_field(np.int64, default=0)
    bias_exp: np.ndarray = array_field(np.int64, default=0)
    compare: str = ">"
    reset_mode: str = "zero"
    reset_timing: str = "immediate"
    refractory: int = 0
    spiking: bool = True
    u_init: np.ndarray = array_field(np.int64, default=0)
    v_init: np.ndarray = array_field(np.int64, default=0)
    start_step: int = optional_field(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", as_shape(self.shape))
        super().__post_init__()

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is not None and tuple(in_shape) != self.shape:
            raise ValueError(f"layer shape {self.shape} but receives {tuple(in_shape)}")
        return self.shape

    def check(self) -> None:
        for key, array in self.array_params().items():
            if not broadcastable(array, self.shape):
                raise ValueError(f"parameter '{key}' of shape {array.shape} does not broadcast to {self.shape}")
        if np.any(self.du < -1) or np.any(self.du > fixed.DECAY_UNITY - 1):
            raise ValueError("du must be in -1..4095 (Lava adds 1: du=4095 clears u every step)")
        if np.any(self.dv < 0) or np.any(self.dv > fixed.DECAY_UNITY):
            raise ValueError("dv must be in 0..4096")
        if self.compare not in COMPARISONS:
            raise ValueError(f"compare must be one of {COMPARISONS}")
        if self.reset_mode not in RESET_MODES:
            raise ValueError(f"reset_mode must be one of {RESET_MODES}")
        if self.reset_timing not in ("immediate", "delayed"):
            raise ValueError("reset_timing must be 'immediate' or 'delayed'")
        if self.refractory < 0 or (self.refractory and self.reset_timing != "immediate"):
            raise ValueError("refractory must be >= 0 and needs reset_timing 'immediate'")
        for key in ("u_init", "v_init"):
            value = getattr(self, key)
            if np.any(np.abs(value) >= fixed.UV_LIMIT):
                raise ValueError(f"{key} must fit in 24 bits")
        if self.start_step < 0:
            raise ValueError("start_step must be >= 0 steps")


TRACE_MAX = 255                   # STDP traces are 8-bit unsigned


@dataclass(frozen=True, kw_only=True, eq=False)
class QPlasticLinear(QLinear):
    """A QLinear whose weight mantissas learn by pair-based STDP with 8-bit integer traces (docs/semantics.md §3.5).

    One delay d for the whole projection; the weights are used as in QLinear (they must be unchanged by
    `prepared_weights`). Per sample, after the neuron layer it feeds has produced its spikes post_i(t):

        pre_j  = x_j(t - d)                                   (the spikes this projection delivered at t)
        xp_j   = min(xp_j - (xp_j >> pre_decay) + pre_increment * pre_j, 255)
        W_ij   = max(W_ij - (yp_i >> ltd_shift), w_min)        where pre_j     (yp of step t-1: depression)
        W_ij   = min(W_ij + (xp_j >> ltp_shift), w_max)        where post_i    (xp including step t: potentiation)
        yp_i   = min(yp_i - (yp_i >> post_decay) + post_increment * post_i, 255)
    """

    pre_increment: int = 128
    post_increment: int = 128
    pre_decay: int = 2
    post_decay: int = 2
    ltp_shift: int = 5
    ltd_shift: int = 5
    w_min: int = -128
    w_max: int = 127

    def check(self) -> None:
        super().check()
        if self.delay.ndim and np.ptp(self.delay):
            raise ValueError("a plastic projection has one delay for all synapses")
        if int(self.delay.reshape(-1)[0]) < 1:
            raise ValueError("a plastic projection needs a delay >= 1")
        for key in ("pre_increment", "post_increment"):
            if not 0 <= getattr(self, key) <= TRACE_MAX:
                raise ValueError(f"{key} must be in 0..{TRACE_MAX}")
        for key in ("pre_decay", "post_decay", "ltp_shift", "ltd_shift"):
            if not 0 <= getattr(self, key) <= 7:
                raise ValueError(f"{key} must be in 0..7")
        if not -128 <= self.w_min <= self.w_max <= 127:
            raise ValueError(f"weight bounds must satisfy -128 <= w_min <= w_max <= 127, got {self.w_min}, "
                             f"{self.w_max}")
        if not np.array_equal(self.effective_weight(), self.weight):
            raise ValueError("plastic weights must be used as stored (mixed sign mode, 9 weight bits)")
        if self.weight.size and (self.weight.min() < self.w_min or self.weight.max() > self.w_max):
            raise ValueError(f"initial weights {int(self.weight.min())}..{int(self.weight.max())} lie outside "
                             f"[w_min, w_max] = [{self.w_min}, {self.w_max}]")

    @property
    def scalar_delay(self) -> int:
        return int(self.delay.reshape(-1)[0])


STDP_PARAMETERS = ("pre_increment", "post_increment", "pre_decay", "post_decay", "ltp_shift", "ltd_shift", "w_min",
                   "w_max")
