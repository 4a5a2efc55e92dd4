"""snnTorch networks that change a layout between layers (importable as tests.frontend.reshape_models:<name>)."""

from __future__ import annotations

import snntorch as snn
from torch import nn

from tests.frontend.models import gain

SHAPES = {"unflatten_into_conv": (12,), "view_input_into_conv": (72,), "rows_into_conv1d": (2, 6, 6),
          "map_into_another_map": (2, 6, 6), "linear_into_a_map": (12,)}


def _leaky() -> nn.Module:
    return snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero")


def unflatten_into_conv() -> nn.Module:
    """Linear -> Leaky (36,) -> nn.Unflatten to (4, 3, 3) -> padded Conv2d: a Reshape from a flat layer to a conv."""
    return gain(nn.Sequential(nn.Linear(12, 36), _leaky(), nn.Unflatten(1, (4, 3, 3)), nn.Conv2d(4, 3, 3, padding=1),
                              _leaky(), nn.Flatten(), nn.Linear(27, 4), _leaky()), 4.0)


class _ViewInput(nn.Module):
    """x.view(B, 2, 6, 6) on the network input, then a conv: a Reshape between an Input and a conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, stride=2)
        self.lif1 = _leaky()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(16, 4)
        self.lif2 = _leaky()

    def forward(self, x):
        return self.lif2(self.fc(self.flat(self.lif1(self.conv(x.view(x.shape[0], 2, 6, 6))))))


def view_input_into_conv() -> nn.Module:
    return gain(_ViewInput(), 4.0)


def rows_into_conv1d() -> nn.Module:
    """Conv2d -> Leaky (4, 6, 6) -> nn.Flatten(2) to (4, 36) -> Conv1d: a map read with another layout."""
    return gain(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(), nn.Flatten(2), nn.Conv1d(4, 3, 5, stride=3),
                              _leaky(), nn.Flatten(), nn.Linear(3 * 11, 4), _leaky()), 4.0)


def map_into_another_map() -> nn.Module:
    """Conv2d -> Leaky (4, 6, 6) -> Flatten -> Unflatten to (16, 3, 3) -> padded Conv2d: a map read as another map of
    the same rank (the conv's geometry is the new map's, its sources are the old map's units in C order)."""
    return gain(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(), nn.Flatten(), nn.Unflatten(1, (16, 3, 3)),
                              nn.Conv2d(16, 3, 3, padding=1), _leaky(), nn.Flatten(), nn.Linear(27, 4), _leaky()), 4.0)


def linear_into_a_map() -> nn.Module:
    """Linear -> nn.Unflatten to (4, 3, 3) -> Leaky -> padded Conv2d: a projection whose currents a Reshape lays out
    as the map of the layer it feeds (a decoder's first stage)."""
    return gain(nn.Sequential(nn.Linear(12, 36), nn.Unflatten(1, (4, 3, 3)), _leaky(), nn.Conv2d(4, 3, 3, padding=1),
                              _leaky(), nn.Flatten(), nn.Linear(27, 4), _leaky()), 4.0)
