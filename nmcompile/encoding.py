"""Turning analog inputs into spike trains (for converted ANNs, examples and tests)."""

from __future__ import annotations

import numpy as np

from nmcompile.errors import ShapeError


def rate_encode(x: np.ndarray, steps: int, method: str = "regular", seed: int = 0) -> np.ndarray:
    """Spike trains [T, N, *shape] for intensities x [N, *shape] in [0, 1].

    regular:   a spike at step t when floor((t + 1) * x) > floor(t * x) (exactly floor(T * x) spikes, evenly spaced)
    bernoulli: independent spikes with probability x at every step (seeded)
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size and (x.min() < 0 or x.max() > 1 or not np.all(np.isfinite(x))):
        raise ShapeError(f"rate coding needs intensities in [0, 1]; got values in [{x.min():.3g}, {x.max():.3g}]")
    if method == "regular":
        t = np.arange(steps + 1, dtype=np.float64).reshape((-1,) + (1,) * x.ndim)
        counts = np.floor(t * x)
        return (counts[1:] - counts[:-1]).astype(np.int8)
    if method == "bernoulli":
        rng = np.random.default_rng(seed)
        return (rng.random((steps, *x.shape)) < x).astype(np.int8)
    raise ShapeError(f"unknown rate coding {method!r}; use 'regular' or 'bernoulli'")
