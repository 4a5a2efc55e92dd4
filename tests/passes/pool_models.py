"""Pooling variants as snnTorch models (importable as tests.passes.pool_models:<name> by --model)."""

from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

SHAPE_1D = (2, 16)
SHAPE_2D = (2, 9, 9)


def _leaky(beta: float) -> nn.Module:
    return snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero")


def _gain(model: nn.Module, factor: float) -> nn.Module:
    """Scale the weights up so the tiny networks spike."""
    torch.manual_seed(11)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn_like(m.weight) * 0.5 + 0.1)
                m.weight.mul_(factor)
    return model


def pools_1d() -> nn.Module:
    """AvgPool1d on currents, MaxPool1d over spikes into a conv, AvgPool1d (count_include_pad=False) and a
    ceil_mode MaxPool1d into Flatten + Linear."""
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.AvgPool1d(2), _leaky(0.8),          # 16 -> 8
                          nn.MaxPool1d(2, stride=1), nn.Conv1d(4, 3, 3), _leaky(0.9),             # 8 -> 7 -> 5
                          nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False),         # 5 -> 3
                          nn.Flatten(), nn.Linear(3 * 3, 5), _leaky(0.9))
    return _gain(model, 1.5)


def pools_1d_ceil() -> nn.Module:
    """MaxPool1d with ceil_mode's partial window over spikes, into Flatten + Linear."""
    model = nn.Sequential(nn.Conv1d(2, 4, 3), _leaky(0.8),                                      # 16 -> 14
                          nn.MaxPool1d(3, stride=2, padding=1, ceil_mode=True),                  # 14 -> 8
                          nn.Flatten(), nn.Linear(4 * 8, 5), _leaky(0.9))
    return _gain(model, 1.5)


def avgpool_2d(**options) -> nn.Module:
    """Conv2d -> Leaky -> AvgPool2d(3, stride 2, **options) -> Flatten -> Linear -> Leaky."""
    pool = nn.AvgPool2d(3, stride=2, **options)
    out = pool(torch.zeros(1, 4, 9, 9)).shape[-1]
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(0.8), pool, nn.Flatten(),
                          nn.Linear(4 * out * out, 5), _leaky(0.9))
    return _gain(model, 1.5)


def avgpool_2d_ceil_no_pad() -> nn.Module:
    """ceil_mode=True, count_include_pad=False: the partial windows at the end divide by what they cover."""
    return avgpool_2d(padding=1, ceil_mode=True, count_include_pad=False)


def padded_pool_into_conv() -> nn.Module:
    """Leaky -> AvgPool2d(2, padding 1) -> Conv2d (no padding) and a padded conv before a pool on currents."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.AvgPool2d(3, stride=1), _leaky(0.8),   # 9 -> 7
                          nn.AvgPool2d(2, padding=1), nn.Conv2d(4, 3, 2), _leaky(0.9),              # 7 -> 4 -> 3
                          nn.Flatten(), nn.Linear(3 * 3 * 3, 5), _leaky(0.9))
    return _gain(model, 1.5)


def _then_linear(modules: list[nn.Module], shape: tuple[int, ...]) -> nn.Module:
    """modules -> Leaky -> Flatten -> Linear -> Leaky, the Linear sized for the modules' output on `shape`."""
    head = nn.Sequential(*modules)
    features = head(torch.zeros(1, *shape)).numel()
    return _gain(nn.Sequential(*modules, _leaky(0.8), nn.Flatten(), nn.Linear(features, 5), _leaky(0.9)), 1.5)


def padded_pool_on_currents() -> nn.Module:
    """Conv2d -> AvgPool2d(3, stride 2, padding 1): the pool's zero border is no conv output (sparse matrix)."""
    return _then_linear([nn.Conv2d(2, 4, 3), nn.AvgPool2d(3, stride=2, padding=1)], SHAPE_2D)


def ceil_pool_on_currents() -> nn.Module:
    """Conv2d -> AvgPool2d(2, ceil_mode=True): a partial window at the end of each axis (sparse matrix)."""
    return _then_linear([nn.Conv2d(2, 4, 3), nn.AvgPool2d(2, stride=2, ceil_mode=True)], SHAPE_2D)


def padded_pool_on_currents_1d() -> nn.Module:
    """Conv1d -> AvgPool1d(3, stride 1, padding 1) on currents (sparse matrix)."""
    return _then_linear([nn.Conv1d(2, 4, 3), nn.AvgPool1d(3, stride=1, padding=1)], SHAPE_1D)


def divisor_pool_into_conv() -> nn.Module:
    """AvgPool2d(count_include_pad=False) over spikes into a conv: a per-position divisor (sparse matrix)."""
    return _then_linear([nn.Conv2d(2, 4, 3), _leaky(0.8),
                         nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), nn.Conv2d(4, 3, 2)], SHAPE_2D)


def padded_pool_into_padded_conv() -> nn.Module:
    """AvgPool2d(2, padding 1) over spikes into Conv2d(padding 1) (sparse matrix)."""
    return _then_linear([nn.Conv2d(2, 4, 3), _leaky(0.8), nn.AvgPool2d(2, padding=1),
                         nn.Conv2d(4, 3, 3, padding=1)], SHAPE_2D)


def sparse_pool_into_conv() -> nn.Module:
    """Conv2d -> AvgPool2d(2, padding 1) on currents (sparse matrix) -> Leaky, read by a padded Conv2d: the flat
    layer gives the conv its (C, H, W) map back through a Reshape."""
    return _then_linear([nn.Conv2d(2, 4, 3), nn.AvgPool2d(2, padding=1), _leaky(0.8),
                         nn.Conv2d(4, 3, 3, padding=1)], SHAPE_2D)


def sparse_pool_into_conv_1d() -> nn.Module:
    """The 1-D form: Conv1d -> AvgPool1d(2, padding 1) on currents -> Leaky -> Conv1d(padding 1)."""
    return _then_linear([nn.Conv1d(2, 4, 3), nn.AvgPool1d(2, padding=1), _leaky(0.8),
                         nn.Conv1d(4, 3, 3, padding=1)], SHAPE_1D)


def sparse_pools_in_a_row() -> nn.Module:
    """Two chains without a conv form in a row: the second (a padded pool into a padded conv) reads the layer the
    first made flat through its Reshape, and makes the next layer flat in turn, read by a conv."""
    return _then_linear([nn.Conv2d(2, 4, 3), nn.AvgPool2d(2, padding=1), _leaky(0.8),
                         nn.AvgPool2d(2, padding=1), nn.Conv2d(4, 3, 3, padding=1), _leaky(0.8),
                         nn.Conv2d(3, 3, 3, padding=1)], SHAPE_2D)
