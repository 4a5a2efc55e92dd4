"""ANN-to-SNN conversion by target: an ONNX digits MLP converts with reset by subtraction where the target has it
and with reset to zero and its own threshold balancing where it does not (loihi2); either way report.md states
the conversion's accuracy on the calibration data, and the loihi2 artifact runs bit-exactly in Lava's simulator."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.frontend.onnx import balance_reset_to_zero, convert, evaluate, read_onnx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
from model import load_digits_split  # noqa: E402


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory) -> tuple[Path, Path, tuple]:
    """A ReLU MLP trained on sklearn's digits, exported to ONNX, and a calibration .npz (held-out x, y)."""
    x_tr, x_te, y_tr, y_te = load_digits_split()
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    x, y = torch.tensor(x_tr, dtype=torch.float32), torch.tensor(y_tr)
    optimizer = torch.optim.Adam(mlp.parameters(), 3e-3)
    for _ in range(40):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            batch = order[i : i + 64]
            loss = nn.functional.cross_entropy(mlp(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    folder = tmp_path_factory.mktemp("digits_mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mlp.eval(), torch.zeros(1, 64), str(folder / "mlp.onnx"), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    np.savez(folder / "calib.npz", x=x_te, y=y_te)
    return folder / "mlp.onnx", folder / "calib.npz", (x_tr, x_te, y_tr, y_te)


def test_reset_to_zero_balancing_keeps_accuracy(digits_mlp):
    path, _, (x_tr, x_te, y_tr, y_te) = digits_mlp
    ann = read_onnx(path)
    conversion, balance = balance_reset_to_zero(ann, x_tr, y_tr, steps=64)
    ifs = [conversion.graph.node(n) for n in conversion.graph.of_kind("IF")]
    assert ifs and all(op.reset_mode == "zero" for op in ifs)
    assert balance.percentile in balance.scores and balance.scores[balance.percentile] == max(balance.scores.values())
    zero = evaluate(ann, conversion.graph, x_te, y_te, steps=64)
    subtract = evaluate(ann, convert(ann, x_tr).graph, x_te, y_te, steps=64)
    print("\n".join([balance.line(), *zero.lines(), *subtract.lines()]))
    assert zero.ann_accuracy > 0.95
    assert zero.snn_accuracy >= zero.ann_accuracy - 0.03
    assert subtract.snn_accuracy >= subtract.ann_accuracy - 0.02


def _compile(digits_mlp, target: str, out: Path, stop_after: str | None = None) -> str:
    path, calibration, _ = digits_mlp
    compile_network(CompileRequest(source=path, target=target, out=out, reference_samples=1, stop_after=stop_after,
                                   options=SourceOptions(calibration=calibration)))
    return (out / "report.md").read_text()


def test_loihi2_gets_reset_to_zero_and_verifies_in_lava(digits_mlp, tmp_path):
    from nmcompile.runtime.hil import verify_artifact

    report = _compile(digits_mlp, "loihi2", tmp_path / "loihi2")
    assert "converted ReLU layers to IF neurons with reset to zero (the target has no reset by subtraction)" in report
    assert "thresholds balanced for reset to zero: the " in report
    assert "accuracy: ANN " in report and "SNN " in report
    result = verify_artifact(tmp_path / "loihi2", "lava://")
    assert result.passed, "\n".join(result.lines())


def test_targets_with_subtraction_keep_it(digits_mlp, tmp_path):
    report = _compile(digits_mlp, "fpga", tmp_path / "fpga", stop_after="quantize")
    assert "converted ReLU layers to IF neurons with reset by subtraction" in report
    assert "accuracy: ANN " in report
