"""torch.nn layers: Linear, Conv1d/2d, AvgPool2d, MaxPool2d (over spikes), Flatten, BatchNorm1d/2d, Identity,
Dropout (dropped)."""

from __future__ import annotations

import torch.nn as nn

from nmcompile.errors import UnsupportedError
from nmcompile.frontend.lowering import Lowered, prov, register, tensor
from nmcompile.ir import ops as O


def _tuple(value, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * n


@register(nn.Linear, "torch")
def _linear(m: nn.Linear, path, in_shape, out_shape) -> Lowered:
    if len(in_shape) != 1:
        raise UnsupportedError(f"module '{path}': Linear applied to a {len(in_shape)}-D feature map {in_shape}; "
                               "flatten it first (nn.Flatten)")
    bias = None if m.bias is None else tensor(m.bias)
    return Lowered.single(O.Linear(weight=tensor(m.weight), bias=bias, provenance=prov("torch", path)))


def _conv_common(m, path: str, n: int) -> dict:
    if m.padding_mode != "zeros":
        raise UnsupportedError(f"module '{path}': padding_mode '{m.padding_mode}' (only 'zeros' is supported)")
    padding = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * n
        else:  # 'same' with stride 1 (PyTorch enforces it)
            spans = [d * (k - 1) for k, d in zip(_tuple(m.kernel_size, n), _tuple(m.dilation, n), strict=True)]
            if any(s % 2 for s in spans):
                raise UnsupportedError(f"module '{path}': padding='same' with an even kernel is asymmetric")
            padding = tuple(s // 2 for s in spans)
    return {"weight": tensor(m.weight), "bias": None if m.bias is None else tensor(m.bias),
            "padding": _tuple(padding, n), "stride": _tuple(m.stride, n), "dilation": _tuple(m.dilation, n),
            "groups": int(m.groups)}


@register(nn.Conv1d, "torch")
def _conv1d(m: nn.Conv1d, path, in_shape, out_shape) -> Lowered:
    c = _conv_common(m, path, 1)
    return Lowered.single(O.Conv1d(weight=c["weight"], bias=c["bias"], stride=c["stride"][0],
                                   padding=c["padding"][0], dilation=c["dilation"][0], groups=c["groups"],
                                   provenance=prov("torch", path)))


@register(nn.Conv2d, "torch")
def _conv2d(m: nn.Conv2d, path, in_shape, out_shape) -> Lowered:
    return Lowered.single(O.Conv2d(**_conv_common(m, path, 2), provenance=prov("torch", path)))


def _pool_geometry(m, path: str, in_shape, out_shape) -> dict:
    """kernel/stride/padding of a 2-D pool; ceil_mode only where it adds no partial window (same output size)."""
    kind = type(m).__name__
    if len(in_shape) != 3:
        raise UnsupportedError(f"module '{path}': {kind} on an input of shape {in_shape} (expects (C, H, W))")
    kernel = _tuple(m.kernel_size, 2)
    stride = _tuple(m.stride if m.stride is not None and m.stride != [] else m.kernel_size, 2)
    padding = _tuple(m.padding, 2)
    floor = O.SumPool2d(kernel_size=kernel, stride=stride, padding=padding).out_shape(in_shape)
    if tuple(out_shape) != tuple(floor):
        raise UnsupportedError(f"module '{path}': {kind} with ceil_mode=True adds a partial window here (output "
                               f"{tuple(out_shape)[1:]} instead of {tuple(floor)[1:]}); use ceil_mode=False or an "
                               "input size the stride divides")
    return {"kernel_size": kernel, "stride": stride, "padding": padding}


@register(nn.AvgPool2d, "torch")
def _avgpool(m: nn.AvgPool2d, path, in_shape, out_shape) -> Lowered:
    geometry = _pool_geometry(m, path, in_shape, out_shape)
    if any(geometry["padding"]) and not m.count_include_pad:
        raise UnsupportedError(f"module '{path}': AvgPool2d with padding and count_include_pad=False (the divisor "
                               "changes at the border); use count_include_pad=True or padding=0")
    if m.divisor_override is not None:  # a sum pool divided by a fixed number
        return Lowered(nodes=[("", O.SumPool2d(**geometry, provenance=prov("torch", path))),
                              ("divide", O.Scale(scale=1.0 / m.divisor_override, provenance=prov("torch", path)))],
                       edges=[("", "divide", False)], entry="", exit="divide")
    return Lowered.single(O.AvgPool2d(**geometry, provenance=prov("torch", path)))


@register(nn.MaxPool2d, "torch")
def _maxpool(m: nn.MaxPool2d, path, in_shape, out_shape) -> Lowered:
    """Max of 0/1 spikes = OR: a sum pool into a memoryless threshold layer (IF, threshold 0.5, reset to 0).

    Exact only on spikes; `requires_spikes` makes the frontend refuse it over currents. The extra neuron layer
    costs one step of latency, which `retime` balances and reports.
    """
    if _tuple(m.dilation, 2) != (1, 1) or m.return_indices:
        raise UnsupportedError(f"module '{path}': MaxPool2d with dilation or return_indices")
    geometry = _pool_geometry(m, path, in_shape, out_shape)
    return Lowered(nodes=[("", O.SumPool2d(**geometry, provenance=prov("torch", path))),
                          ("or", O.IF(shape=tuple(out_shape), threshold=0.5, reset_mode="zero",
                                      provenance=prov("torch", path)))],
                   edges=[("", "or", False)], entry="", exit="or",
                   requires_spikes=f"module '{path}': MaxPool2d over currents is refused: a max of currents has no "
                                   "integer/spiking form (only a max of 0/1 spikes, an OR, has one); use AvgPool2d, "
                                   "or move the pool after the neuron")


@register(nn.Flatten, "torch")
def _flatten(m: nn.Flatten, path, in_shape, out_shape) -> Lowered:
    if m.start_dim == 0:
        raise UnsupportedError(f"module '{path}': Flatten(start_dim=0) merges the batch dimension")
    n = len(in_shape) + 1  # dims of the batched tensor
    start = m.start_dim % n - 1
    end = m.end_dim % n - 1
    return Lowered.single(O.Flatten(start_dim=start, end_dim=end, provenance=prov("torch", path)))


def _batchnorm(m, path, in_shape, out_shape) -> Lowered:
    if m.running_mean is None or m.running_var is None:
        raise UnsupportedError(f"module '{path}': BatchNorm without running statistics (track_running_stats=False)")
    c = m.num_features
    weight = tensor(m.weight) if m.affine else tensor([1.0] * c)
    bias = tensor(m.bias) if m.affine else tensor([0.0] * c)
    return Lowered.single(O.BatchNorm(mean=tensor(m.running_mean), var=tensor(m.running_var), weight=weight,
                                      bias=bias, eps=float(m.eps), provenance=prov("torch", path)))


register(nn.BatchNorm1d, "torch")(_batchnorm)
register(nn.BatchNorm2d, "torch")(_batchnorm)


def _passthrough(m, path, in_shape, out_shape) -> Lowered:
    return Lowered()


register(nn.Dropout, "torch", passthrough=True)(_passthrough)
register(nn.Identity, "torch", passthrough=True)(_passthrough)
