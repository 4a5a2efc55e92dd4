"""Tiny networks for the support matrix (docs/support.md, tests/docs/test_support_matrix.py).

Each row of ROWS is (framework, module and options, factory name, per-step input shape); every factory is a
module-level function, so `--model tests.frontend.support_models:<name>` builds it.
"""

from __future__ import annotations

import torch
from torch import nn

from tests.frontend.models import gain, snntorch_rsynaptic_loop

DENSE = (6,)
IMAGE = (2, 6, 6)
SIGNAL = (2, 8)
INPUT_SHAPE = DENSE


def _dense(make) -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Linear(6, 8), make(8), nn.Linear(8, 3), make(3)))


def _snntorch(neuron: str, reset: str, delay: bool):
    def factory() -> nn.Module:
        import snntorch as snn

        kwargs = dict(reset_mechanism=reset, reset_delay=delay, init_hidden=True)
        if neuron == "RSynaptic" and not delay:
            return snntorch_rsynaptic_loop(reset, n_in=6, n=8, seed=0)
        make = {
            "Leaky": lambda n: snn.Leaky(beta=0.9, **kwargs),
            "Synaptic": lambda n: snn.Synaptic(alpha=0.6, beta=0.85, **kwargs),
            "RLeaky": lambda n: snn.RLeaky(beta=0.85, linear_features=n, **kwargs),
            "RSynaptic": lambda n: snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=n, **kwargs),
        }[neuron]
        return _dense(make)

    return factory


def _spikingjelly(kind: str, v_reset: float | None):
    def factory() -> nn.Module:
        from spikingjelly.activation_based import layer, neuron

        def make(n):
            if kind == "IF":
                return neuron.IFNode(v_threshold=1.0, v_reset=v_reset)
            return neuron.LIFNode(tau=3.0, v_reset=v_reset)

        torch.manual_seed(0)
        return gain(nn.Sequential(layer.Linear(6, 8), make(8), layer.Linear(8, 3), make(3)))

    return factory


def _norse(kind: str):
    def factory() -> nn.Module:
        import norse.torch as nt

        def make(n):
            if kind == "LIFBoxCell":
                return nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(150.0), v_th=torch.tensor(0.3)))
            if kind == "LIFCell":
                return nt.LIFCell(nt.LIFParameters(tau_syn_inv=torch.tensor(300.0), tau_mem_inv=torch.tensor(200.0),
                                                   v_th=torch.tensor(0.2)))
            return nt.IAFCell(nt.IAFParameters(v_th=torch.tensor(1.0)))

        torch.manual_seed(0)
        return gain(nt.SequentialState(nn.Linear(6, 8), make(8), nn.Linear(8, 3), make(3)), 4.0)

    return factory


def _leaky():
    """The structure rows' neuron: reset to zero, which every target supports, so a row shows its structure."""
    import snntorch as snn

    return snn.Leaky(beta=0.9, reset_mechanism="zero", init_hidden=True)


def _stats(model: nn.Module) -> nn.Module:
    """Trained-looking batch-norm statistics."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.4)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def mpbnlif() -> nn.Module:
    from nmcompile.nn import MPBNLIF

    torch.manual_seed(0)
    return _stats_mpbn(gain(nn.Sequential(nn.Linear(6, 8), MPBNLIF(8), nn.Linear(8, 3), MPBNLIF(3))))


def mpbnlif_below_rest() -> nn.Module:
    """gamma < 0 and gamma = 0 channels, and BN shifts that put folded thresholds below rest (neurons that fire
    before any input: a start step and a negative threshold)."""
    from nmcompile.nn import MPBNLIF

    model = mpbnlif()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, MPBNLIF):
                m.weight[:1] *= -1.0
                m.weight[1:2] = 0.0
                m.bias.uniform_(0.0, 1.5)
    return model


def _stats_mpbn(model: nn.Module) -> nn.Module:
    from nmcompile.nn import MPBNLIF

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, MPBNLIF):
                m.running_mean.uniform_(-0.2, 0.4)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def avgpool_after_conv() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.AvgPool2d(2), _leaky(), nn.Flatten(),
                              nn.Linear(4 * 3 * 3, 3), _leaky()), 6.0)


def maxpool_after_neuron() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(4 * 3 * 3, 3), _leaky()), 6.0)


def avgpool1d_after_conv() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.AvgPool1d(2), _leaky(), nn.Flatten(),
                              nn.Linear(4 * 4, 3), _leaky()), 6.0)


def maxpool1d_after_neuron() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), _leaky(), nn.MaxPool1d(3, stride=2, ceil_mode=True),
                              nn.Flatten(), nn.Linear(4 * 4, 3), _leaky()), 6.0)


def avgpool_border_before_linear() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(),
                              nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                              nn.Flatten(), nn.Linear(4 * 4 * 4, 3), _leaky()), 6.0)


def avgpool_border_before_conv() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(),
                              nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), nn.Conv2d(4, 3, 3),
                              _leaky(), nn.Flatten(), nn.Linear(3, 3), _leaky()), 6.0)


def avgpool_border_on_currents_into_conv() -> nn.Module:
    """A padded pool on a conv's currents (a sparse projection: the layer after it becomes flat) into a conv."""
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv2d(2, 4, 3), nn.AvgPool2d(2, padding=1), _leaky(), nn.Conv2d(4, 3, 3, padding=1),
                              _leaky(), nn.Flatten(), nn.Linear(3 * 3 * 3, 3), _leaky()), 6.0)


