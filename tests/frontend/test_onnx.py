"""ONNX import and ANN-to-SNN conversion: op semantics against onnxruntime, accuracy on digits, errors."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from nmcompile.errors import InputFileError, ShapeError, UnsupportedError
from nmcompile.frontend.onnx import convert, evaluate, read_onnx, run_ann

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
from model import load_digits_split  # noqa: E402


def export(module: nn.Module, shape, path: Path, fold: bool = True) -> Path:
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(1, *shape), str(path), dynamo=False, do_constant_folding=fold,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return path


def onnxruntime_output(path: Path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        a = torch.relu(self.bn(self.c1(x)))
        b = torch.relu(self.c2(a) + a)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(b, 1), 1))


def trained_bn(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return module


@pytest.mark.parametrize("fold", [True, False])
def test_residual_bn_gap_semantics_match_onnxruntime(tmp_path, fold):
    path = export(trained_bn(Residual()), (2, 6, 6), tmp_path / "res.onnx", fold=fold)
    ann = read_onnx(path)
    assert ("batchnorm" in [layer.kind for layer in ann.layers]) == (not fold)
    x = np.random.default_rng(0).random((5, 2, 6, 6))
    np.testing.assert_allclose(run_ann(ann, x)[ann.output_name], onnxruntime_output(path, x), rtol=1e-4, atol=1e-5)


def test_matmul_add_reshape_graph_matches_onnxruntime(tmp_path):
    rng = np.random.default_rng(1)
    w1, b1, w2 = rng.normal(size=(12, 8)), rng.normal(size=8), rng.normal(size=(8, 3))
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("Gemm", ["r", "w2"], ["y"], alpha=0.5),
    ]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))]
    inits.append(numpy_helper.from_array(np.array([-1, 12], dtype=np.int64), "shape"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], inits)
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    ann = read_onnx(path)
    assert [layer.kind for layer in ann.layers] == ["flatten", "linear", "relu", "linear"]
    x = rng.random((4, 3, 4))
    np.testing.assert_allclose(run_ann(ann, x)[ann.output_name], onnxruntime_output(path, x), rtol=1e-4, atol=1e-5)


def digits_cnn() -> tuple[nn.Module, tuple]:
    x_tr, x_te, y_tr, y_te = load_digits_split()
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    x = torch.tensor(x_tr, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y_tr)
    optimizer = torch.optim.Adam(cnn.parameters(), 3e-3)
    for _ in range(30):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            batch = order[i : i + 64]
            loss = nn.functional.cross_entropy(cnn(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return cnn.eval(), (x_tr.reshape(-1, 1, 8, 8), x_te.reshape(-1, 1, 8, 8), y_tr, y_te)


def test_digits_cnn_converts_within_three_points(tmp_path):
    cnn, (x_tr, x_te, _, y_te) = digits_cnn()
    ann = read_onnx(export(cnn, (1, 8, 8), tmp_path / "cnn.onnx"))
    conversion = convert(ann, x_tr)
    kinds = [conversion.graph.node(n).kind for n in conversion.graph.order()]
    assert kinds.count("IF") == 4 and "ReLU" not in kinds
    report = evaluate(ann, conversion.graph, x_te, y_te, steps=64)
    print("\n".join(report.lines()))
    assert report.ann_accuracy > 0.9
    assert report.snn_accuracy >= report.ann_accuracy - 0.03
    for name, lam in conversion.thresholds.items():
        op = conversion.graph.node(name)
        assert op.reset_mode == "subtract" and float(op.threshold) == lam > 0


def test_unsupported_op_is_named(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(2 * 6 * 6, 2))
    path = export(net, (1, 8, 8), tmp_path / "sig.onnx")
    with pytest.raises(UnsupportedError, match=r"node '.*' \(Sigmoid\) is not supported .*supported: Gemm, MatMul"):
        read_onnx(path)


def test_damaged_files_and_bad_calibration(tmp_path):
    path = export(nn.Sequential(nn.Linear(4, 2)), (4,), tmp_path / "ok.onnx")
    data = path.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=r"cut\.onnx: truncated, corrupt or not an ONNX model"):
        read_onnx(tmp_path / "cut.onnx")
    ann = read_onnx(path)
    with pytest.raises(ShapeError, match="must lie in \\[0, 1\\]"):
        convert(ann, np.full((3, 4), 2.0))
    with pytest.raises(ShapeError, match="calibration inputs have shape \\(5,\\)"):
        convert(ann, np.zeros((3, 5)))


def test_cli_converts_and_reports(tmp_path):
    import subprocess

    cnn, (_, x_te, _, y_te) = digits_cnn()
    path = export(cnn, (1, 8, 8), tmp_path / "cnn.onnx")
    np.savez(tmp_path / "calib.npz", x=x_te, y=y_te)
    proc = subprocess.run([sys.executable, "-m", "nmcompile", "inspect", str(path), "--calibration",
                           str(tmp_path / "calib.npz")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "converted ReLU layers to IF neurons" in proc.stdout and "accuracy: ANN" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "nmcompile", "inspect", str(path)], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 1 and "--calibration" in proc.stderr


def pools_2d() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),                      # 9 -> 5
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),  # 5 -> 3
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 4))


def pools_1d() -> nn.Module:
    return nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2, ceil_mode=True),     # 9 -> 5
                         nn.AvgPool1d(3, stride=2, padding=1), nn.Conv1d(3, 3, 1), nn.ReLU(),           # 5 -> 3
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 4))


@pytest.mark.parametrize(("factory", "shape"), [(pools_2d, (2, 9, 9)), (pools_1d, (2, 9))])
def test_pool_options_match_onnxruntime(tmp_path, factory, shape):
    torch.manual_seed(0)
    path = export(factory(), shape, tmp_path / "pools.onnx")
    ann = read_onnx(path)
    kinds = [layer.kind for layer in ann.layers]
    assert kinds.count("maxpool") == 1 and kinds.count("avgpool") == 1
    x = np.random.default_rng(0).random((5, *shape))
    np.testing.assert_allclose(run_ann(ann, x)[ann.output_name], onnxruntime_output(path, x), rtol=1e-4, atol=1e-5)
    conversion = convert(ann, x)
    from nmcompile.passes import run_pipeline

    fused = run_pipeline(conversion.graph, ["fuse_projections"])
    assert not fused.of_kind("SumPool1d", "SumPool2d", "AvgPool1d", "AvgPool2d", "Scale")


def digits_maxpool_cnn() -> tuple[nn.Module, tuple]:
    x_tr, x_te, y_tr, y_te = load_digits_split()
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(3, stride=2, padding=1,
                                                                                count_include_pad=False),
                        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    x = torch.tensor(x_tr, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y_tr)
    optimizer = torch.optim.Adam(cnn.parameters(), 3e-3)
    for _ in range(30):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            batch = order[i : i + 64]
            loss = nn.functional.cross_entropy(cnn(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return cnn.eval(), (x_tr.reshape(-1, 1, 8, 8), x_te.reshape(-1, 1, 8, 8), y_tr, y_te)


def test_digits_cnn_with_maxpool_converts(tmp_path):
    from nmcompile.passes import run_pipeline

    cnn, (x_tr, x_te, _, y_te) = digits_maxpool_cnn()
    ann = read_onnx(export(cnn, (1, 8, 8), tmp_path / "maxcnn.onnx"))
    conversion = convert(ann, x_tr)
    graph = conversion.graph
    assert graph.of_kind("SumPool2d") and graph.node(graph.of_kind("SumPool2d")[0] + ".or").kind == "IF"
    report = evaluate(ann, graph, x_te, y_te, steps=64)
    print("\n".join(report.lines()))
    assert report.ann_accuracy > 0.9
    assert report.snn_accuracy >= report.ann_accuracy - 0.05
    fused = run_pipeline(graph, ["fuse_projections"])
    assert not fused.of_kind("SumPool2d", "AvgPool2d", "Scale")


def test_maxpool_over_currents_is_refused(tmp_path):
    torch.manual_seed(0)
    path = export(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)),
                  (1, 8, 8), tmp_path / "maxcur.onnx")
    ann = read_onnx(path)
    with pytest.raises(UnsupportedError, match=r"\(MaxPool\) over currents is refused.*after a Relu, or use "
                                               r"AveragePool"):
        convert(ann, np.random.default_rng(0).random((10, 1, 8, 8)))


@pytest.mark.parametrize("pool", [
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), nn.AvgPool2d(2, stride=2, ceil_mode=True),
    nn.AvgPool2d(3, stride=3, padding=1, ceil_mode=True, count_include_pad=False),
    nn.MaxPool2d(3, stride=3, padding=1, ceil_mode=True), nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True)],
    ids=["avg-pad-ceil", "avg-ceil", "avg-window-in-padding", "max-window-in-padding", "avg1d-pad-ceil"])
def test_ceil_mode_edges_match_torch_and_onnxruntime(tmp_path, pool):
    """Partial windows and windows that would start in the end padding, for sizes 5..8."""
    for size in (5, 6, 7, 8):
        shape = (2, size) if isinstance(pool, nn.AvgPool1d) else (2, size, size)
        module = nn.Sequential(nn.ReLU(), pool, nn.Flatten())
        path = export(module, shape, tmp_path / f"pool{size}.onnx")
        ann = read_onnx(path)
        x = np.random.default_rng(size).random((3, *shape))
        ours = run_ann(ann, x)[ann.output_name]
        np.testing.assert_allclose(ours, module(torch.tensor(x, dtype=torch.float32)).numpy(), atol=1e-5)
        np.testing.assert_allclose(ours, onnxruntime_output(path, x), atol=1e-5)


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2", "fpga"])
def test_onnx_pools_compile_for_every_target(tmp_path, target):
    from nmcompile.api import CompileRequest, SourceOptions, compile_network

    torch.manual_seed(0)
    path = export(pools_2d(), (2, 7, 7), tmp_path / "pools.onnx")    # small enough for one FPGA core
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((40, 2, 7, 7)))
    compile_network(CompileRequest(source=path, target=target, out=tmp_path / "out", stop_after="partition",
                                   reference_samples=1, options=SourceOptions(calibration=tmp_path / "calib.npz")))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "sum pool fused into" in report and "agreement with the ANN's class" in report
