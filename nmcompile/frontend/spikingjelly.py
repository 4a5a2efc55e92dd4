"""SpikingJelly neurons (activation_based, single-step): IFNode, LIFNode, ParametricLIFNode.

SpikingJelly fires on h >= threshold. Charge (decay_input=True): h = v + (x - (v - v_reset)) / tau, i.e.
beta = 1 - 1/tau, gain = 1/tau, bias = v_reset/tau (decay_input=False: gain = 1). v_reset=None means reset by
subtraction with a leak towards 0. The membrane starts at v_reset (0 for soft reset).
"""

from __future__ import annotations

import numpy as np
import torch
from spikingjelly.activation_based import neuron as sj

from nmcompile.frontend.lowering import Lowered, per_neuron, prov, register
from nmcompile.ir import ops as O


def _reset(m, path: str, shape) -> dict:
    hard = m.v_reset is not None
    v_reset = float(m.v_reset) if hard else 0.0
    return {"shape": shape, "threshold": per_neuron(m.v_threshold, shape, "v_threshold", path), "compare": ">=",
            "reset_mode": "zero" if hard else "subtract", "v_reset": v_reset, "v_init": v_reset,
            "provenance": prov("spikingjelly", path)}


@register(sj.IFNode, "spikingjelly", neuron=True)
def _if(m: sj.IFNode, path, in_shape, out_shape) -> Lowered:
    return Lowered.single(O.IF(**_reset(m, path, in_shape)))


def _leaky(m, path: str, shape, inv_tau: np.ndarray) -> Lowered:
    common = _reset(m, path, shape)
    gain = inv_tau if m.decay_input else np.ones(())
    return Lowered.single(O.LIF(beta=1.0 - inv_tau, gain=gain, bias=common["v_reset"] * inv_tau, **common))


@register(sj.LIFNode, "spikingjelly", neuron=True)
def _lif(m: sj.LIFNode, path, in_shape, out_shape) -> Lowered:
    return _leaky(m, path, in_shape, np.asarray(1.0 / float(m.tau)))


@register(sj.ParametricLIFNode, "spikingjelly", neuron=True)
def _plif(m: sj.ParametricLIFNode, path, in_shape, out_shape) -> Lowered:
    with torch.no_grad():
        inv_tau = m.w.detach().to(torch.float64).sigmoid().numpy()
    return _leaky(m, path, in_shape, per_neuron(inv_tau, in_shape, "w", path))


def prepare(model) -> None:
    """Single-step mode and fresh state for every SpikingJelly module of `model`."""
    from spikingjelly.activation_based import functional

    functional.set_step_mode(model, "s")
    functional.reset_net(model)
