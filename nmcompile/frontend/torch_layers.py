"""torch.nn layers: Linear, Conv1d/2d, AvgPool1d/2d, MaxPool1d/2d (over spikes), Flatten, Unflatten, BatchNorm1d/2d,
Identity, Dropout (dropped)."""

from __future__ import annotations

import numpy as np
import torch.nn as nn

from nmcompile.errors import UnsupportedError
from nmcompile.frontend.lowering import Lowered, average, prov, register, tensor
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


def _pool(m, path: str, in_shape, out_shape, n: int) -> O.SumPool1d | O.SumPool2d:
    """The window sum of a 1-D/2-D pool module with PyTorch's geometry (ceil_mode kept only where it adds a
    partial window, so pools without one fuse like any other)."""
    kind = type(m).__name__
    if len(in_shape) != 1 + n:
        raise UnsupportedError(f"module '{path}': {kind} on an input of shape {tuple(in_shape)} (expects "
                               f"(C, {', '.join('HW'[-n:] if n == 2 else 'L')}))")
    kernel = _tuple(m.kernel_size, n)
    stride = _tuple(m.stride if m.stride is not None and m.stride not in ([], ()) else m.kernel_size, n)
    cls = O.SumPool2d if n == 2 else O.SumPool1d
    pool = cls(kernel_size=kernel, stride=stride, padding=_tuple(m.padding, n), ceil_mode=bool(m.ceil_mode),
               provenance=prov("torch", path))
    if tuple(pool.out_shape(in_shape)) != tuple(out_shape):
        raise UnsupportedError(f"module '{path}': {kind} gives {tuple(out_shape)}, its IR pool "
                               f"{pool.out_shape(in_shape)}")
    return pool if pool.partial_windows(in_shape) else pool.replace(ceil_mode=False)


def _avgpool(m, path, in_shape, out_shape, n: int) -> Lowered:
    """Sum pool, then a division: by the kernel's size (an AvgPool op) where every window has it, else by
    PyTorch's per-position divisor (a Scale, exact: count_include_pad=False at a padded border, partial ceil_mode
    windows) or by divisor_override."""
    pool = _pool(m, path, in_shape, out_shape, n)
    override = getattr(m, "divisor_override", None)
    divisors = pool.divisors(in_shape, bool(m.count_include_pad))
    ops = average(pool, np.full((1, 1), float(override)) if override is not None else divisors)
    if len(ops) == 1:
        return Lowered.single(ops[0])
    return Lowered(nodes=[("", ops[0]), ("divide", ops[1])], edges=[("", "divide", False)], entry="", exit="divide")


def _maxpool(m, path, in_shape, out_shape, n: int) -> Lowered:
    """Max of 0/1 spikes = OR: a sum pool into a memoryless threshold layer (IF, threshold 0.5, reset to 0).

    Exact only on spikes (zero padding and the partial windows of ceil_mode change no max of values >= 0);
    `requires_spikes` makes the frontend refuse it over currents. The extra neuron layer costs one step of
    latency, which `retime` balances and reports.
    """
    kind = type(m).__name__
    if _tuple(m.dilation, n) != (1,) * n or m.return_indices:
        raise UnsupportedError(f"module '{path}': {kind} with dilation={m.dilation}, return_indices="
                               f"{m.return_indices}: only dilation=1 without indices has an OR form")
    pool = _pool(m, path, in_shape, out_shape, n)
    return Lowered(nodes=[("", pool), ("or", O.IF(shape=tuple(out_shape), threshold=0.5, reset_mode="zero",
                                                   provenance=prov("torch", path)))],
                   edges=[("", "or", False)], entry="", exit="or",
                   requires_spikes=f"module '{path}': {kind} over currents is refused: a max of currents has no "
                                   "integer/spiking form (only a max of 0/1 spikes, an OR, has one); use "
                                   f"{kind.replace('Max', 'Avg')}, or move the pool after the neuron")


@register(nn.AvgPool1d, "torch")
def _avgpool1d(m: nn.AvgPool1d, path, in_shape, out_shape) -> Lowered:
    return _avgpool(m, path, in_shape, out_shape, 1)


@register(nn.AvgPool2d, "torch")
def _avgpool2d(m: nn.AvgPool2d, path, in_shape, out_shape) -> Lowered:
    return _avgpool(m, path, in_shape, out_shape, 2)


@register(nn.MaxPool1d, "torch")
def _maxpool1d(m: nn.MaxPool1d, path, in_shape, out_shape) -> Lowered:
    return _maxpool(m, path, in_shape, out_shape, 1)


@register(nn.MaxPool2d, "torch")
def _maxpool2d(m: nn.MaxPool2d, path, in_shape, out_shape) -> Lowered:
    return _maxpool(m, path, in_shape, out_shape, 2)


@register(nn.Flatten, "torch")
def _flatten(m: nn.Flatten, path, in_shape, out_shape) -> Lowered:
    if m.start_dim == 0:
        raise UnsupportedError(f"module '{path}': Flatten(start_dim=0) merges the batch dimension")
    n = len(in_shape) + 1  # dims of the batched tensor
    start = m.start_dim % n - 1
    end = m.end_dim % n - 1
    return Lowered.single(O.Flatten(start_dim=start, end_dim=end, provenance=prov("torch", path)))


@register(nn.Unflatten, "torch")
def _unflatten(m: nn.Unflatten, path, in_shape, out_shape) -> Lowered:
    """The same values in C order, laid out as the module's output (without the batch): a Reshape."""
    if m.dim == 0 or m.dim == -len(in_shape) - 1:
        raise UnsupportedError(f"module '{path}': Unflatten(dim=0) splits the batch dimension")
    return Lowered.single(O.Reshape(shape=tuple(out_shape), provenance=prov("torch", path)))


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
