"""Sinabs layers (sinabs 3.1): LIF, IAF, their Squeeze forms, SumPool2d (sinabs/layers/functional/lif.py).

One Sinabs step, per neuron (tau in steps, alpha = exp(-1/tau); IAF: alpha_mem = 1, norm_input = False):

    i = alpha_syn * (i + x)           (tau_syn set; else i = x)
    v = alpha_mem * v + (norm_input ? (1 - alpha_mem) * i : i)
    SingleSpike: s = [v - threshold >= 0];   MultiSpike: s = (v > 0) * trunc(v / threshold)
    MembraneSubtract: v -= s * threshold;    MembraneReset(0): v = v * (s == 0)
    min_v_mem: v = relu(v - min_v_mem) + min_v_mem

In the IR: IAF -> IF, LIF -> LIF (beta = alpha_mem, gain = 1 - alpha_mem or 1), compare '>=', immediate reset.
With tau_syn the IR current is j = i + x before Sinabs' multiplication (j = alpha_syn * j + x, exactly Sinabs'
rounding) and the membrane gain carries alpha_syn: CubaLIF(alpha = alpha_syn, syn_gain = 1, gain = alpha_syn).
MultiSpike emits s >= 2 once v reaches 2 * threshold; the targets emit one spike per step, so a MultiSpike layer is
taken only where a bound on its input proves that v stays below 2 * threshold for 0/1 input spikes (then MultiSpike
equals SingleSpike); elsewhere it is refused. min_v_mem, a reset value other than 0, a subtract value other than
the threshold, norm_input with tau_syn and recurrent layers have no exact IR form and are refused by name.

Sinabs layers take the whole (batch, time, ...) sequence in one call. `prepare` runs them one step per call (the
Squeeze layers with num_timesteps = 1, the others with a time axis of length 1 added around their forward) from a
fresh state, so the model is traced in 'step' style; every other layer of a Sinabs model acts on each step alone.
"""

from __future__ import annotations

import numpy as np
import sinabs.activation as sa
import sinabs.layers as sl
import torch

from nmcompile.errors import UnsupportedError
from nmcompile.frontend.lowering import Lowered, per_neuron, prov, register, register_transient_state
from nmcompile.ir import ops as O
from nmcompile.ir.base import conv_out_len

MARGIN = 1e-9  # relative slack of the MultiSpike bound for float rounding


def _double(value) -> torch.Tensor:
    return torch.as_tensor(value).detach().to(torch.float64)


def _spike_kind(m, path: str) -> str:
    fn = m.spike_fn
    if fn is sa.SingleSpike:
        return "single"
    if fn is sa.MultiSpike:
        return "multi"
    if isinstance(fn, sa.MaxSpike):
        return "single" if fn.max_num_spikes_per_bin == 1 else "multi"
    name = getattr(fn, "__name__", type(fn).__name__)
    raise UnsupportedError(f"module '{path}': spike_fn={name} is not supported (SingleSpike, MultiSpike, MaxSpike)")


def _reset(m, path: str, threshold: np.ndarray) -> str:
    fn = m.reset_fn
    if isinstance(fn, sa.MembraneSubtract):
        if fn.subtract_value is not None and not np.all(np.asarray(fn.subtract_value, np.float64) == threshold):
            raise UnsupportedError(f"module '{path}': MembraneSubtract(subtract_value={fn.subtract_value}) differs "
                                   "from the threshold; only subtracting the threshold has an IR form")
        return "subtract"
    if isinstance(fn, sa.MembraneReset):
        if fn.reset_value != 0:
            raise UnsupportedError(f"module '{path}': MembraneReset(reset_value={fn.reset_value}) adds the value to "
                                   "every neuron that did not spike as well (Sinabs 3.1); only reset_value=0 is "
                                   "supported")
        return "zero"
    raise UnsupportedError(f"module '{path}': reset_fn={type(fn).__name__} is not supported (MembraneSubtract, "
                           "MembraneReset)")


