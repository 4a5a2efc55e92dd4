"""The snnTorch tutorial's N-MNIST network (tutorial 7), with the pools after the neurons, as model factories
(`--model tests.backends.nmnist:NAME`, input (2, 34, 34)):

    Conv2d(2, 12, 5) -> Leaky -> AvgPool2d(2) -> Conv2d(12, 32, 5) -> Leaky -> AvgPool2d(2) -> Flatten
        -> Linear(800, 10) -> Leaky                          12x30x30 + 32x11x11 + 10 = 14,682 neurons

Each pool is fused into the convolution or linear layer after it (a 10x10 kernel of stride 2, a 3872 -> 10
matrix). `wide` has 4x the channels (48 and 128), reset to zero. Weights are random, scaled so that every layer fires.
"""

from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

INPUT_SHAPE = (2, 34, 34)


def build(channels: tuple[int, int] = (12, 32), reset: str = "subtract", seed: int = 0) -> nn.Module:
    c1, c2 = channels
    torch.manual_seed(seed)
    leaky = lambda: snn.Leaky(beta=0.5, reset_mechanism=reset, init_hidden=True)  # noqa: E731
    model = nn.Sequential(nn.Conv2d(2, c1, 5), leaky(), nn.AvgPool2d(2), nn.Conv2d(c1, c2, 5), leaky(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(c2 * 5 * 5, 10), leaky())
    with torch.no_grad():
        for module, mean, std in ((model[0], 0.3, 1.4), (model[3], 0.1, 2.2), (model[7], 0.2, 3.0)):
            scale = module.weight[0].numel() ** 0.5
            module.weight.normal_(mean / scale, std / scale)
            module.bias.normal_(0.0, 0.05)
    return model


def subtract() -> nn.Module:
    """snnTorch's default reset: subtract the threshold, delayed by one step."""
    return build(reset="subtract")


def zero() -> nn.Module:
    return build(reset="zero")


def wide() -> nn.Module:
    """4x the channels (48 and 128), reset to zero (every target has it)."""
    return build(channels=(48, 128), reset="zero")
