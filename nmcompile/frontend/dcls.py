"""Learned synaptic delays trained with DCLS (the `dcls` package, `DCLS.construct.modules.Dcls1d` over time).

"Learning Delays in Spiking Neural Networks using Dilated Convolutions with Learnable Spacings" (Hammouamri,
Khalfaoui-Hassani, Masquelier, ICLR 2024) applies a Dcls1d over the time axis of a [B, C_in, T] spike tensor that is
left-padded by D - 1 steps (D = dilated_kernel_size): each synapse (post j, pre i) has a weight W[j, i] and a
learned position P[j, i], and at inference the position is rounded, so the kernel holds W[j, i] at index
k = round(P) + D // 2 and the synapse delivers with delay d = D - 1 - k steps:

    y_j[t] = sum_i W[j, i] * x_i[t - d[j, i]] + b_j          (IR Linear with per-synapse delays)

A model is a chain of children in order, Dcls1d synapses between neuron layers of a supported framework (snnTorch,
SpikingJelly, Norse, Sinabs); its forward takes [T, B, C_in] and returns [T, B, C_out], padding and permuting around
each Dcls1d itself. The structure is read from the children; `check_against_forward` then runs the model's own
forward (positions rounded, the kernel built by DCLS' 'v0' construction, which places exactly W at the rounded
index) and refuses the model when the IR does not reproduce it spike for spike (e.g. padding that is not causal).
Only kernel_count = 1 (one tap per synapse, as in the paper) has one delay per synapse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from DCLS.construct.modules import Dcls1d

from nmcompile.errors import UnsupportedError
from nmcompile.frontend import lowering
from nmcompile.frontend.lowering import Lowered, prov, register, tensor
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph


def taps(m: Dcls1d, path: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight [out, in], delay [out, in]) of a Dcls1d with rounded positions; a tap outside the kernel is dropped
    (weight 0), as DCLS' kernel construction drops it."""
    if m.kernel_count != 1:
        raise UnsupportedError(f"module '{path}': Dcls1d with kernel_count={m.kernel_count} has several taps per "
                               "synapse; one delay per synapse needs kernel_count=1")
    if m.groups != 1 or m.stride != (1,) or m.padding_mode != "zeros":
        raise UnsupportedError(f"module '{path}': Dcls1d with groups, stride or padding_mode other than the defaults")
    size = int(m.dilated_kernel_size[0])
    index = torch.round(m.P.detach()[0, :, :, 0].to(torch.float64)).numpy().astype(np.int64) + size // 2
    weight = tensor(m.weight[:, :, 0])
    inside = (index >= 0) & (index < size)
    return np.where(inside, weight, 0.0), np.where(inside, size - 1 - index, 0)


@register(Dcls1d, "dcls")
def _dcls1d(m: Dcls1d, path, in_shape, out_shape) -> Lowered:
    weight, delays = taps(m, path)
    bias = None if m.bias is None else tensor(m.bias)
    return Lowered.single(O.Linear(weight=weight, bias=bias, delays=delays, provenance=prov("dcls", path)))


@contextlib.contextmanager
def rounded(model) -> Iterator[object]:
    """The model with every Dcls1d's positions rounded and its kernel built by the 'v0' construction (exactly W at
    the rounded index); restored afterwards."""
    saved = []
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Dcls1d):
                saved.append((m, m.P.detach().clone(), m.version, m.DCK.version))
                m.P.copy_(torch.round(m.P))
                m.version = m.DCK.version = "v0"
    try:
        yield model
    finally:
        with torch.no_grad():
            for m, p, version, dck in saved:
                m.P.copy_(p)
                m.version, m.DCK.version = version, dck


def round_positions(model) -> None:
    """Round every Dcls1d's positions and build its kernel by the 'v0' construction, for good (inference form)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Dcls1d):
                m.P.copy_(torch.round(m.P))
                m.version = m.DCK.version = "v0"


def graph_from_dcls_model(model, input_shape: tuple[int, ...], name: str = "network") -> Graph:
    """The IR chain of a DCLS model's children: Dcls1d -> neuron -> Dcls1d -> neuron ... (see the module doc)."""
    if len(input_shape) != 1:
        raise UnsupportedError(f"a DCLS model takes [T, B, C] inputs; the per-step input shape must be (C,), got "
                               f"{tuple(input_shape)}")
    graph = Graph(name)
    graph.add("input", O.Input(shape=input_shape, provenance=prov("torch", "input")))
    previous, width = "input", int(input_shape[0])
    for path, child in model.named_children():
        reg = lowering.find(child)
        if reg is None:
            raise UnsupportedError(f"module '{path}' ({type(child).__name__}) in a DCLS model: its children must be "
                                   f"Dcls1d synapses and neuron layers ({lowering.supported_names(neurons=True)})")
        if reg.passthrough:
            continue
        if isinstance(child, Dcls1d):
            if child.in_channels != width:
                raise UnsupportedError(f"module '{path}': Dcls1d expects {child.in_channels} channels but receives "
                                       f"{width}")
            lowered = lowering.lower(child, path, (width,), (child.out_channels,))
            width = child.out_channels
        elif reg.neuron:
            lowered = lowering.lower(child, path, (width,), (width,))
        else:
            raise UnsupportedError(f"module '{path}' ({type(child).__name__}) in a DCLS model: between Dcls1d synapses "
                                   "only neuron layers are supported")
        if len(lowered.nodes) != 1:
            raise UnsupportedError(f"module '{path}' ({type(child).__name__}) is not a single layer")
        graph.add(path, lowered.nodes[0][1])
        graph.connect(previous, path)
        previous = path
    if graph.node(previous).role != "neuron":
        raise UnsupportedError("a DCLS model must end with a neuron layer")
    graph.add("output", O.Output(shape=(width,)))
    graph.connect(previous, "output")
    graph.verify()
    return graph


def forward(model, x: np.ndarray) -> np.ndarray:
    """The model's own forward ([T, B, C] in and out) with rounded positions, in the model's dtype."""
    from nmcompile.frontend.trace import prepare_model

    dtype = next(iter(model.parameters())).dtype
    prepare_model(model)
    with torch.no_grad(), rounded(model):
        out = model(torch.as_tensor(x, dtype=dtype))
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out.detach().to(torch.float64).numpy()


def check_against_forward(model, graph: Graph, steps: int = 24, seed: int = 0) -> None:
    """Refuse the model unless the IR's float64 spikes equal the model's own float64 forward on probe spikes."""
    from nmcompile.frontend.check import float64_model
    from nmcompile.ir.simulate import simulate

    shape = graph.node("input").shape
    x = (np.random.default_rng(seed).random((steps, 2, *shape)) < 0.5).astype(np.float64)
    with float64_model(model) as m64:
        try:
            theirs = forward(m64, x)
        except Exception as err:
            raise UnsupportedError(f"the DCLS model's forward on a [T, B, C] = {x.shape} input raised "
                                   f"{type(err).__name__}: {' '.join(str(err).split())[:160]}") from None
    ours = simulate(graph, x).output
    if theirs.shape != ours.shape or np.any(theirs != ours):
        differ = "a different shape" if theirs.shape != ours.shape else f"{int((theirs != ours).sum())} spikes"
        raise UnsupportedError(f"the DCLS model's own forward differs from its children read as a chain ({differ}); "
                               "the forward must apply each Dcls1d to the [B, C, T] sequence left-padded by "
                               "dilated_kernel_size - 1 steps, children in order, and return [T, B, C] spikes")
