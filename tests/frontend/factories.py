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
