"""Weight storage forms of a lowered projection: how its synapses are declared, not how a backend lays them out.

    DenseWeights   matrix[out, in]; synapse (j, i) exists where matrix[j, i] != 0
    ConvWeights    kernel (C_out, C_in/groups, *K) with stride, padding, dilation, groups and the input/output
                   shapes: PyTorch cross-correlation, zero padding; one kernel shared by every output position
    CsrWeights     rows indptr/indices/values over [out, in] (SparseLinear)

Values are the op's stored values (integer mantissas after quantize, floats before); the projection's
`sign_mode`, `num_weight_bits` and `weight_exp` say how the integer model uses them. Every form can be expanded
to its exact dense matrix (`to_dense`), which a backend without weight sharing stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from nmcompile.ir import arraymath

Shape = tuple[int, ...]


@dataclass(frozen=True, eq=False)
class DenseWeights:
    form: ClassVar[str] = "dense"
    matrix: np.ndarray                        # [out, in]

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.matrix.shape[0]), int(self.matrix.shape[1]))

    @cached_property
    def row_nnz(self) -> np.ndarray:
        return (self.matrix != 0).sum(axis=1).astype(np.int64)

    @cached_property
    def fully_dense(self) -> bool:
        return bool(np.all(self.matrix != 0))

    def to_dense(self) -> np.ndarray:
        return self.matrix


@dataclass(frozen=True, eq=False)
class CsrWeights:
    form: ClassVar[str] = "csr"
    indptr: np.ndarray                        # [out + 1]
    indices: np.ndarray                       # [nnz] input index of each synapse
    values: np.ndarray                        # [nnz]
    n_in: int

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.indptr.shape[0]) - 1, self.n_in)

    @cached_property
    def row_nnz(self) -> np.ndarray:
        return np.diff(self.indptr).astype(np.int64)

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=self.values.dtype)
        rows = np.repeat(np.arange(self.shape[0]), self.row_nnz)
        out[rows, self.indices] = self.values
        return out


@dataclass(frozen=True, eq=False)
class ConvWeights:
    form: ClassVar[str] = "conv"
    kernel: np.ndarray                        # (C_out, C_in / groups, *K)
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    in_shape: Shape                           # (C_in, *spatial) the convolution reads
    out_shape: Shape                          # (C_out, *spatial_out)

    @property
    def spatial_dims(self) -> int:
        return self.kernel.ndim - 2

    @property
    def shape(self) -> tuple[int, int]:
        return (int(np.prod(self.out_shape)), int(np.prod(self.in_shape)))

    def to_dense(self) -> np.ndarray:
        """The exact [out, in] matrix (C-order flat indices): the convolution of every unit input."""
        n_in = int(np.prod(self.in_shape))
        eye = np.eye(n_in, dtype=self.kernel.dtype).reshape(n_in, *self.in_shape)
        if self.kernel.dtype.kind == "i":
            columns = arraymath.int_conv(eye, self.kernel, self.stride, self.padding, self.dilation, self.groups)
        else:
            columns = arraymath.conv(eye, self.kernel, self.stride, self.padding, self.dilation, self.groups)
        return np.ascontiguousarray(columns.reshape(n_in, -1).T)


Weights = DenseWeights | ConvWeights | CsrWeights
