"""Sparse (CSR) projections: the row structure both forms share, and the integer form of a SparseLinear.

CSR rows over a weight matrix [out, in]: row j holds the synapses indptr[j]..indptr[j+1]-1, synapse k reads
input indices[k] with value values[k]. Only declared synapses exist; an integer value of 0 is a declared synapse
that carries nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmcompile.ir import fixed
from nmcompile.ir.base import Op, Shape, array_field


def check_csr(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, in_features: int) -> None:
    """Raise ValueError unless (indptr, indices, values) are CSR rows over `in_features` inputs."""
    if indptr.ndim != 1 or indptr.size < 2 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError("indptr must start at 0 and never decrease")
    if indices.shape != values.shape or indptr[-1] != indices.size:
        raise ValueError("indices and values must both have indptr[-1] entries")
    if indices.size and (indices.min() < 0 or indices.max() >= in_features):
        raise ValueError(f"column indices must lie in 0..{in_features - 1}")


def row_of_entries(indptr: np.ndarray) -> np.ndarray:
    """The output row of every stored entry (its position in `values`)."""
    return np.repeat(np.arange(indptr.size - 1), np.diff(indptr))


class CsrShape:
    """Shapes of a CSR projection (`indptr`, `in_features`): input (in_features,), output (len(indptr) - 1,)."""

    @property
    def out_features(self) -> int:
        return int(self.indptr.shape[0]) - 1

    def out_shape(self, in_shape: Shape | None) -> Shape:
        if in_shape is not None and tuple(in_shape) != (self.in_features,):
            raise ValueError(f"expects input ({self.in_features},) but receives {tuple(in_shape)}")
        return (self.out_features,)


@dataclass(frozen=True, kw_only=True, eq=False)
class QSparseLinear(CsrShape, Op):
    """Integer CSR projection, QLinear's arithmetic on the declared synapses only (Lava Sparse, bit-accurate):

        W'_k   = prepared_weights(values_k, sign_mode, num_weight_bits)      (clip + truncate, fixed.py)
        a_j[t + delay] = floor_shift( sum over k in row j of W'_k * x_{indices[k]}[t], weight_exp )
    """

    role = "projection"
    numeric = "integer"
    weighted = True
    storage = "csr"
    indptr: np.ndarray = array_field(np.int64)
    indices: np.ndarray = array_field(np.int32)
    values: np.ndarray = array_field(np.int64)
    in_features: int
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str = "mixed"
    delay: int = 1

    def check(self) -> None:
        check_csr(self.indptr, self.indices, self.values, self.in_features)
        if self.sign_mode not in fixed.SIGN_MODES:
            raise ValueError(f"sign_mode must be one of {fixed.SIGN_MODES}, got {self.sign_mode!r}")
        if not 1 <= self.num_weight_bits <= 9:
            raise ValueError(f"num_weight_bits must be in 1..9, got {self.num_weight_bits}")
        if self.delay < 0:
            raise ValueError("delay must be >= 0 steps")

    def effective_values(self) -> np.ndarray:
        return fixed.prepared_weights(self.values, self.sign_mode, self.num_weight_bits)
