"""The shipped digits example: the IR's float simulation classifies the test set exactly like the model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from nmcompile.api import SourceOptions, load_source
from nmcompile.frontend.check import float64_model, torch_forward
from nmcompile.ir.simulate import simulate

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
sys.path.insert(0, str(DIGITS))
from model import encode, load_digits_split  # noqa: E402


def test_checkpoint_is_a_plain_state_dict():
    state = torch.load(DIGITS / "digits.pt", weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"} | {k for k in state if k.startswith(("1.", "3."))}


def test_ir_accuracy_equals_torch_accuracy():
    source = load_source(DIGITS / "digits.pt", SourceOptions(model=f"{DIGITS / 'model.py'}:make_model"))
    _, x_test, _, y_test = load_digits_split()
    spikes = encode(x_test).astype(np.float64)  # [T, N, 64]
    theirs = torch_forward(source.model, source.trace, spikes).sum(axis=0)
    ours = simulate(source.graph, spikes, mode="float32").output.sum(axis=0)
    np.testing.assert_array_equal(ours, theirs)  # identical spike counts per class, float32 as trained
    with float64_model(source.model) as m64:
        theirs64 = torch_forward(m64, source.trace, spikes).sum(axis=0)
    ours64 = simulate(source.graph, spikes).output.sum(axis=0)
    np.testing.assert_array_equal(ours64, theirs64)
    accuracy_torch = float(np.mean(theirs.argmax(axis=1) == y_test))
    accuracy_ir = float(np.mean(ours.argmax(axis=1) == y_test))
    print(f"digits test accuracy: torch {accuracy_torch:.4f}, IR float {accuracy_ir:.4f}")
    assert accuracy_ir == accuracy_torch > 0.9
