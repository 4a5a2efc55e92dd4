"""Random-weight networks in every supported framework and forward style, for the frontend tests.

Weights are scaled up from PyTorch's defaults so that neurons fire often and every reset path is exercised.
"""

from __future__ import annotations

import torch
from torch import nn


def gain(model: nn.Module, factor: float = 3.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                module.weight.normal_(0.0, factor / module.weight[0].numel() ** 0.5)
                if module.bias is not None:
                    module.bias.normal_(0.05, 0.1)
    return model


# -- snnTorch -------------------------------------------------------------------------------------------
def snntorch_dense(neuron: str, reset: str, delay: bool, recurrent: str | None = None) -> nn.Module:
    import snntorch as snn

    kwargs = dict(reset_mechanism=reset, reset_delay=delay, init_hidden=True)

    def make(n: int) -> nn.Module:
        if neuron == "Leaky":
            return snn.Leaky(beta=torch.rand(n) * 0.5 + 0.5, threshold=torch.rand(n) * 0.5 + 0.75, **kwargs)
        if neuron == "Synaptic":
            return snn.Synaptic(alpha=0.6, beta=0.85, threshold=1.0, **kwargs)
        if neuron == "RLeaky" and recurrent == "one_to_one":
            return snn.RLeaky(beta=0.85, all_to_all=False, V=torch.rand(n) * 0.6, **kwargs)
        if neuron == "RLeaky":
            return snn.RLeaky(beta=0.85, linear_features=n, **kwargs)
        return snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=n, **kwargs)

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(12, 20), make(20), nn.Linear(20, 6), make(6))
    return gain(model)


class SnnTorchConv(nn.Module):
    """Conv -> Leaky -> AvgPool -> Conv -> Leaky -> Flatten -> Linear -> Leaky, looping over a [T, B, ...] input."""

    def __init__(self):
        super().__init__()
        import snntorch as snn

        self.conv1 = nn.Conv2d(2, 6, 3, padding=1)
        self.lif1 = snn.Leaky(beta=0.8, reset_mechanism="zero")
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(6, 4, 3)
        self.lif2 = snn.Leaky(beta=0.9)
        self.fc = nn.Linear(4 * 2 * 2, 5)
        self.lif3 = snn.Leaky(beta=0.9, reset_delay=False)

    def forward(self, x):
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        out = []
        for step in range(x.size(0)):
            spk1, mem1 = self.lif1(self.conv1(x[step]), mem1)
            spk2, mem2 = self.lif2(self.conv2(self.pool(spk1)), mem2)
            spk3, mem3 = self.lif3(self.fc(spk2.flatten(1)), mem3)
            out.append(spk3)
        return torch.stack(out), mem3


class SnnTorchExplicitRecurrent(nn.Module):
    """A recurrent Linear written out in the loop, plus a residual sum; constant input every step."""

    def __init__(self, steps: int = 50):
        super().__init__()
        import snntorch as snn

        self.steps = steps
        self.fc1 = nn.Linear(12, 16)
        self.rec = nn.Linear(16, 16, bias=False)
        self.lif1 = snn.Leaky(beta=0.9)
        self.fc2 = nn.Linear(16, 16)
        self.lif2 = snn.Leaky(beta=0.8, reset_mechanism="zero")
        self.fc3 = nn.Linear(16, 4)
        self.lif3 = snn.Synaptic(alpha=0.5, beta=0.8)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        syn3, mem3 = self.lif3.init_synaptic()
        spk1 = torch.zeros(x.shape[0], 16)
        out = []
        for _ in range(self.steps):
            spk1, mem1 = self.lif1(self.fc1(x) + self.rec(spk1), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1) + 0.5 * spk1, mem2)
            spk3, syn3, mem3 = self.lif3(self.fc3(spk2), syn3, mem3)
            out.append(spk3)
        return torch.stack(out)


# -- SpikingJelly ---------------------------------------------------------------------------------------
def snntorch_rsynaptic_loop(reset: str, n_in: int = 12, n: int = 20, seed: int = 5) -> nn.Module:
    """RSynaptic with reset_delay=False must pass its state explicitly (snnTorch crashes with init_hidden)."""
    import snntorch as snn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(n_in, n)
            self.lif1 = snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=n, reset_mechanism=reset,
                                      reset_delay=False)

        def forward(self, x):
            # snnTorch needs real zero tensors here: its reset_delay=False path reads the spk argument
            spk, syn, mem = (torch.zeros(x.shape[1], n, dtype=x.dtype) for _ in range(3))
            out = []
            for step in range(x.shape[0]):
                spk, syn, mem = self.lif1(self.fc1(x[step]), spk, syn, mem)
                out.append(spk)
            return torch.stack(out)

    torch.manual_seed(seed)
    return gain(Net())


