"""Sinabs networks for the frontend tests and `--model` (importable as tests.frontend.sinabs_models:<name>)."""

from __future__ import annotations

import sinabs.activation as sa
import sinabs.layers as sl
import torch
from torch import nn

INPUT_SHAPE = (12,)
DVS_INPUT_SHAPE = (2, 10, 10)


def _spike(kind: str):
    return {"single": sa.SingleSpike, "multi": sa.MultiSpike, "max1": sa.MaxSpike(1)}[kind]


def _reset(kind: str):
    return sa.MembraneSubtract() if kind == "subtract" else sa.MembraneReset()


def dense(neuron: str = "IAF", spike: str = "single", reset: str = "subtract", *, tau_syn: float | None = None,
          norm_input: bool = True, seed: int = 0, scale: float = 1.0) -> nn.Module:
    """Linear -> neuron -> Linear -> neuron on (batch, time, 12): Sinabs' non-squeeze layers."""
    torch.manual_seed(seed)

    def make(n: int) -> nn.Module:
        common = {"spike_fn": _spike(spike), "reset_fn": _reset(reset), "tau_syn": tau_syn}
        if neuron == "IAF":
            return sl.IAF(spike_threshold=torch.tensor(1.0), **common)
        return sl.LIF(tau_mem=torch.linspace(4.0, 12.0, n), spike_threshold=torch.tensor(0.8),
                      norm_input=norm_input, **common)

    model = nn.Sequential(nn.Linear(12, 16), make(16), nn.Linear(16, 6), make(6))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.add_(0.2).mul_(scale)
            layer.bias.mul_(scale)
    return model


def dvs_net(spike: str = "single", reset: str = "zero", batch_size: int = 4) -> nn.Module:
    """A DVS-style convolutional net (the layout of Sinabs' Speck examples): Conv2d -> IAFSqueeze -> SumPool2d ->
    Conv2d -> IAFSqueeze -> Flatten -> Linear -> IAFSqueeze on (batch * time, 2, 10, 10)."""
    torch.manual_seed(3)

    def iaf() -> nn.Module:
        return sl.IAFSqueeze(batch_size=batch_size, spike_fn=_spike(spike), reset_fn=_reset(reset))

    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), iaf(), sl.SumPool2d(2),
                          nn.Conv2d(4, 6, 3, bias=False), iaf(), nn.Flatten(), nn.Linear(6 * 3 * 3, 5, bias=False),
                          iaf())
    with torch.no_grad():
        for layer in (model[0], model[3], model[6]):
            layer.weight.mul_(2.5)
    return model


def trained_dense() -> nn.Module:
    """The factory `--model` builds before a state dict is loaded into it."""
    return dense("LIF", "single", "subtract")
