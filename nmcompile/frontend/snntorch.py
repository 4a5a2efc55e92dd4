"""snnTorch neurons: Leaky, Synaptic, RLeaky, RSynaptic (exact update rules in docs/semantics.md §2.4).

snnTorch keeps the reset of a spike for the next step by default (`reset_delay=True`): subtraction then
becomes IR `delayed`. `reset_delay=False` with subtraction has snnTorch's own guard against a double reset
(IR `snntorch_immediate`). Reset to zero differs per class: Leaky zeroes the stored membrane before the next
decay, which is spike-identical to an immediate reset; Synaptic, RLeaky and RSynaptic discard the whole
update of the next step (IR `delayed` zero). With `reset_delay=False` all zero resets are immediate.
"""

from __future__ import annotations

import numpy as np
import snntorch as snn

from nmcompile.errors import UnsupportedError, warn
from nmcompile.frontend.lowering import Lowered, per_neuron, prov, register, tensor
from nmcompile.ir import ops as O

_RESET = {0: "subtract", 1: "zero", 2: "none"}


def _common(m, path: str, shape, kind: str) -> dict:
    if m.inhibition:
        raise UnsupportedError(f"module '{path}': snnTorch {kind}(inhibition=True) is winner-take-all across the "
                               "layer; no target supports it")
    if m.state_quant:
        raise UnsupportedError(f"module '{path}': snnTorch {kind}(state_quant=...) quantizes the membrane in a "
                               "way nmcompile does not model; train without it")
    if not np.all(tensor(m.graded_spikes_factor) == 1.0):
        raise UnsupportedError(f"module '{path}': graded spikes (graded_spikes_factor != 1) are not supported; "
                               "the targets emit binary spikes")
    threshold = per_neuron(m.threshold, shape, "threshold", path)
    mode = _RESET[int(m.reset_mechanism_val)]
    delayed = bool(getattr(m, "reset_delay", True))
    if mode == "none":
        timing = "immediate"
    elif mode == "subtract":
        timing = "delayed" if delayed else "snntorch_immediate"
    else:
        if not delayed and np.any(threshold < 0):
            raise UnsupportedError(f"module '{path}': reset to zero with reset_delay=False and a negative "
                                   "threshold re-fires from a reset membrane; not supported")
        timing = "delayed" if delayed and kind != "Leaky" else "immediate"
    return {"shape": shape, "threshold": threshold, "reset_mode": mode, "reset_timing": timing,
            "provenance": prov("snntorch", path)}


def _clamped(value, shape, what, path) -> np.ndarray:
    return np.clip(per_neuron(value, shape, what, path), 0.0, 1.0)


@register(snn.Leaky, "snntorch", neuron=True)
def _leaky(m: snn.Leaky, path, in_shape, out_shape) -> Lowered:
    return Lowered.single(O.LIF(beta=_clamped(m.beta, in_shape, "beta", path), **_common(m, path, in_shape, "Leaky")))


@register(snn.Synaptic, "snntorch", neuron=True)
def _synaptic(m: snn.Synaptic, path, in_shape, out_shape) -> Lowered:
    return Lowered.single(O.CubaLIF(alpha=_clamped(m.alpha, in_shape, "alpha", path),
                                    beta=_clamped(m.beta, in_shape, "beta", path),
                                    **_common(m, path, in_shape, "Synaptic")))


def _recurrent(m, path: str, shape) -> Lowered:
    """The recurrent projection of RLeaky/RSynaptic, fed by the neuron's spikes of the previous step."""
    rec = m.recurrent
    source = prov("snntorch", f"{path}.recurrent")
    if isinstance(rec, snn._neurons.rleaky.RecurrentOneToOne):
        op: O.Op = O.Scale(scale=per_neuron(rec.V, shape, "V", path), provenance=source)
    elif type(rec).__name__ == "Linear":
        op = O.Linear(weight=tensor(rec.weight), bias=None if rec.bias is None else tensor(rec.bias),
                      provenance=source)
    elif type(rec).__name__ == "Conv2d":
        op = O.Conv2d(weight=tensor(rec.weight), bias=None if rec.bias is None else tensor(rec.bias),
                      stride=rec.stride, padding=rec.padding, dilation=rec.dilation, groups=rec.groups,
                      provenance=source)
    else:
        raise UnsupportedError(f"module '{path}': recurrent connection of type {type(rec).__name__}")
    return Lowered(nodes=[("recurrent", op)], edges=[("", "recurrent", True), ("recurrent", "", False)])


@register(snn.RLeaky, "snntorch", neuron=True)
def _rleaky(m: snn.RLeaky, path, in_shape, out_shape) -> Lowered:
    neuron = O.LIF(beta=_clamped(m.beta, in_shape, "beta", path), **_common(m, path, in_shape, "RLeaky"))
    rec = _recurrent(m, path, in_shape)
    return Lowered(nodes=[("", neuron), *rec.nodes], edges=rec.edges, entry="", exit="")


@register(snn.RSynaptic, "snntorch", neuron=True)
def _rsynaptic(m: snn.RSynaptic, path, in_shape, out_shape) -> Lowered:
    common = _common(m, path, in_shape, "RSynaptic")
    if not m.reset_delay and common["reset_mode"] != "none":
        # snnTorch 1.0's RSynaptic applies its immediate reset to a local copy of the membrane, so the stored
        # state (and every later spike) is exactly that of reset_delay=True. Reproduce what it computes.
        warn(f"module '{path}': snnTorch's RSynaptic ignores reset_delay=False (its immediate reset does not reach "
             "the stored membrane); nmcompile reproduces what snnTorch computes, a delayed reset")
        common["reset_timing"] = "delayed"
    neuron = O.CubaLIF(alpha=_clamped(m.alpha, in_shape, "alpha", path), beta=_clamped(m.beta, in_shape, "beta", path),
                       **common)
    rec = _recurrent(m, path, in_shape)
    return Lowered(nodes=[("", neuron), *rec.nodes], edges=rec.edges, entry="", exit="")


def reset_states(model) -> None:
    """Zero every snnTorch hidden state (init_hidden=True neurons keep it on the module)."""
    for module in model.modules():
        if isinstance(module, snn.SpikingNeuron):
            for name in ("mem", "syn", "spk"):
                value = getattr(module, name, None)
                if value is not None and hasattr(value, "shape"):
                    setattr(module, name, value.new_zeros(0))
