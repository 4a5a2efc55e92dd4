"""How the FPGA design stores one projection's weights in its synapse memory (docs/formats/fpga.md).

    dense   a block [src_len, dst_len] of int8 weights, one row per source: a spike reads its row
    conv    the kernel (C_out, C_in, K_h, K_w) of a convolution, shared by every output position, and its geometry
            in a second table entry: nmcompile/hdl/nmc_conv_addr.v computes a spike's destinations and weight
            addresses from it
    csr     a row per source of (destination step, weight) pairs behind src_len + 1 row pointers, all 16-bit
            words: nmcompile/hdl/nmc_csr_addr.v reads a spike's row, one synapse per cycle (`CsrRows`)

A projection that is neither a kernel nor plastic is stored in whichever of dense and csr takes fewer bytes
(`csr_form`), dense on a tie; CSR rows too many for one entry's 16-bit row pointers take several entries, each a
range of sources (`csr_chunks`).

A convolution is stored as its kernel when the target's `KernelStorage` limits allow it and the compiler's
reciprocals divide exactly (below); otherwise it is expanded to its exact dense matrix, as any other projection.
The address generator splits a source index i into (c, y, x) with two divisions done as multiplications:
floor(i / d) = (i * m) >> s with s = 16 + ceil(log2 d), m = ceil(2^s / d) (Granlund & Montgomery, "Division by
invariant integers using multiplication", PLDI 1994, Theorem 4.2: exact for every i < 2^16); `reciprocal` checks
the identity on every index of the source range before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmcompile.lowered.weights import ConvWeights
from nmcompile.targets import FPGA_CSR_SYNAPSES

FORM_DENSE, FORM_CONV, FORM_CSR = 0, 1, 2   # the form field of a projection table entry (bits 94-95)
MAX_STEP = 255                 # the destination step of a CSR synapse is 8 bits


def reciprocal(divisor: int, count: int) -> tuple[int, int]:
    """(m, s) with (i * m) >> s == i // divisor for every 0 <= i < count (count <= 2^16)."""
    shift = 16 + max(divisor - 1, 0).bit_length()
    m = -(-(1 << shift) // divisor)
    i = np.arange(count, dtype=np.int64)
    if m >= 1 << 17 or shift >= 64 or np.any((i * m) >> shift != i // divisor):
        raise ValueError(f"no 17-bit reciprocal of {divisor} for {count} indices")
    return m, shift


@dataclass(frozen=True)
class ConvGeometry:
    """What the address generator needs of a 2-d convolution (a 1-d one has H = K_h = H_out = 1)."""

    in_c: int
    in_h: int
    in_w: int
    out_c: int
    out_h: int
    out_w: int
    k_h: int
    k_w: int
    stride_y: int
    stride_x: int
    pad_y: int
    pad_x: int

    @classmethod
    def of(cls, w: ConvWeights) -> ConvGeometry:
        if w.spatial_dims == 1:
            (k,), (s,), (p,) = w.kernel.shape[2:], w.stride, w.padding
            return cls(w.in_shape[0], 1, w.in_shape[1], w.out_shape[0], 1, w.out_shape[1], 1, k, 1, s, 0, p)
        return cls(w.in_shape[0], w.in_shape[1], w.in_shape[2], w.out_shape[0], w.out_shape[1], w.out_shape[2],
                   w.kernel.shape[2], w.kernel.shape[3], w.stride[0], w.stride[1], w.padding[0], w.padding[1])

    def entry(self) -> bytes:
        """The 24-byte second table entry (docs/formats/fpga.md, "conv geometry entry")."""
        src_len = self.in_c * self.in_h * self.in_w
        m_hw, s_hw = reciprocal(self.in_h * self.in_w, src_len)
        m_w, s_w = reciprocal(self.in_w, self.in_h * self.in_w)
        fields = ((m_hw, 0, 17), (s_hw, 17, 6), (m_w, 24, 17), (s_w, 41, 6), (self.in_h * self.in_w, 48, 16),
                  (self.in_w, 64, 16), (self.out_w, 80, 16), (self.out_h * self.out_w, 96, 16),
                  (self.out_h, 112, 16), (self.k_h, 128, 5), (self.k_w, 133, 5),
                  (self.stride_y.bit_length() - 1, 138, 2), (self.stride_x.bit_length() - 1, 140, 2),
                  (self.pad_y, 144, 5), (self.pad_x, 149, 5), (self.k_h * self.k_w, 154, 10), (self.out_c, 164, 10),
                  (self.in_c * self.k_h * self.k_w, 176, 16))
        word = 0
        for value, low, bits in fields:
            if not 0 <= value < 1 << bits:
                raise ValueError(f"conv geometry field at bit {low}: {value} does not fit {bits} bits")
            word |= value << low
        return word.to_bytes(24, "little")

    def fan_out(self) -> np.ndarray:
        """Synapses per source (C order over (C_in, H, W)): C_out x the taps that reach an output along y and x."""
        def taps(n: int, k: int, stride: int, pad: int, out: int) -> np.ndarray:
            t = np.arange(n)[:, None] + pad - np.arange(k)[None, :]
            return ((t >= 0) & (t % stride == 0) & (t // stride < out)).sum(axis=1)

        per_position = (taps(self.in_h, self.k_h, self.stride_y, self.pad_y, self.out_h)[:, None]
                        * taps(self.in_w, self.k_w, self.stride_x, self.pad_x, self.out_w)[None, :])
        return np.broadcast_to(self.out_c * per_position, (self.in_c, self.in_h, self.in_w)).reshape(-1)

    def scatter(self, index: int) -> list[tuple[int, int]]:
        """(kernel offset, output offset) of every synapse from source `index`, in the generator's order (o, ky,
        kx): the Python statement of nmcompile/hdl/nmc_conv_addr.v."""
        c, r = divmod(index, self.in_h * self.in_w)
        y, x = divmod(r, self.in_w)
        ty, tx = y + self.pad_y, x + self.pad_x
        ky_taps = [k for k in range(self.k_h) if k <= ty and (ty - k) % self.stride_y == 0
                   and (ty - k) // self.stride_y < self.out_h]
        kx_taps = [k for k in range(self.k_w) if k <= tx and (tx - k) % self.stride_x == 0
                   and (tx - k) // self.stride_x < self.out_w]
        return [(((o * self.in_c + c) * self.k_h + ky) * self.k_w + kx,
                 (o * self.out_h + (ty - ky) // self.stride_y) * self.out_w + (tx - kx) // self.stride_x)
                for o in range(self.out_c) for ky in ky_taps for kx in kx_taps]


def kernel_geometry(w: ConvWeights, target) -> ConvGeometry | None:
    """The geometry when `target` stores this convolution as its kernel, else None (stored dense)."""
    kernels = target.synapse_format.kernels
    if kernels is None or kernels.stores(w.kernel.shape, w.stride, w.padding, w.dilation, w.groups, w.in_shape,
                                         w.out_shape):
        return None
    geometry = ConvGeometry.of(w)
    try:
        geometry.entry()
    except ValueError:
        return None
    return geometry


def _row_steps(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows and columns of the block's non-zero weights (row-major), each one's gap from the previous destination of
    its row (from 0 for the first) and the filler pairs that bridge it: (gap - 1) // 255 when gap > 0."""
    rows, cols = np.nonzero(block)
    first = np.ones(rows.size, dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    previous = np.zeros(cols.size, dtype=np.int64)
    previous[1:] = cols[:-1]
    gap = cols - np.where(first, 0, previous)
    return rows, cols, gap, np.where(gap > 0, (gap - 1) // MAX_STEP, 0)


@dataclass(frozen=True)
class CsrRows:
    """A block [src_len, dst_len] of int8 weights as CSR rows, one per source, its non-zero weights only.

    Row j lists its destinations o_1 < o_2 < ... as 8-bit steps: o_1 = step_1, o_k = o_(k-1) + step_k; a gap over
    255 is bridged by pairs of weight 0 and step 255 (adding 0 is exact), so a synapse at gap g from the previous
    destination takes 1 + (g - 1) // 255 pairs. `pointers[j]` is row j's first pair; row j ends at
    `pointers[j + 1]`; a table entry's pointers are 16-bit, so it holds at most FPGA_CSR_SYNAPSES pairs.
    """

    pointers: np.ndarray          # [src_len + 1] int64
    weights: np.ndarray           # [pairs] int64 (int8 values)
    steps: np.ndarray             # [pairs] int64, 0..255

    @classmethod
    def of(cls, block: np.ndarray) -> CsrRows:
        rows, cols, gap, fillers = _row_steps(block)
        last = np.cumsum(fillers + 1) - 1                 # each synapse's own pair, after its fillers
        pairs = int(last[-1]) + 1 if last.size else 0
        if pairs > FPGA_CSR_SYNAPSES:
            raise ValueError(f"{pairs:,} CSR pairs; one table entry counts {FPGA_CSR_SYNAPSES:,}")
        weights = np.zeros(pairs, dtype=np.int64)
        steps = np.full(pairs, MAX_STEP, dtype=np.int64)
        weights[last] = block[rows, cols]
        steps[last] = gap - MAX_STEP * fillers
        counts = np.bincount(rows, weights=fillers + 1, minlength=block.shape[0]).astype(np.int64)
        return cls(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), weights, steps)

    @property
    def pairs(self) -> int:
        return int(self.weights.size)

    def image(self) -> np.ndarray:
        """The stored bytes from w_base: row pointers, then (weight, step) pairs, 16-bit little-endian words."""
        words = np.concatenate([self.pointers, (self.weights & 0xFF) | self.steps << 8])
        return np.stack([words & 0xFF, words >> 8], axis=1).reshape(-1)

    def row(self, source: int) -> list[tuple[int, int]]:
        """(destination offset, weight) of every pair of a source's row, in the generator's order: the Python
        statement of nmcompile/hdl/nmc_csr_addr.v."""
        out, destination = [], 0
        for k in range(int(self.pointers[source]), int(self.pointers[source + 1])):
            destination += int(self.steps[k])
            out.append((destination, int(self.weights[k])))
        return out


def csr_chunks(block: np.ndarray) -> list[tuple[int, int]] | None:
    """Source ranges [a, b) of the block whose CSR rows fit one table entry each (consecutive, covering every
    source), or None when one row alone is too long."""
    rows, _, _, fillers = _row_steps(block)
    per_row = np.bincount(rows, weights=fillers + 1, minlength=block.shape[0]).astype(np.int64)
    if per_row.max(initial=0) > FPGA_CSR_SYNAPSES:
        return None
    chunks, start, used = [], 0, 0
    for j, n in enumerate(per_row.tolist()):
        if used + n > FPGA_CSR_SYNAPSES:
            chunks.append((start, j))
            start, used = j, 0
        used += n
    chunks.append((start, block.shape[0]))
    return chunks


def csr_bytes(block: np.ndarray, chunks: list[tuple[int, int]]) -> int:
    """Bytes of the block stored as CSR rows in the given chunks (a spare byte each: an entry starts even)."""
    _, _, _, fillers = _row_steps(block)
    pairs = int(np.count_nonzero(block)) + int(fillers.sum())
    return 2 * pairs + sum(2 * (b - a + 1) + 1 for a, b in chunks)


def csr_form(block: np.ndarray) -> list[tuple[int, int]] | None:
    """The chunks of a block [src_len, dst_len] when its CSR rows take fewer bytes than the block, else None
    (stored dense: dense wins ties)."""
    chunks = csr_chunks(block)
    return chunks if chunks is not None and csr_bytes(block, chunks) < block.size else None
