"""A tiny DCLS delay network and the coincidence task it learns (importable as tests.frontend.dcls_models:<name>).

Task: input channel 0 spikes once at t0 and channel 1 once at t0 + lag; the class is 1 when lag == LAG. A neuron
without delays sees the two spikes apart; with channel 0 delayed by LAG steps relative to channel 1 they coincide,
and only the coincidence reaches the threshold. The positions (rounded) are the delays: neuron 1 delays channel 0 by
LAG steps and channel 1 by none.
"""

from __future__ import annotations

import numpy as np
import snntorch as snn
import torch
import torch.nn.functional as F
from DCLS.construct.modules import Dcls1d
from torch import nn

INPUT_SHAPE = (2,)
STEPS = 16
LAG = 4
SIZE = 8  # dilated_kernel_size: delays 0..7


class DelayNet(nn.Module):
    """Dcls1d(2 -> 2) -> Leaky; output neuron 1 spikes when lag == LAG (neuron 0 is a second, weaker detector)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.syn = Dcls1d(2, 2, kernel_count=1, dilated_kernel_size=SIZE, bias=False, version="v0")
        with torch.no_grad():  # positions as a trained model holds them: real-valued, rounding to the delays
            self.syn.weight.copy_(torch.tensor([[[0.3], [-0.2]], [[0.6], [0.6]]]))
            self.syn.P.copy_(torch.tensor([[[[2.8], [1.9]], [[3.0 - LAG - 0.3], [2.7]]]]))
        self.lif = snn.Leaky(beta=0.3, threshold=1.0, init_hidden=True, reset_mechanism="zero")

    def forward(self, x):  # x [T, B, 2] -> spikes [T, B, 2]
        h = F.pad(x.permute(1, 2, 0), (SIZE - 1, 0))
        h = self.syn(h).permute(2, 0, 1)
        return torch.stack([self.lif(h[t]) for t in range(h.shape[0])])


def delay_net() -> nn.Module:
    return DelayNet()


def coincidence_task(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x [T, N, 2] spikes and labels [N] (1 where lag == LAG, half of the samples)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(samples) % 2).astype(np.int64)
    x = np.zeros((STEPS, samples, 2))
    for n, label in enumerate(labels):
        lag = LAG if label else int(rng.choice([v for v in range(0, 7) if v != LAG]))
        t0 = int(rng.integers(0, STEPS - lag - 3))
        x[t0, n, 0] = 1
        x[t0 + lag, n, 1] = 1
    return x, labels


def accuracy(output_spikes: np.ndarray, labels: np.ndarray) -> float:
    """Predicted class 1 where output neuron 1 spiked at least once."""
    return float(((output_spikes[..., 1].sum(0) > 0).astype(np.int64) == labels).mean())
