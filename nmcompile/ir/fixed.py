"""Integer arithmetic of the golden model: Lava 0.10's bit-accurate CUBA LIF and Dense (lava_loihi.md §3.2).

All functions take and return int64 numpy arrays. Shifts by a negative amount shift the other way. Two
roundings appear and must not be confused:

    trunc_shift(x, n) = sign(x) * (|x| >> n)   rounds toward zero  (neuron decays)
    floor_shift(x, n) = x >> n                 rounds toward -inf  (weight_exp < 0 on an accumulated sum)

The compiled loops of nmcompile.ir.jit restate decay, wrap_current and clip_voltage per scalar; tests/ir/test_jit.py
checks them equal to these functions, including int64 wrap-around and the 24-bit edges.
"""

from __future__ import annotations

import numpy as np

UV_BITS = 24                      # u and v are 24-bit signed
UV_LIMIT = 1 << (UV_BITS - 1)     # M = 2^23
DECAY_BITS = 12                   # du, dv are 12-bit; a decay multiplies by (4096 - d) / 4096
DECAY_UNITY = 1 << DECAY_BITS
ACT_SHIFT = 6                     # synaptic input enters u as a << 6
VTH_SHIFT = 6                     # the effective threshold is vth << 6
VTH_BITS = 17                     # vth is an unsigned 17-bit mantissa in Lava's bit-accurate model
BIAS_MANT_BITS = 13               # signed bias mantissa
WEIGHT_BITS = 8                   # weight mantissa before sign-mode handling
SIGN_MODES = ("mixed", "excitatory", "inhibitory")


def shift_left(x: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """x << n for n >= 0, floor(x / 2^-n) (arithmetic right shift) for n < 0; elementwise in int64."""
    x = np.asarray(x, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    return np.where(n >= 0, np.left_shift(x, np.maximum(n, 0)), np.right_shift(x, np.maximum(-n, 0)))


def floor_shift(x: np.ndarray, exp: int) -> np.ndarray:
    """Lava Dense's weight exponent on the accumulated sum: acc << exp, or acc >> -exp (floor)."""
    x = np.asarray(x, dtype=np.int64)
    return np.left_shift(x, exp) if exp > 0 else np.right_shift(x, -exp)


def trunc_shift(x: np.ndarray, n: int) -> np.ndarray:
    """sign(x) * (|x| >> n): division by 2^n rounding toward zero."""
    x = np.asarray(x, dtype=np.int64)
    return np.sign(x) * np.right_shift(np.abs(x), n)


def decay(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """trunc12(x * (4096 - d)): Lava's decay (pass d = du + 1 for the current, d = dv for the voltage)."""
    return trunc_shift(np.asarray(x, dtype=np.int64) * (DECAY_UNITY - np.asarray(d, dtype=np.int64)), DECAY_BITS)


def wrap_current(u: np.ndarray) -> np.ndarray:
    """Lava's single conditional wrap of u: u - 2M if u > M, u + 2M if u <= -M (not a modulo)."""
    m = UV_LIMIT
    return np.where(u > m, u - 2 * m, np.where(u <= -m, u + 2 * m, u))


def clip_voltage(v: np.ndarray) -> np.ndarray:
    """Clip v to +-(2^23 - 1)."""
    return np.clip(v, -(UV_LIMIT - 1), UV_LIMIT - 1)


def wrap_signed(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap to `bits` bits: (x + 2^(b-1)) mod 2^b - 2^(b-1) (Lava Conv's signed_clamp)."""
    half = 1 << (bits - 1)
    return np.mod(np.asarray(x, dtype=np.int64) + half, 2 * half) - half


def effective_bias(bias_mant: np.ndarray, bias_exp: np.ndarray) -> np.ndarray:
    """bias_mant << bias_exp (arithmetic right shift for a negative exponent)."""
    return shift_left(bias_mant, bias_exp)


def prepared_weights(weight: np.ndarray, sign_mode: str, num_weight_bits: int) -> np.ndarray:
    """The weights Lava's bit-accurate Dense actually uses: clip to 8 bits by sign mode, then drop the low
    k = 8 - num_weight_bits + (mixed) bits (for inhibitory the magnitude is truncated)."""
    w = np.asarray(weight, dtype=np.int64)
    mixed = sign_mode == "mixed"
    inhibitory = sign_mode == "inhibitory"
    if inhibitory:
        w = -w
    w = np.clip(w, -(1 << WEIGHT_BITS) if mixed else 0, (1 << WEIGHT_BITS) - 1)
    k = WEIGHT_BITS - num_weight_bits + int(mixed)
    if k > 0:
        w = np.left_shift(np.right_shift(w, k), k)
    return -w if inhibitory else w


def weight_range(sign_mode: str, num_weight_bits: int) -> tuple[int, int, int]:
    """(lowest, highest, step) of the weights that survive `prepared_weights` unchanged."""
    k = max(WEIGHT_BITS - num_weight_bits + int(sign_mode == "mixed"), 0)
    step = 1 << k
    top = ((1 << WEIGHT_BITS) - 1) >> k << k
    if sign_mode == "mixed":
        return -(1 << WEIGHT_BITS), top, step
    if sign_mode == "inhibitory":
        return -top, 0, step
    return 0, top, step
