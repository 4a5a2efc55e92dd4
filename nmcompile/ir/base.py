"""The base of every IR operation: a frozen dataclass with numpy parameters, a shape rule and `verify()`.

Array parameters are declared with `array_field()`; they are converted to read-only numpy arrays of the
declared dtype on construction, so an op can never be mutated after it is built. Equality is by value
(`same_op`), not identity and not the dataclass default (which fails on numpy fields).

What passes and the simulator need to know about a kind of op lives on its class as ClassVars (`role`,
`numeric`, `weighted`, `transparent`, `removed_by`), never in lists of kind names. Every concrete op class
registers itself by name in `OP_TYPES` (what `.nmir` files are read with); a base class that is not an op
of its own says `abstract=True`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from nmcompile.errors import GraphError, NumericError

Shape = tuple[int, ...]

ROLES = ("io", "projection", "neuron", "structural")
STORAGES = ("dense", "conv", "csr")   # weight[out, in]; a kernel with conv geometry; CSR indptr/indices/values
NUMERICS = ("float", "integer", "neutral")   # neutral: exact in float and integer graphs alike

OP_TYPES: dict[str, type[Op]] = {}           # every concrete op class by name (its `kind`), filled on definition


@dataclass(frozen=True)
class Provenance:
    """Where a node came from: the framework and its own name for the thing (module path, NIR node name)."""

    framework: str
    source: str

    def __str__(self) -> str:
        return f"{self.framework}:{self.source}"


def array_field(dtype: type, *, optional: bool = False, default: Any = dataclasses.MISSING) -> Any:
    """Declare a numpy-array parameter. `optional` fields default to None (absent)."""
    if optional:
        default = None
    return field(default=default, metadata={"array": True, "dtype": dtype})


def optional_field(default: Any) -> Any:
    """Declare a scalar parameter that dumps and `.nmir` files carry only when it differs from `default`, so graphs
    that do not use it keep their text form and digests (a reader gets the default back)."""
    return field(default=default, metadata={"optional": True})


def conv_out_len(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's output length: floor((N + 2p - d(k-1) - 1) / s + 1)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def as_shape(value: Any) -> Shape:
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    return tuple(int(v) for v in value)


def as_tuple(value: Any, n: int, what: str) -> tuple[int, ...]:
    """Normalise an int or an n-sequence to an n-tuple (one value per spatial axis)."""
    items = [int(value)] if isinstance(value, (int, np.integer)) else [int(v) for v in np.asarray(value).reshape(-1)]
    if len(items) == 1:
        return tuple(items) * n
    if len(items) != n:
        raise GraphError(f"{what} must be an int or {n} values, got {value!r}")
    return tuple(items)


def as_pair(value: Any, what: str) -> tuple[int, int]:
    """Normalise an int or a 2-sequence to an (H, W) pair."""
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    items = [int(v) for v in np.asarray(value).reshape(-1)]
    if len(items) == 1:
        return (items[0], items[0])
    if len(items) != 2:
        raise GraphError(f"{what} must be an int or a pair, got {value!r}")
    return (items[0], items[1])


@dataclass(frozen=True, kw_only=True, eq=False)
class Op:
    """Base of all IR ops. Subclasses set their categories and implement `out_shape` and `check`."""

    role: ClassVar[str] = "structural"    # one of ROLES
    numeric: ClassVar[str] = "float"      # one of NUMERICS: which graphs may hold it (Graph.verify)
    weighted: ClassVar[bool] = False      # a projection with a weight matrix or kernel (Linear, Conv, QLinear...)
    transparent: ClassVar[bool] = False   # values through unweighted (Flatten, Reshape, Delay): walkers step over it
    removed_by: ClassVar[str | None] = None  # the pass that must remove it before quantize (BatchNorm: fold_bn)
    storage: ClassVar[str | None] = None  # weighted ops: how the weights are declared, one of STORAGES
    provenance: Provenance | None = None

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__name__
        if cls.role not in ROLES or cls.numeric not in NUMERICS:
            raise TypeError(f"op {name}: role must be one of {ROLES} and numeric one of {NUMERICS}")
        if cls.weighted and cls.role != "projection":
            raise TypeError(f"op {name}: a weighted op must have role 'projection'")
        if cls.weighted != (cls.storage in STORAGES):
            raise TypeError(f"op {name}: a weighted op declares its weight storage (one of {STORAGES}), others none")
        if cls.transparent and (cls.weighted or cls.numeric != "neutral"):
            raise TypeError(f"op {name}: a transparent op must be unweighted and numeric 'neutral'")
        if cls.removed_by is not None and cls.numeric == "integer":
            raise TypeError(f"op {name}: an integer op cannot be removed before quantize")
        if abstract:
            return
        known = OP_TYPES.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"op {name} ({cls.__module__}) has the name of {known.__module__}.{known.__qualname__}; "
                            "op names must be unique (they are the kind in .nmir files)")
        OP_TYPES[name] = cls

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not f.metadata.get("array"):
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            array = np.array(value, dtype=f.metadata["dtype"], copy=True)
            array.setflags(write=False)
            object.__setattr__(self, f.name, array)

    # -- interface -------------------------------------------------------------------------------------
    def out_shape(self, in_shape: Shape | None) -> Shape:
        """Output shape (without batch or time) for an input of `in_shape`."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise ValueError describing the first problem with this op's own parameters."""

    def expects_input(self) -> bool:
        """Whether the op needs at least one incoming edge."""
        return True

    # -- helpers ---------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return type(self).__name__

    def array_params(self) -> dict[str, np.ndarray]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("array") and getattr(self, f.name) is not None
        }

    def scalar_params(self) -> dict[str, Any]:
        """Non-array parameters (an `optional_field` at its default is left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.metadata.get("array") and f.name != "provenance"
            and not (f.metadata.get("optional") and getattr(self, f.name) == f.default)
        }

    def replace(self, **changes: Any) -> Op:
        return dataclasses.replace(self, **changes)

    def verify(self, name: str) -> None:
        """Check finiteness of every float array and the op's own rules; raise GraphError naming the node."""
        for key, array in self.array_params().items():
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                bad = "NaN" if np.isnan(array).any() else "inf"
                raise NumericError(
                    f"node '{name}' ({self.kind}): parameter '{key}' contains {bad}; "
                    "the model was saved from a diverged training run or the file is corrupt"
                )
        try:
            self.check()
        except ValueError as err:
            raise GraphError(f"node '{name}' ({self.kind}): {err}") from None


def same_op(a: Op, b: Op) -> bool:
    """Value equality of two ops: same class, same scalars, arrays equal in dtype, shape and every element."""
    if type(a) is not type(b):
        return False
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.metadata.get("array"):
            if (x is None) != (y is None):
                return False
            if x is not None and (x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def broadcastable(array: np.ndarray, shape: Shape) -> bool:
    """Whether `array` broadcasts to `shape` without changing it (scalar, per-channel or full)."""
    try:
        return np.broadcast_shapes(array.shape, shape) == tuple(shape)
    except ValueError:
        return False
