"""The network of the digits example: 64 rate-coded pixels -> 64 LIF -> 10 LIF (snnTorch, one step per call).

The neurons reset to zero: the reset Loihi's LIF implements, so the example compiles for every target.

`make_model()` is the factory nmcompile needs to rebuild the trained network from its state dict:

    nmcompile inspect examples/digits/digits.pt --model examples/digits/model.py:make_model
"""

from __future__ import annotations

import numpy as np
import snntorch as snn
from torch import nn

INPUT_SHAPE = (64,)   # 8x8 pixels, flattened
STEPS = 25            # time steps per sample
CLASSES = 10


def make_model() -> nn.Module:
    spike_grad = snn.surrogate.atan()
    return nn.Sequential(
        nn.Linear(64, 64),
        snn.Leaky(beta=0.9, init_hidden=True, spike_grad=spike_grad, reset_mechanism="zero"),
        nn.Linear(64, CLASSES),
        snn.Leaky(beta=0.9, init_hidden=True, spike_grad=spike_grad, reset_mechanism="zero"),
    )


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits (shipped with scikit-learn, no download), scaled to [0, 1]; 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float64)
    return train_test_split(x, data.target, test_size=0.25, random_state=seed, stratify=data.target)


def encode(x: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """Deterministic rate code: [T, N, 64] spikes for intensities x [N, 64]."""
    from nmcompile.encoding import rate_encode

    return rate_encode(x, steps)
