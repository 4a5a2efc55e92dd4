"""Norse cells: LIFBoxCell, LIFCell, IAFCell, LIBoxCell (forward Euler with the cell's own dt).

    LIFBoxCell: v' = v + dt*tau_mem_inv*(x + v_leak - v)       -> beta = 1 - k, gain = k, bias = k*v_leak
    LIFCell:    i1 = i + x (the current jumps first); v' = v + dt*tau_mem_inv*((v_leak - v) + i1);
                i' = i1 - dt*tau_syn_inv*i1                     -> CubaLIF, alpha = 1 - dt*tau_syn_inv, syn_gain 1
    IAFCell:    v' = v + x;  LIBoxCell: the LIFBoxCell charge without spikes
Spikes on v' > v_th; the membrane starts at v_leak (IAF: v_reset). Norse multiplies dt by its parameter
tensors in their own precision (float32 unless the parameters were given as float64), so k = dt * tau_inv is
computed here the same way, with torch, before it is widened to float64.
"""

from __future__ import annotations

import norse.torch as nt
from norse.torch.functional.reset import reset_subtract, reset_value

from nmcompile.errors import UnsupportedError
from nmcompile.frontend.lowering import Lowered, per_neuron, prov, register, tensor
from nmcompile.ir import ops as O


def _reset_mode(p, path: str) -> str:
    method = getattr(p, "reset_method", reset_value)
    if method is reset_value:
        return "zero"
    if method is reset_subtract:
        return "subtract"
    raise UnsupportedError(f"module '{path}': Norse reset_method {getattr(method, '__name__', method)!r}")


@register(nt.LIFBoxCell, "norse", neuron=True)
def _lif_box(m, path, in_shape, out_shape) -> Lowered:
    p = m.p
    k = per_neuron(tensor(m.dt * p.tau_mem_inv), in_shape, "tau_mem_inv", path)
    v_leak = per_neuron(p.v_leak, in_shape, "v_leak", path)
    return Lowered.single(O.LIF(shape=in_shape, beta=1.0 - k, gain=k, bias=k * v_leak,
                                threshold=per_neuron(p.v_th, in_shape, "v_th", path), reset_mode=_reset_mode(p, path),
                                v_reset=per_neuron(p.v_reset, in_shape, "v_reset", path), v_init=v_leak,
                                provenance=prov("norse", path)))


@register(nt.LIFCell, "norse", neuron=True)
def _lif(m, path, in_shape, out_shape) -> Lowered:
    p = m.p
    k = per_neuron(tensor(m.dt * p.tau_mem_inv), in_shape, "tau_mem_inv", path)
    k_syn = per_neuron(tensor(m.dt * p.tau_syn_inv), in_shape, "tau_syn_inv", path)
    v_leak = per_neuron(p.v_leak, in_shape, "v_leak", path)
    return Lowered.single(O.CubaLIF(shape=in_shape, alpha=1.0 - k_syn,
                                    syn_gain=1.0, beta=1.0 - k, gain=k, bias=k * v_leak,
                                    threshold=per_neuron(p.v_th, in_shape, "v_th", path), reset_mode="zero",
                                    v_reset=per_neuron(p.v_reset, in_shape, "v_reset", path), v_init=v_leak,
                                    provenance=prov("norse", path)))


@register(nt.IAFCell, "norse", neuron=True)
def _iaf(m, path, in_shape, out_shape) -> Lowered:
    p = m.p
    v_reset = per_neuron(p.v_reset, in_shape, "v_reset", path)
    return Lowered.single(O.IF(shape=in_shape, threshold=per_neuron(p.v_th, in_shape, "v_th", path),
                               reset_mode="zero", v_reset=v_reset, v_init=v_reset, provenance=prov("norse", path)))


@register(nt.LIBoxCell, "norse", neuron=True)
def _li_box(m, path, in_shape, out_shape) -> Lowered:
    p = m.p
    k = per_neuron(tensor(m.dt * p.tau_mem_inv), in_shape, "tau_mem_inv", path)
    v_leak = per_neuron(p.v_leak, in_shape, "v_leak", path)
    return Lowered.single(O.LI(shape=in_shape, beta=1.0 - k, gain=k, bias=k * v_leak, reset_mode="none",
                               v_init=v_leak, provenance=prov("norse", path)))
