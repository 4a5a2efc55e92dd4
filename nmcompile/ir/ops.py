"""Float IR ops: graph boundaries, projections (synaptic ops) and structural ops.

Shapes never include batch or time. A projection maps the sum of its inputs at step t to a current at
step t (zero latency, as in PyTorch) unless it carries per-synapse delays. Neuron ops live in
`nmcompile.ir.neurons`, integer ops in `nmcompile.ir.integer`; all are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nmcompile.ir.base import (
    OP_TYPES,
    Op,
    Provenance,
    Shape,
    array_field,
    as_pair,
    as_shape,
    as_tuple,
    broadcastable,
    conv_out_len,
    same_op,
)
from nmcompile.ir.sparse import CsrShape, check_csr


@dataclass(frozen=True, kw_only=True, eq=False)
class _Source(Op, abstract=True):
    """A node without inputs that emits values of `shape` at every step."""

    role = "io"
    numeric = "neutral"
    shape: Shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", as_shape(self.shape))
        super().__post_init__()

    def out_shape(self, in_shape: Shape | None) -> Shape:
        return self.shape

    def expects_input(self) -> bool:
        return False

    def check(self) -> None:
        if any(d <= 0 for d in self.shape):
            raise ValueError(f"shape {self.shape} has a non-positive dimension")


@dataclass(frozen=True, kw_only=True, eq=False)
class Input(_Source):
    """A network input: spikes (0/1) or currents of `shape` at every step."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Constant(_Source):
    """A source that emits `value` at every step from step 0 (e.g. 1: a spike per step that carries biases)."""

    value: float = 1.0


@dataclass(frozen=True, kw_only=True, eq=False)
class Output(Op):
    """A network output: the sum of its inputs, recorded at every step."""

    role = "io"
    numeric = "neutral"
    shape: Shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", as_shape(self.shape))
        super().__post_init__()

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is not None and tuple(in_shape) != self.shape:
            raise ValueError(f"declared shape {self.shape} but receives {tuple(in_shape)}")
        return self.shape


@dataclass(frozen=True, kw_only=True, eq=False)
class Linear(Op):
    """y_j[t] = sum_i W[j,i] * x_i[t - D[j,i]] + b_j   (D = per-synapse delays in steps, absent = 0)."""

    role = "projection"
    weighted = True
    storage = "dense"
    weight: np.ndarray = array_field(np.float64)
    bias: np.ndarray | None = array_field(np.float64, optional=True)
    delays: np.ndarray | None = array_field(np.int64, optional=True)

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is not None and tuple(in_shape) != (self.weight.shape[1],):
            raise ValueError(f"weight expects input ({self.weight.shape[1]},) but receives {tuple(in_shape)}")
        return (self.weight.shape[0],)

    def check(self) -> None:
        if self.weight.ndim != 2:
            raise ValueError(f"weight must be 2-D (out, in), got shape {self.weight.shape}")
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        if self.delays is not None:
            if self.delays.shape != self.weight.shape:
                raise ValueError(f"delays shape {self.delays.shape} != weight shape {self.weight.shape}")
            if self.delays.size and self.delays.min() < 0:
                raise ValueError("delays must be >= 0 steps")


@dataclass(frozen=True, kw_only=True, eq=False)
class SparseLinear(CsrShape, Op):
    """y_j[t] = sum over k in indptr[j]..indptr[j+1] of values[k] * x_{indices[k]}[t]   (CSR rows, float)

    For networks too large for dense matrices; `quantize` makes it a QSparseLinear (nmcompile.ir.sparse).
    """

    role = "projection"
    weighted = True
    storage = "csr"
    indptr: np.ndarray = array_field(np.int64)
    indices: np.ndarray = array_field(np.int32)
    values: np.ndarray = array_field(np.float64)
    in_features: int

    def check(self) -> None:
        check_csr(self.indptr, self.indices, self.values, self.in_features)


