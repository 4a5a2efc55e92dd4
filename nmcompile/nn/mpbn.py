"""MPBNLIF: a LIF neuron with membrane-potential batch normalisation (Guo et al., ICCV 2023), for training.

One step, with the state kept on the module (call `reset_state()` between samples):

    h = beta * v + x                                  leak and input, raw membrane
    y = BN(h)                                         batch norm of the membrane, before firing
    s = [y > threshold]                               surrogate gradient (arctan) in the backward pass
    v = h * (1 - s)          (reset="zero")           the reset acts on the raw membrane
    v = h - s * reset_amount (reset="subtract")

BN is channel-wise (statistics per channel over batch, space and time steps; input [B, C, ...]) or
element-wise (per neuron; `elementwise=True`). In eval mode it uses the running statistics, which is what
`fold_mpbn` folds into a per-neuron threshold. The MPBN paper's own code fires on BN(h) / V_th > 0.5 with
V_th = 1, i.e. threshold 0.5, and resets to zero: the defaults here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _ArctanSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


def spike_fn(x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Heaviside(x) (strict: 0 at x == 0) with an arctan surrogate gradient."""
    return _ArctanSpike.apply(x, alpha)


class MPBNLIF(nn.Module):
    def __init__(self, num_features: int, *, beta: float = 0.25, threshold: float = 0.5, reset: str = "zero",
                 reset_amount: float = 1.0, elementwise: bool = False, momentum: float = 0.1, eps: float = 1e-5,
                 surrogate_alpha: float = 2.0):
        """`num_features`: channels (channel-wise) or neurons per sample (element-wise)."""
        super().__init__()
        if reset not in ("zero", "subtract"):
            raise ValueError("reset must be 'zero' or 'subtract'")
        self.num_features = num_features
        self.beta = beta
        self.threshold = threshold
        self.reset = reset
        self.reset_amount = reset_amount
        self.elementwise = elementwise
        self.momentum = momentum
        self.eps = eps
        self.surrogate_alpha = surrogate_alpha
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.v: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.v = None

    def normalise(self, h: torch.Tensor) -> torch.Tensor:
        if self.elementwise:
            flat = h.reshape(h.shape[0], -1)
            if flat.shape[1] != self.num_features:
                raise ValueError(f"MPBNLIF expects {self.num_features} neurons per sample, got {flat.shape[1]}")
        else:
            if h.shape[1] != self.num_features:
                raise ValueError(f"MPBNLIF expects {self.num_features} channels, got {h.shape[1]}")
            flat = h.reshape(h.shape[0], h.shape[1], -1)
        y = F.batch_norm(flat, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                         self.momentum, self.eps)
        return y.reshape(h.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v is None or self.v.shape != x.shape:
            self.v = torch.zeros_like(x)
        h = self.beta * self.v + x
        s = spike_fn(self.normalise(h) - self.threshold, self.surrogate_alpha)
        self.v = h * (1 - s) if self.reset == "zero" else h - s * self.reset_amount
        return s

    def extra_repr(self) -> str:
        kind = "element-wise" if self.elementwise else "channel-wise"
        return (f"{self.num_features}, beta={self.beta}, threshold={self.threshold}, reset={self.reset}, "
                f"{kind}")
