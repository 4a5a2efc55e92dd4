"""A tiny DCLS delay network and the coincidence task it learns (importable as tests.frontend.dcls_models:<name>).

Task: input channel 0 spikes once at t0 and channel 1 once at t0 + lag; the class is 1 when lag == LAG. A neuron
without delays sees the two spikes apart; with channel 0 delayed by LAG steps relative to channel 1 they coincide,
and only the coincidence reaches the threshold. Training learns positions whose rounded values delay channel 0 by LAG
steps more than channel 1.
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
SIGMA = 1.5  # initial spread of the Gaussian kernel, annealed to DCLS' minimum (0.27) during training
SIZE = 9  # dilated_kernel_size: delays 0..8 (odd: every clamped position lies inside the kernel)


class DelayNet(nn.Module):
    """Dcls1d(2 -> 1) -> Leaky(beta=0): the neuron fires only when both weighted inputs arrive in the same step.
    Trained with DCLS' Gaussian kernel construction (positions get gradients from its spread)."""

    def __init__(self):
        super().__init__()
        self.syn = Dcls1d(2, 1, kernel_count=1, dilated_kernel_size=SIZE, bias=False, version="gauss")
        with torch.no_grad():  # every synapse starts at the same position: one delay for all
            self.syn.weight.fill_(0.6)
            self.syn.P.zero_()
            self.syn.SIG.fill_(SIGMA)
        self.lif = snn.Leaky(beta=0.0, threshold=1.0, init_hidden=True, reset_mechanism="zero")

    def forward(self, x):  # x [T, B, 2] -> spikes [T, B, 1]
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
    """Predicted class 1 where the output neuron spiked at least once."""
    return float(((output_spikes[..., 0].sum(0) > 0).astype(np.int64) == labels).mean())


def train(model: DelayNet, epochs: int = 60) -> DelayNet:
    """Learn weights and positions on the coincidence task (surrogate gradients through the spikes, positions
    through the Gaussian kernel whose spread is annealed to its minimum over the first 70% of the epochs)."""
    from nmcompile.frontend.snntorch import reset_states

    torch.manual_seed(0)
    x, labels = coincidence_task(64, seed=1)
    xs, target = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.float32)
    opt = torch.optim.Adam([{"params": [model.syn.weight], "lr": 0.03}, {"params": [model.syn.P], "lr": 0.2}])
    for epoch in range(epochs):
        with torch.no_grad():
            model.syn.SIG.fill_(max(SIGMA * (1 - epoch / (0.7 * epochs)), 0.0))
        reset_states(model)
        counts = model(xs).sum(0)[:, 0]
        loss = F.binary_cross_entropy_with_logits(4.0 * (counts - 0.5), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.syn.clamp_parameters()
    reset_states(model)
    return model