@dataclass(frozen=True, kw_only=True, eq=False)
class Conv1d(Op):
    """PyTorch Conv1d (cross-correlation, zero padding) on (C, L)."""

    role = "projection"
    weighted = True
    storage = "conv"
    weight: np.ndarray = array_field(np.float64)
    bias: np.ndarray | None = array_field(np.float64, optional=True)
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is None or len(in_shape) != 2:
            raise ValueError(f"expects an input of shape (C, L), got {in_shape}")
        c, length = in_shape
        if c != self.weight.shape[1] * self.groups:
            raise ValueError(f"weight expects {self.weight.shape[1] * self.groups} input channels, got {c}")
        out = conv_out_len(length, self.weight.shape[2], self.stride, self.padding, self.dilation)
        if out <= 0:
            raise ValueError(f"input length {length} is too small for the kernel")
        return (self.weight.shape[0], out)

    def check(self) -> None:
        if self.weight.ndim != 3:
            raise ValueError(f"weight must be 3-D (C_out, C_in/groups, K), got {self.weight.shape}")
        _check_conv_common(self.weight.shape[0], self.bias, self.groups, [self.stride], [self.dilation],
                           [self.padding])


@dataclass(frozen=True, kw_only=True, eq=False)
class Conv2d(Op):
    """PyTorch Conv2d (cross-correlation, zero padding) on (C, H, W); pairs are (H, W)."""

    role = "projection"
    weighted = True
    storage = "conv"
    weight: np.ndarray = array_field(np.float64)
    bias: np.ndarray | None = array_field(np.float64, optional=True)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        for name in ("stride", "padding", "dilation"):
            object.__setattr__(self, name, as_pair(getattr(self, name), name))
        super().__post_init__()

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is None or len(in_shape) != 3:
            raise ValueError(f"expects an input of shape (C, H, W), got {in_shape}")
        c, h, w = in_shape
        if c != self.weight.shape[1] * self.groups:
            raise ValueError(f"weight expects {self.weight.shape[1] * self.groups} input channels, got {c}")
        ho = conv_out_len(h, self.weight.shape[2], self.stride[0], self.padding[0], self.dilation[0])
        wo = conv_out_len(w, self.weight.shape[3], self.stride[1], self.padding[1], self.dilation[1])
        if ho <= 0 or wo <= 0:
            raise ValueError(f"input {h}x{w} is too small for the kernel")
        return (self.weight.shape[0], ho, wo)

    def check(self) -> None:
        if self.weight.ndim != 4:
            raise ValueError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got {self.weight.shape}")
        _check_conv_common(self.weight.shape[0], self.bias, self.groups, self.stride, self.dilation,
                           self.padding)


def _check_conv_common(c_out: int, bias: np.ndarray | None, groups: int, stride, dilation, padding) -> None:
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"bias shape {bias.shape} != ({c_out},)")
    if groups < 1 or c_out % groups:
        raise ValueError(f"groups={groups} must divide the {c_out} output channels")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError("stride and dilation must be >= 1 and padding >= 0")


