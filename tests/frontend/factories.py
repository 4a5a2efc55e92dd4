"""Factories named by --model in the checkpoint tests (importable as tests.frontend.factories:<name>)."""

from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

INPUT_SHAPE = (6,)


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(5, 3),
                         snn.Leaky(beta=0.8, init_hidden=True))


def picklable() -> nn.Module:
    """A whole module that pickles (snnTorch neurons hold local surrogate functions and do not)."""
    from nmcompile.nn import MPBNLIF

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), MPBNLIF(5), nn.Linear(5, 3), MPBNLIF(3))


def wider() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 7), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(7, 3),
                         snn.Leaky(beta=0.8, init_hidden=True))


def with_maxpool() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 2 * 2, 3),
                         snn.Leaky(beta=0.9, init_hidden=True))


def with_relu_between() -> nn.Module:
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 4)
            self.lif = snn.Leaky(beta=0.9, init_hidden=True)

        def forward(self, x):
            return self.lif(torch.sigmoid(self.fc(x)))

    return Net()


def graded() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 3), snn.Leaky(beta=0.9, init_hidden=True, graded_spikes_factor=2.0))


def broken() -> nn.Module:
    raise RuntimeError("this factory fails on purpose")


def not_a_module():
    return 42


def rleaky() -> nn.Module:
    """snnTorch's RLeaky with reset to zero (the reset discards the next step's update: IR delayed zero)."""
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(6, 8), snn.RLeaky(beta=0.9, linear_features=8, reset_mechanism="zero",
                                                    init_hidden=True), nn.Linear(8, 3),
                         snn.Leaky(beta=0.8, init_hidden=True))


POOL_INPUT_SHAPE = (2, 8, 8)


def conv_avgpool() -> nn.Module:
    """Conv2d -> AvgPool2d -> Leaky (pooling currents) -> Conv2d -> Leaky -> Flatten -> Linear -> Leaky."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.AvgPool2d(2), _leaky(0.8),
                          nn.Conv2d(4, 3, 3, padding=1), nn.AvgPool2d(3, stride=1),
                          _leaky(0.9), nn.Flatten(), nn.Linear(3 * 2 * 2, 4),
                          _leaky(0.9))
    return _gain(model, 2.5)


def conv_maxpool() -> nn.Module:
    """Conv2d -> Leaky -> MaxPool2d (over spikes) -> Conv2d -> Leaky -> MaxPool2d -> Flatten -> Linear -> Leaky."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(0.8), nn.MaxPool2d(2),
                          nn.Conv2d(4, 3, 3, padding=1), _leaky(0.9),
                          nn.MaxPool2d(2, stride=1, padding=1), nn.Flatten(), nn.Linear(3 * 5 * 5, 4),
                          _leaky(0.9))
    return _gain(model, 2.5)


def _gain(model: nn.Module, factor: float) -> nn.Module:
    """Scale the weights up so the tiny networks spike."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(factor)
    return model


def _leaky(beta: float) -> nn.Module:
    return snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero")   # reset to zero: every target has it