def _neuron(m, path: str, shape) -> Lowered:
    if isinstance(m, (sl.LIFRecurrent, sl.IAFRecurrent)):
        raise UnsupportedError(f"module '{path}': {type(m).__name__} (rec_connect inside the neuron) is not "
                               "supported; write the recurrent projection as a layer of the model")
    if m.spike_fn is None:
        raise UnsupportedError(f"module '{path}': spike_fn=None (a non-spiking Sinabs layer) is not supported")
    if m.min_v_mem is not None:
        raise UnsupportedError(f"module '{path}': min_v_mem={float(m.min_v_mem)} (Sinabs clips v as "
                               "relu(v - min_v_mem) + min_v_mem) has no IR form; train with min_v_mem=None")
    if m.spike_threshold is None:
        raise UnsupportedError(f"module '{path}': spike_threshold=None")
    threshold = per_neuron(_double(m.spike_threshold), shape, "spike_threshold", path)
    kind = _spike_kind(m, path)
    if kind == "multi" and np.any(threshold <= 0):
        raise UnsupportedError(f"module '{path}': MultiSpike with a threshold <= 0")
    reset = _reset(m, path, threshold)
    with torch.no_grad():
        alpha_mem = per_neuron(_double(m.alpha_mem_calculated), shape, "alpha_mem", path)
        alpha_syn = m.alpha_syn_calculated
        alpha_syn = None if alpha_syn is None else per_neuron(_double(alpha_syn), shape, "alpha_syn", path)
    iaf = isinstance(m, sl.IAF)
    norm = bool(m.norm_input) and not iaf
    if norm and alpha_syn is not None:
        raise UnsupportedError(f"module '{path}': norm_input=True with tau_syn scales the current twice "
                               "((1 - alpha_mem) * alpha_syn * (i + x)), which has no exact IR form; use "
                               "norm_input=False")
    gain = (1.0 - alpha_mem) if norm else np.ones(())
    common = {"shape": shape, "threshold": threshold, "compare": ">=", "reset_mode": reset,
              "provenance": prov("sinabs", path)}
    if alpha_syn is not None:
        op: O.Op = O.CubaLIF(alpha=alpha_syn, syn_gain=1.0, beta=alpha_mem, gain=alpha_syn, **common)
    elif iaf:
        op = O.IF(**common)
    else:
        op = O.LIF(beta=alpha_mem, gain=gain, **common)
    lowered = Lowered.single(op)
    if kind == "multi":
        lowered.check = lambda graph, node: _single_spike_proof(graph, node, path)
    return lowered


@register(sl.LIF, "sinabs", neuron=True)
def _lif(m: sl.LIF, path, in_shape, out_shape) -> Lowered:
    return _neuron(m, path, in_shape)


@register(sl.IAF, "sinabs", neuron=True)
def _iaf(m: sl.IAF, path, in_shape, out_shape) -> Lowered:
    return _neuron(m, path, in_shape)


@register(sl.SumPool2d, "sinabs")
def _sum_pool(m: sl.SumPool2d, path, in_shape, out_shape) -> Lowered:
    """torch's lp_pool2d with p = 1: avg_pool2d(x) * (kH * kW), the same arithmetic as AvgPool2d then Scale."""
    if float(m.norm_type) != 1.0:
        raise UnsupportedError(f"module '{path}': SumPool2d with norm_type {m.norm_type}")
    if len(in_shape) != 3:
        raise UnsupportedError(f"module '{path}': SumPool2d on an input of shape {in_shape} (expects (C, H, W))")
    kernel = _pair(m.kernel_size)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
    floor = tuple(conv_out_len(n, k, s, 0, 1) for n, k, s in zip(in_shape[1:], kernel, stride, strict=True))
    if tuple(out_shape[1:]) != floor:
        raise UnsupportedError(f"module '{path}': SumPool2d with ceil_mode=True adds a partial window here")
    source = prov("sinabs", path)
    return Lowered(nodes=[("", O.AvgPool2d(kernel_size=kernel, stride=stride, provenance=source)),
                          ("area", O.Scale(scale=float(kernel[0] * kernel[1]), provenance=source))],
                   edges=[("", "area", False)], entry="", exit="area")


def _pair(value) -> tuple[int, int]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value), int(value))