@dataclass(frozen=True, kw_only=True, eq=False)
class _Pool(Op, abstract=True):
    """A window sum over the `ndim` spatial axes of (C, *S), zero padding `padding` on both ends.

    ceil_mode (PyTorch's rule): L' = ceil((L + 2p - k) / s) + 1, less one when that window would start in the end
    padding; a last window that runs past L + 2p sums only what it covers (as if zeros were added at the end).
    """

    role = "projection"
    removed_by = "fuse_projections"   # fused into the next Linear/Conv
    ndim: ClassVar[int] = 2
    averages: ClassVar[bool] = False   # divides each window by the kernel's size
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] = (0, 0)
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, as_tuple(getattr(self, name), self.ndim, name))
        object.__setattr__(self, "ceil_mode", bool(self.ceil_mode))
        super().__post_init__()

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is None or len(in_shape) != 1 + self.ndim:
            raise ValueError(f"expects an input of shape (C, {', '.join('HW'[-self.ndim:])}), got {in_shape}")
        out = tuple(self._out_len(n, axis) for axis, n in enumerate(in_shape[1:]))
        if min(out) <= 0:
            raise ValueError(f"input {in_shape[1:]} is too small for the pooling window")
        return (in_shape[0], *out)

    def _out_len(self, size: int, axis: int) -> int:
        k, s, p = self.kernel_size[axis], self.stride[axis], self.padding[axis]
        if not self.ceil_mode:
            return conv_out_len(size, k, s, p, 1)
        out = -(-(size + 2 * p - k) // s) + 1
        return out - 1 if (out - 1) * s >= size + p else out

    def pads(self, in_shape: Shape) -> tuple[tuple[int, int], ...]:
        """(begin, end) zeros per spatial axis: `padding`, plus what ceil_mode's last partial window needs."""
        out = self.out_shape(in_shape)[1:]
        return tuple((p, p + max(0, (o - 1) * s + k - (n + 2 * p)))
                     for n, o, k, s, p in zip(in_shape[1:], out, self.kernel_size, self.stride, self.padding,
                                              strict=True))

    def divisors(self, in_shape: Shape, count_include_pad: bool = True) -> np.ndarray:
        """PyTorch's and ONNX's average-pool divisor per output position: the window clipped to the padded input,
        or to the input itself without count_include_pad. Shape (1, *out_spatial), broadcasting over channels."""
        out = self.out_shape(in_shape)[1:]
        grid = np.ones(out)
        for axis, (length, o_len) in enumerate(zip(in_shape[1:], out, strict=True)):
            k, s, p = self.kernel_size[axis], self.stride[axis], self.padding[axis]
            start = np.arange(o_len) * s - p
            end = np.minimum(start + k, length + p)
            size = end - start if count_include_pad else np.minimum(end, length) - np.maximum(start, 0)
            grid = grid * size.reshape([-1 if a == axis else 1 for a in range(len(out))])
        return grid[None]

    def partial_windows(self, in_shape: Shape) -> bool:
        """Whether ceil_mode adds a window that runs past the padded input (else it changes nothing)."""
        return any(end != begin for begin, end in self.pads(in_shape))

    def check(self) -> None:
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError("kernel_size and stride must be >= 1 and padding >= 0")
        if any(p * 2 > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError("padding must be at most half the kernel size")
        if self.averages and self.ceil_mode:
            raise ValueError("an average pool with ceil_mode divides its partial windows by their own size: "
                             "express it as a sum pool and a Scale")


@dataclass(frozen=True, kw_only=True, eq=False)
class SumPool2d(_Pool):
    """y = sum over each window (zero padding) on (C, H, W); pairs are (H, W)."""

    numeric = "neutral"


@dataclass(frozen=True, kw_only=True, eq=False)
class SumPool1d(_Pool):
    """y = sum over each window (zero padding) on (C, L); sizes are 1-tuples."""

    numeric = "neutral"
    ndim: ClassVar[int] = 1
    padding: tuple[int, ...] = (0,)


@dataclass(frozen=True, kw_only=True, eq=False)
class AvgPool2d(_Pool):
    """y = (sum over each window) / (kH * kW)   (PyTorch count_include_pad=True, ceil_mode=False)."""

    averages = True


@dataclass(frozen=True, kw_only=True, eq=False)
class AvgPool1d(_Pool):
    """y = (sum over each window) / k   (PyTorch count_include_pad=True, ceil_mode=False) on (C, L)."""

    averages = True

    ndim: ClassVar[int] = 1
    padding: tuple[int, ...] = (0,)


@dataclass(frozen=True, kw_only=True, eq=False)
class Flatten(Op):
    """Merge dims start_dim..end_dim of the (unbatched) input shape, C-order."""

    numeric = "neutral"
    transparent = True

    start_dim: int = 0
    end_dim: int = -1

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is None:
            raise ValueError("needs an input")
        n = len(in_shape)
        start = self.start_dim + n if self.start_dim < 0 else self.start_dim
        end = self.end_dim + n if self.end_dim < 0 else self.end_dim
        if not (0 <= start <= end < n):
            raise ValueError(f"dims {self.start_dim}..{self.end_dim} do not fit input shape {tuple(in_shape)}")
        merged = int(np.prod(in_shape[start : end + 1]))
        return (*in_shape[:start], merged, *in_shape[end + 1 :])


@dataclass(frozen=True, kw_only=True, eq=False)
class Reshape(Op):
    """y = x with the same values in C order, laid out as `shape` (like torch.reshape; no arithmetic).

    prod(shape) must equal the input's element count. Frontends emit it for nn.Unflatten and a view/reshape that
    merges no contiguous dims; fuse_projections inserts it where a layer became flat (a CSR projection into it) and
    a convolution reads that layer as its map.
    """

    numeric = "neutral"
    transparent = True

    shape: Shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", as_shape(self.shape))
        super().__post_init__()

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is None:
            raise ValueError("needs an input")
        if int(np.prod(in_shape)) != int(np.prod(self.shape)):
            raise ValueError(f"cannot lay out the {int(np.prod(in_shape))} elements of input {tuple(in_shape)} as "
                             f"{self.shape} ({int(np.prod(self.shape))} elements)")
        return self.shape

    def check(self) -> None:
        if not self.shape or any(d <= 0 for d in self.shape):
            raise ValueError(f"shape {self.shape} must have at least one dimension, all positive")


@dataclass(frozen=True, kw_only=True, eq=False)
class Scale(Op):
    """y = x * scale (elementwise; `scale` broadcasts to the input shape)."""

    role = "projection"
    removed_by = "fuse_projections"
    scale: np.ndarray = array_field(np.float64)

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is None or not broadcastable(self.scale, tuple(in_shape)):
            raise ValueError(f"scale of shape {self.scale.shape} does not broadcast to input {in_shape}")
        return tuple(in_shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class Delay(Op):
    """y[t] = x[t - delay] elementwise (axonal delay in steps; `delay` broadcasts to the input shape)."""

    numeric = "neutral"
    transparent = True

    delay: np.ndarray = array_field(np.int64)

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is None or not broadcastable(self.delay, tuple(in_shape)):
            raise ValueError(f"delay of shape {self.delay.shape} does not broadcast to input {in_shape}")
        return tuple(in_shape)

    def check(self) -> None:
        if self.delay.size and self.delay.min() < 0:
            raise ValueError("delays must be >= 0 steps")


@dataclass(frozen=True, kw_only=True, eq=False)
class BatchNorm(Op):
    """Eval-mode batch norm over dim 0 (channels/features): y = (x - mean) / sqrt(var + eps) * weight + bias.

    Kept as a node by the frontends; `fold_bn` folds it into the preceding projection.
    """

    removed_by = "fold_bn"

    mean: np.ndarray = array_field(np.float64)
    var: np.ndarray = array_field(np.float64)
    weight: np.ndarray = array_field(np.float64)
    bias: np.ndarray = array_field(np.float64)
    eps: float = 1e-5

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is None or in_shape[0] != self.mean.shape[0]:
            raise ValueError(f"has {self.mean.shape[0]} channels but receives shape {in_shape}")
        return tuple(in_shape)

    def check(self) -> None:
        c = self.mean.shape
        if len(c) != 1 or any(a.shape != c for a in (self.var, self.weight, self.bias)):
            raise ValueError("mean, var, weight and bias must all have shape (C,)")
        if np.any(self.var < 0) or not self.eps > 0:
            raise ValueError("running variance must be >= 0 and eps > 0")


# Re-export neuron and integer ops so that `nmcompile.ir.ops` is the one place to import ops from. Importing
# them also registers them: OP_TYPES (from base.py) then holds every op of the package, by name.
from nmcompile.ir.integer import QConv, QLinear, QNeuron, QPlasticLinear  # noqa: E402
from nmcompile.ir.neurons import IF, LI, LIF, MPBNLIF, CubaLI, CubaLIF, NeuronOp  # noqa: E402
from nmcompile.ir.sparse import QSparseLinear  # noqa: E402

__all__ = [
    "IF", "LI", "LIF", "MPBNLIF", "OP_TYPES", "AvgPool1d", "AvgPool2d", "BatchNorm", "Constant", "Conv1d", "Conv2d",
    "CubaLI", "CubaLIF", "Delay", "Flatten", "Input", "Linear", "NeuronOp", "Op", "Output", "Provenance", "QConv",
    "QLinear", "QNeuron", "QPlasticLinear", "QSparseLinear", "Reshape", "Scale", "Shape", "SparseLinear", "SumPool1d",
    "SumPool2d", "conv_out_len", "same_op",
]