def avgpool1d_border_on_currents_into_conv() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv1d(2, 4, 3), nn.AvgPool1d(2, padding=1), _leaky(), nn.Conv1d(4, 3, 3, padding=1),
                              _leaky(), nn.Flatten(), nn.Linear(3 * 4, 3), _leaky()), 6.0)


def unflatten_into_conv() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Linear(6, 36), _leaky(), nn.Unflatten(1, (4, 3, 3)), nn.Conv2d(4, 3, 3, padding=1),
                              _leaky(), nn.Flatten(), nn.Linear(3 * 3 * 3, 3), _leaky()), 6.0)


def maxpool_over_currents() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.MaxPool2d(2), _leaky(), nn.Flatten(),
                              nn.Linear(4 * 3 * 3, 3), _leaky()), 6.0)


def batchnorm1d() -> nn.Module:
    torch.manual_seed(0)
    return _stats(gain(nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), _leaky(), nn.Linear(8, 3), _leaky())))


def batchnorm2d() -> nn.Module:
    torch.manual_seed(0)
    return _stats(gain(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), _leaky(), nn.Flatten(),
                                     nn.Linear(4 * 6 * 6, 3), _leaky()), 6.0))


def dropout() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.3), _leaky(), nn.Linear(8, 3), _leaky()))


def flatten() -> nn.Module:
    torch.manual_seed(0)
    return gain(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
                              _leaky()), 6.0)


class _Recurrent(nn.Module):
    """A recurrent Linear written out in the forward loop over a [T, B, ...] input."""

    def __init__(self):
        super().__init__()
        import snntorch as snn

        self.fc = nn.Linear(6, 8)
        self.rec = nn.Linear(8, 8, bias=False)
        self.lif1 = snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.out = nn.Linear(8, 3)
        self.lif2 = snn.Leaky(beta=0.9, reset_mechanism="zero")

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk = torch.zeros(x.shape[1], 8, dtype=x.dtype)
        outs = []
        for t in range(x.shape[0]):
            spk, mem1 = self.lif1(self.fc(x[t]) + self.rec(spk), mem1)
            z, mem2 = self.lif2(self.out(spk), mem2)
            outs.append(z)
        return torch.stack(outs)


def recurrent_linear() -> nn.Module:
    torch.manual_seed(0)
    return gain(_Recurrent())


def _sinabs(neuron: str, spike: str, reset: str, **options):
    def factory() -> nn.Module:
        import sinabs.activation as sa
        import sinabs.layers as sl

        def make(n):
            common = {"spike_fn": sa.SingleSpike if spike == "single" else sa.MultiSpike,
                      "reset_fn": sa.MembraneSubtract() if reset == "subtract" else sa.MembraneReset(), **options}
            if neuron == "IAF":
                return sl.IAF(**common)
            return sl.LIF(tau_mem=4.0, **common)

        return _dense(make)

    return factory


def dcls_delays() -> nn.Module:
    """Dcls1d(6 -> 3) with rounded positions up to 7 steps apart, then snnTorch Leaky (tests/frontend/dcls_models.py's
    forward convention)."""
    from tests.frontend.dcls_models import DelayNet

    class Net(DelayNet):
        def __init__(self):
            super().__init__()
            from DCLS.construct.modules import Dcls1d

            torch.manual_seed(0)
            self.syn = Dcls1d(6, 3, kernel_count=1, dilated_kernel_size=9, bias=False, version="gauss")
            with torch.no_grad():
                self.syn.weight.uniform_(0.2, 0.9)
                self.syn.P.copy_(torch.linspace(-3, 4, 18).reshape(1, 3, 6, 1))  # delays 0..7: 1..8 steps

    return Net()


def uses_dcls(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("DCLS.") for m in model.modules())


ROWS: list[tuple[str, str, str, tuple[int, ...]]] = []

