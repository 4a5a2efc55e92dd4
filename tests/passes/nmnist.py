"""The snnTorch tutorial's N-MNIST network (input 2x34x34), pooling after the neurons: Conv(2->c1, 5) -> Leaky ->
AvgPool 2 -> Conv(c1->c2, 5) -> Leaky -> AvgPool 2 -> Linear(25 c2 -> 10) -> Leaky; random weights, reset to zero
(the loihi2 neuron). c1, c2 = 12, 32 is the tutorial's (14,682 neurons); 48, 128 the 4x wider variant."""

from __future__ import annotations

import torch
from torch import nn

SHAPE = (2, 34, 34)


class NMnist(nn.Module):
    def __init__(self, c1: int = 12, c2: int = 32, beta: float = 0.5):
        super().__init__()
        import snntorch as snn

        self.conv1, self.lif1 = nn.Conv2d(2, c1, 5), snn.Leaky(beta=beta, reset_mechanism="zero")
        self.pool1, self.pool2 = nn.AvgPool2d(2), nn.AvgPool2d(2)
        self.conv2, self.lif2 = nn.Conv2d(c1, c2, 5), snn.Leaky(beta=beta, reset_mechanism="zero")
        self.fc, self.lif3 = nn.Linear(c2 * 5 * 5, 10), snn.Leaky(beta=beta, reset_mechanism="zero")

    def forward(self, x):
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        out = []
        for step in range(x.size(0)):
            spk1, mem1 = self.lif1(self.conv1(x[step]), mem1)
            spk2, mem2 = self.lif2(self.conv2(self.pool1(spk1)), mem2)
            spk3, mem3 = self.lif3(self.fc(self.pool2(spk2).flatten(1)), mem3)
            out.append(spk3)
        return torch.stack(out)


def nmnist_graph(c1: int = 12, c2: int = 32, seed: int = 0):
    """The network traced into the IR (random weights from `seed`)."""
    from nmcompile.frontend.trace import graph_from_module

    torch.manual_seed(seed)
    graph, _ = graph_from_module(NMnist(c1, c2), SHAPE)
    graph.name = "nmnist" if (c1, c2) == (12, 32) else f"nmnist_{c1}_{c2}"
    return graph