# -- the MultiSpike proof ----------------------------------------------------------------------------------
def _single_spike_proof(graph, node: str, path: str) -> None:
    """Refuse unless v < 2 * threshold at every step for 0/1 input spikes (then MultiSpike emits at most 1).

    After a step v < threshold (subtract leaves v - threshold < threshold, zero leaves 0), so the next v is at most
    beta * threshold + gain * I_max, with I_max the largest input current (CubaLIF: I_max / (1 - alpha)).
    """
    op = graph.node(node)
    peak = _upper_bound(graph, node)
    if peak is None:
        raise UnsupportedError(f"module '{path}': spike_fn=MultiSpike may emit several spikes per step and its input "
                               "has no bound nmcompile can prove; the targets emit one spike per step: use "
                               "SingleSpike")
    current = peak
    if isinstance(op, O.CubaLIF):  # j = alpha * j + x stays below I_max / (1 - alpha)
        leak = np.broadcast_to(1.0 - op.alpha, np.shape(peak))
        current = np.where(leak > 0, np.maximum(peak, 0) / np.where(leak > 0, leak, 1.0), np.inf)
    beta = op.decay()
    reach = np.maximum(beta * op.threshold, 0) + np.maximum(op.gain * current, 0)
    excess = reach * (1 + MARGIN) - 2 * op.threshold
    if np.any(excess >= 0):
        worst = float(np.max(reach / op.threshold))
        raise UnsupportedError(f"module '{path}': spike_fn=MultiSpike can emit 2 or more spikes per step here (its "
                               f"membrane can reach {worst:.3g} x threshold); the targets emit one spike per step: "
                               "use SingleSpike, or weights that keep v below twice the threshold")


def _upper_bound(graph, node: str) -> np.ndarray | None:
    """Per element, the largest value the summed input of `node` can take when every spike is 0 or 1."""
    shapes = graph.shapes()
    total = None
    for edge in graph.in_edges(node):
        part = _value_bound(graph, edge.src, shapes)
        if part is None:
            return None
        total = part if total is None else total + part
    return total


def _value_bound(graph, name: str, shapes) -> np.ndarray | None:
    op = graph.node(name)
    if isinstance(op, O.Input) or (op.role == "neuron" and op.spiking):
        return np.ones(shapes[name])
    x = _upper_bound(graph, name)
    if x is None:
        return None
    if isinstance(op, (O.Flatten, O.Reshape)):
        return x.reshape(shapes[name])
    if isinstance(op, O.Delay):
        return x
    if isinstance(op, O.Scale):
        return x * op.scale if np.all(op.scale >= 0) else None
    if np.any(x < 0):
        return None
    t = torch.as_tensor(x, dtype=torch.float64).unsqueeze(0)
    if isinstance(op, O.Linear):
        y = np.clip(op.weight, 0, None) @ x
        return y + op.bias if op.bias is not None else y
    if isinstance(op, (O.Conv1d, O.Conv2d)):
        conv = torch.nn.functional.conv1d if isinstance(op, O.Conv1d) else torch.nn.functional.conv2d
        w = torch.as_tensor(np.clip(op.weight, 0, None))
        bias = None if op.bias is None else torch.as_tensor(op.bias)
        return conv(t, w, bias, op.stride, op.padding, op.dilation, op.groups)[0].numpy()
    if isinstance(op, (O.SumPool2d, O.AvgPool2d)):
        y = torch.nn.functional.avg_pool2d(t, op.kernel_size, op.stride, op.padding)[0].numpy()
        return y * (op.kernel_size[0] * op.kernel_size[1]) if isinstance(op, O.SumPool2d) else y
    return None


# -- running a Sinabs model one step per call ----------------------------------------------------------------
def _one_step(layer):
    """The layer's forward on one step [B, *shape]: a time axis of length 1 around Sinabs' own forward."""
    forward = type(layer).forward

    def step(x):
        return forward(layer, x.unsqueeze(1)).squeeze(1)

    return step


def prepare(model) -> None:
    """One step per call and a fresh state (zero v_mem, i_syn) for every Sinabs neuron layer of `model`."""
    for module in model.modules():
        if not isinstance(module, sl.LIF):
            continue
        for name, _ in list(module.named_buffers(recurse=False)):
            module.register_buffer(name, torch.zeros(0))
        if isinstance(module, (sl.LIFSqueeze, sl.IAFSqueeze)):
            module.batch_size, module.num_timesteps = -1, 1
        else:
            module.forward = _one_step(module)


@register_transient_state
def state_keys(model) -> set[str]:
    """The v_mem / i_syn buffers of Sinabs layers: running state, saved in whatever shape training left them."""
    return {f"{path}.{name}" if path else name
            for path, module in model.named_modules() if isinstance(module, sl.StatefulLayer)
            for name, _ in module.named_buffers(recurse=False)}
