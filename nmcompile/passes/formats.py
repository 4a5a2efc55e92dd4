"""Integer number formats of a target: weights (mantissa, exponent, sign mode), biases, thresholds, decays.

All rounding is to nearest (ties to even, numpy's `rint`); values outside a format are saturated and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nmcompile.ir import fixed


@dataclass(frozen=True)
class WeightFormat:
    sign_mode: str
    num_weight_bits: int
    low: int
    high: int
    step: int


def weight_format(target, values: np.ndarray) -> WeightFormat:
    """The widest representable range for these weights: with sign modes, an all-positive (or all-negative)
    projection uses the full 8 bits for its magnitude."""
    if target.sign_modes and values.size:
        if values.min() >= 0:
            low, high, step = fixed.weight_range("excitatory", 8)
            return WeightFormat("excitatory", 8, low, high, step)
        if values.max() <= 0:
            low, high, step = fixed.weight_range("inhibitory", 8)
            return WeightFormat("inhibitory", 8, low, high, step)
    return WeightFormat("mixed", target.num_weight_bits, target.weight_min, target.weight_max, target.weight_step)


def magnitude(fmt: WeightFormat) -> int:
    """The largest magnitude representable in the direction(s) the format covers."""
    return min(x for x in (abs(fmt.low), abs(fmt.high)) if x > 0) if fmt.low < 0 < fmt.high else max(abs(fmt.low),
                                                                                                      abs(fmt.high))


def choose_exponent(peak: float, fmt: WeightFormat, exp_range: tuple[int, int]) -> int:
    """Smallest exponent e in range with peak / 2^e within the format (peak: largest |ideal integer weight|)."""
    if peak <= 0:
        return exp_range[0]
    e = math.ceil(math.log2(peak / magnitude(fmt))) if peak > magnitude(fmt) else exp_range[0]
    while e < exp_range[1] and peak / 2.0**e > magnitude(fmt) + 1e-9:
        e += 1
    return int(min(max(e, exp_range[0]), exp_range[1]))


def quantize_weights(ideal: np.ndarray, fmt: WeightFormat, exponent: int) -> tuple[np.ndarray, int]:
    """Integer weights for ideal integer-domain values at `exponent`; returns (weights, count saturated)."""
    scaled = ideal / 2.0**exponent
    q = np.rint(scaled / fmt.step) * fmt.step
    clipped = int(np.count_nonzero((q < fmt.low) | (q > fmt.high)))
    return np.clip(q, fmt.low, fmt.high).astype(np.int64), clipped


def quantize_bias(ideal: np.ndarray, target) -> tuple[np.ndarray, np.ndarray, int]:
    """(bias_mant, bias_exp, saturated) per neuron with mant * 2^exp closest to `ideal`."""
    lo_m, hi_m = target.bias_mant_range
    lo_e, hi_e = target.bias_exp_range
    ideal = np.asarray(ideal, dtype=np.float64)
    mag = np.abs(ideal)
    with np.errstate(divide="ignore"):
        need = np.where(mag > hi_m, np.ceil(np.log2(np.maximum(mag, 1.0) / hi_m)), lo_e)
    exp = np.clip(need, lo_e, hi_e).astype(np.int64)
    mant = np.rint(ideal / 2.0**exp)
    saturated = int(np.count_nonzero((mant < lo_m) | (mant > hi_m)))
    return np.clip(mant, lo_m, hi_m).astype(np.int64), exp, saturated


def decay_code(keep: np.ndarray) -> np.ndarray:
    """dv for a voltage that keeps `keep` of itself per step: 4096 * (1 - keep), in 0..4096."""
    return np.clip(np.rint(fixed.DECAY_UNITY * (1.0 - np.asarray(keep, dtype=np.float64))), 0,
                   fixed.DECAY_UNITY).astype(np.int64)


def current_decay_code(keep: np.ndarray) -> np.ndarray:
    """du for a current that keeps `keep` per step (Lava adds 1 to du): 4096 * (1 - keep) - 1, in -1..4095."""
    return np.clip(decay_code(keep) - 1, -1, fixed.DECAY_UNITY - 1).astype(np.int64)
