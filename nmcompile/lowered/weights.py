"""Weight storage forms of a lowered projection: how its synapses are declared, not how a backend lays them out.

    DenseWeights   matrix[out, in]; synapse (j, i) exists where matrix[j, i] != 0
    ConvWeights    kernel (C_out, C_in/groups, *K) with stride, padding, dilation, groups and the input/output
                   shapes: PyTorch cross-correlation, zero padding; one kernel shared by every output position
    CsrWeights     rows indptr/indices/values over [out, in] (SparseLinear)

Values are the op's stored values (integer mantissas after quantize, floats before); the projection's
`sign_mode`, `num_weight_bits` and `weight_exp` say how the integer model uses them. Every form can be expanded
to its exact dense matrix (`to_dense`), and every form lists the stored synapses of some output rows
(`row_synapses`) without that expansion: a backend that stores synapses one by one (spinnaker2) cuts a core's
rows from the kernel or the CSR arrays, in time and memory proportional to those synapses.
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

    def row_synapses(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position in `rows`, input index, value) of every non-zero entry of `matrix[rows]`, row by row, inputs
        ascending."""
        post, pre = np.nonzero(self.matrix[rows])
        return post, pre, self.matrix[rows[post], pre]


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
        """The exact [out, in] matrix: entries repeating an input index in a row are summed, as the integer model
        sums them; integer sums are formed in int64 and kept in the values' dtype only when they fit it (a sum
        that does not fit stays wide, so a target's weight check sees it and refuses rather than wraps)."""
        rows = np.repeat(np.arange(self.shape[0]), self.row_nnz)
        kind = self.values.dtype.kind
        wide = np.int64 if kind in "iu" else self.values.dtype
        out = np.zeros(self.shape, dtype=wide)
        np.add.at(out, (rows, self.indices), self.values.astype(wide))
        if kind in "iu":
            info = np.iinfo(self.values.dtype)
            if out.size == 0 or (out.min() >= info.min and out.max() <= info.max):
                return out.astype(self.values.dtype)
        return out

    def row_synapses(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position in `rows`, input index, value) of every stored entry of those rows, row by row, inputs
        ascending (a repeated input index stays: the integer model sums both entries)."""
        counts = self.row_nnz[rows]
        post = np.repeat(np.arange(rows.size), counts)
        first = np.repeat(self.indptr[rows] - (np.cumsum(counts) - counts), counts)
        entries = first + np.arange(post.size)
        pre = self.indices[entries].astype(np.int64)
        order = np.lexsort((pre, post))
        return post[order], pre[order], self.values[entries[order]]


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

    def row_synapses(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position in `rows`, input index, value) of the synapses of those output units (flat, C order), row by
        row, inputs ascending: output (c, o) reads input (g C_in/groups + ci, o * stride + k * dilation - padding)
        with kernel[c, ci, k] for every non-zero tap k whose input lies inside the input (zero padding holds no
        synapse). These are the non-zero entries of `to_dense()[rows]`, without building it."""
        nd, kernel = self.spatial_dims, self.kernel
        cin_g = kernel.shape[1]
        cout_g = kernel.shape[0] // self.groups
        out = np.unravel_index(rows, self.out_shape)                       # (c, o_0, ...) per row
        taps = np.indices(kernel.shape[1:]).reshape(nd + 1, -1)            # (ci, k_0, ...) per tap, C order
        weight = kernel.reshape(kernel.shape[0], -1)[out[0]]               # [rows, taps]
        keep = weight != 0
        channel = (out[0] // cout_g * cin_g)[:, None] + taps[0][None, :]
        pre = channel
        for axis in range(nd):
            pos = (out[1 + axis][:, None] * self.stride[axis] + taps[1 + axis][None, :] * self.dilation[axis]
                   - self.padding[axis])
            size = self.in_shape[1 + axis]
            keep &= (pos >= 0) & (pos < size)
            pre = pre * size + pos
        post, tap = np.nonzero(keep)
        return post, pre[post, tap].astype(np.int64), weight[post, tap]


Weights = DenseWeights | ConvWeights | CsrWeights