def spikingjelly_net(kind: str, v_reset: float | None, decay_input: bool = True, conv: bool = False) -> nn.Module:
    from spikingjelly.activation_based import layer, neuron

    def make():
        if kind == "IF":
            return neuron.IFNode(v_threshold=1.0, v_reset=v_reset)
        if kind == "LIF":
            return neuron.LIFNode(tau=3.0, decay_input=decay_input, v_reset=v_reset)
        return neuron.ParametricLIFNode(init_tau=2.5, decay_input=decay_input, v_reset=v_reset)

    torch.manual_seed(2)
    if conv:
        model = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), make(), layer.AvgPool2d(2), layer.Flatten(),
                              layer.Linear(4 * 3 * 3, 5), make())
        return gain(model, 6.0)
    model = nn.Sequential(layer.Linear(12, 20), make(), layer.Linear(20, 6), make())
    return gain(model)


# -- Norse ----------------------------------------------------------------------------------------------
def norse_net(kind: str) -> nn.Module:
    import norse.torch as nt

    def make(n):
        if kind == "LIFBoxCell":
            return nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(150.0), v_th=torch.tensor(0.3)))
        if kind == "LIFCell":
            return nt.LIFCell(nt.LIFParameters(tau_syn_inv=torch.tensor(300.0), tau_mem_inv=torch.tensor(200.0),
                                               v_th=torch.tensor(0.2)))
        if kind == "IAFCell":
            return nt.IAFCell(nt.IAFParameters(v_th=torch.tensor(1.0)))
        return nt.LIBoxCell()

    torch.manual_seed(3)
    last = make(6) if kind != "LIBoxCell" else nt.LIBoxCell()
    first = make(20) if kind != "LIBoxCell" else nt.LIFBoxCell()
    return gain(nt.SequentialState(nn.Linear(12, 20), first, nn.Linear(20, 6), last), 4.0)


# -- nmcompile.nn ---------------------------------------------------------------------------------------
def mpbn_net(elementwise: bool = False) -> nn.Module:
    from nmcompile.nn import MPBNLIF

    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), MPBNLIF(4 if not elementwise else 4 * 6 * 6,
                                                                  elementwise=elementwise),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 5), MPBNLIF(5, reset="subtract", reset_amount=0.7))
    gain(model)
    with torch.no_grad():  # trained-looking statistics, including a negative and a tiny gamma
        for m in model.modules():
            if isinstance(m, MPBNLIF):
                m.running_mean.uniform_(-0.2, 0.4)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.weight[0] = -0.8
                m.bias.uniform_(-0.2, 0.2)
    return model


def norse_conv() -> nn.Module:
    import norse.torch as nt
    from norse.torch.functional.reset import reset_subtract

    torch.manual_seed(6)
    p = nt.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0), v_th=torch.tensor(0.3), reset_method=reset_subtract)
    return gain(nt.SequentialState(nn.Conv2d(2, 4, 3, padding=1), nt.LIFBoxCell(p), nn.AvgPool2d(2), nn.Flatten(),
                                   nn.Linear(36, 5), nt.LIFCell(nt.LIFParameters(v_th=torch.tensor(0.2)))), 4.0)


class RecurrentLoop(nn.Module):
    """Explicit recurrence around a framework neuron, looping over a [T, B, ...] input."""

    def __init__(self, framework: str):
        super().__init__()
        self.framework = framework
        self.fc = nn.Linear(12, 16)
        self.rec = nn.Linear(16, 16)
        self.out = nn.Linear(16, 4)
        if framework == "spikingjelly":
            from spikingjelly.activation_based import neuron

            self.n1, self.n2 = neuron.LIFNode(tau=2.0, v_reset=None), neuron.IFNode()
        else:
            import norse.torch as nt

            self.n1 = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(300.0), v_th=torch.tensor(0.4)))
            self.n2 = nt.IAFCell(nt.IAFParameters(v_th=torch.tensor(0.8)))

    def forward(self, x):
        spk = torch.zeros(x.shape[1], 16, dtype=x.dtype)
        s1 = s2 = None
        outs = []
        for t in range(x.shape[0]):
            current = self.fc(x[t]) + self.rec(spk)
            if self.framework == "spikingjelly":
                spk = self.n1(current)
                outs.append(self.n2(self.out(spk)))
            else:
                spk, s1 = self.n1(current, s1)
                z, s2 = self.n2(self.out(spk), s2)
                outs.append(z)
        return torch.stack(outs)
