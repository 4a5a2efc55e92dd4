"""How the FPGA design stores one projection's weights in its synapse memory (docs/formats/fpga.md).

    dense   a block [src_len, dst_len] of int8 weights, one row per source: a spike reads its row
    conv    the kernel (C_out, C_in, K_h, K_w) of a convolution, shared by every output position, and its geometry
            in a second table entry: nmcompile/hdl/nmc_conv_addr.v computes a spike's destinations and weight
            addresses from it

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

FORM_DENSE, FORM_CONV = 0, 1           # the form field of a projection table entry (bits 94-95)


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