for _neuron in ("Leaky", "Synaptic", "RLeaky", "RSynaptic"):
    for _reset in ("subtract", "zero"):
        for _delay in (True, False):
            _name = f"snntorch_{_neuron.lower()}_{_reset}_{'delayed' if _delay else 'immediate'}"
            globals()[_name] = _snntorch(_neuron, _reset, _delay)
            ROWS.append(("snnTorch", f"`{_neuron}` reset_mechanism={_reset!r}, reset_delay={_delay}", _name, DENSE))
for _kind in ("IF", "LIF"):
    for _v_reset in (0.0, None):
        _name = f"spikingjelly_{_kind.lower()}_{'zero' if _v_reset is not None else 'subtract'}"
        globals()[_name] = _spikingjelly(_kind, _v_reset)
        ROWS.append(("SpikingJelly", f"`{_kind}Node` v_reset={_v_reset}", _name, DENSE))
for _kind in ("LIFBoxCell", "LIFCell", "IAFCell"):
    _name = f"norse_{_kind.lower()}"
    globals()[_name] = _norse(_kind)
    ROWS.append(("Norse", f"`{_kind}`", _name, DENSE))
for _kind in ("IAF", "LIF"):
    for _spike in ("single", "multi"):
        for _reset in ("subtract", "zero"):
            _name = f"sinabs_{_kind.lower()}_{_spike}_{_reset}"
            globals()[_name] = _sinabs(_kind, _spike, _reset)
            _fn = "SingleSpike" if _spike == "single" else "MultiSpike"
            _rf = "MembraneSubtract()" if _reset == "subtract" else "MembraneReset()"
            ROWS.append(("Sinabs", f"`{_kind}` spike_fn={_fn}, reset_fn={_rf}", _name, DENSE))
sinabs_iaf_min_v_mem = _sinabs("IAF", "single", "subtract", min_v_mem=-1.0)


def sinabs_iaf_multi_bounded() -> nn.Module:
    """MultiSpike with weights small enough that v stays below twice the threshold (then it is SingleSpike)."""
    model = _sinabs("IAF", "multi", "zero")()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.mul_(0.12)
            layer.bias.mul_(0.12)
    return model


sinabs_lif_tau_syn = _sinabs("LIF", "single", "subtract", tau_syn=3.0, norm_input=False)
ROWS += [
    ("Sinabs", "`IAF` spike_fn=MultiSpike, weights that keep v < 2 * threshold", "sinabs_iaf_multi_bounded", DENSE),
    ("Sinabs", "`IAF` min_v_mem=-1.0", "sinabs_iaf_min_v_mem", DENSE),
    ("Sinabs", "`LIF` tau_syn=3.0, norm_input=False", "sinabs_lif_tau_syn", DENSE),
    ("DCLS", "`Dcls1d` over time, rounded positions: per-synapse delays", "dcls_delays", DENSE),
    ("nmcompile.nn", "`MPBNLIF`", "mpbnlif", DENSE),
    ("nmcompile.nn", "`MPBNLIF` γ < 0 and γ = 0 channels, thresholds below rest", "mpbnlif_below_rest", DENSE),
    ("structure", "`AvgPool2d` after a conv", "avgpool_after_conv", IMAGE),
    ("structure", "`MaxPool2d` after a neuron", "maxpool_after_neuron", IMAGE),
    ("structure", "`MaxPool2d` over currents", "maxpool_over_currents", IMAGE),
    ("structure", "`AvgPool1d` after a conv", "avgpool1d_after_conv", SIGNAL),
    ("structure", "`MaxPool1d` ceil_mode=True after a neuron", "maxpool1d_after_neuron", SIGNAL),
    ("structure", "`AvgPool2d` padding, ceil_mode, count_include_pad=False before a Linear",
     "avgpool_border_before_linear", IMAGE),
    ("structure", "`AvgPool2d` padding, count_include_pad=False before a conv", "avgpool_border_before_conv", IMAGE),
    ("structure", "`AvgPool2d` padding on a conv's currents, then a neuron and a conv",
     "avgpool_border_on_currents_into_conv", IMAGE),
    ("structure", "`AvgPool1d` padding on a conv's currents, then a neuron and a conv",
     "avgpool1d_border_on_currents_into_conv", SIGNAL),
    ("structure", "`BatchNorm1d` after a Linear", "batchnorm1d", DENSE),
    ("structure", "`BatchNorm2d` after a conv", "batchnorm2d", IMAGE),
    ("structure", "`Dropout`", "dropout", DENSE),
    ("structure", "`Flatten` after a conv", "flatten", IMAGE),
    ("structure", "`Unflatten` from a Linear's layer to a conv", "unflatten_into_conv", DENSE),
    ("structure", "recurrent `Linear` in the forward loop", "recurrent_linear", DENSE),
]
