"""The functions the CLI calls: turn any supported source into a verified IR graph.

    source = load_source("model.pt", SourceOptions(model="mypkg.net:make", input_shape=(64,)))
    source.graph, source.notes

Sources: `.nir` (NIR 1.0.x), `.nmir` (nmcompile IR), `.pt`/`.pth` (a PyTorch state dict plus a factory, traced
by `nmcompile.frontend.trace`), `.onnx` (a trained ANN, converted to IF neurons with calibration data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmcompile.errors import InputFileError, UnsupportedError
from nmcompile.ir.graph import Graph

NETWORK_SUFFIXES = {
    ".nir": "NIR graph",
    ".nmir": "nmcompile IR",
    ".pt": "PyTorch checkpoint (with --model)",
    ".pth": "PyTorch checkpoint (with --model)",
    ".onnx": "ONNX ANN (converted to spiking neurons; with --calibration)",
}


@dataclass
class SourceOptions:
    """Everything a frontend may need besides the file itself (the CLI's source options)."""

    model: str | None = None                 # 'package.module:factory' building the untrained nn.Module
    input_shape: tuple[int, ...] | None = None
    forward: str = "auto"                    # step | loop | sequence | auto
    trace_steps: int = 8
    trust_pickle: bool = False
    nir_dt: float | None = None
    nir_reset: str | None = None
    calibration: Path | None = None          # ONNX: .npz with x (and y)
    percentile: float = 99.9
    snn_steps: int = 64


@dataclass
class Source:
    graph: Graph
    kind: str
    notes: list[str] = field(default_factory=list)
    model: Any = None      # the PyTorch module, for frontend checks
    trace: Any = None


def load_source(path: str | Path, options: SourceOptions | None = None) -> Source:
    options = options or SourceOptions()
    path = Path(path)
    if path.is_dir():
        raise UnsupportedError(f"{path}: is a directory; compiled artifact directories arrive with "
                               "`nmcompile compile`")
    suffix = path.suffix.lower()
    if suffix not in NETWORK_SUFFIXES:
        if not path.exists():
            raise InputFileError(f"{path}: no such file")
        known = ", ".join(f"{s} ({d})" for s, d in NETWORK_SUFFIXES.items())
        raise UnsupportedError(f"{path}: unknown network file type '{suffix or '(none)'}'; supported: {known}")
    if suffix == ".nir":
        from nmcompile.frontend.nir import DEFAULT_DT, read_nir

        graph = read_nir(path, dt=options.nir_dt if options.nir_dt is not None else DEFAULT_DT,
                         reset_mode=options.nir_reset)
        source = Source(graph, "nir")
    elif suffix == ".nmir":
        from nmcompile.ir.serialize import load

        source = Source(load(path), "nmir")
    elif suffix == ".onnx":
        source = _load_onnx(path, options)
    else:
        source = _load_torch(path, options)
    source.graph.verify()
    return source


def load_network(path: str | Path, options: SourceOptions | None = None) -> Graph:
    """The verified IR graph of a network file (see `load_source`)."""
    return load_source(path, options).graph


def _load_torch(path: Path, options: SourceOptions) -> Source:
    from nmcompile.frontend.checkpoint import build_model
    from nmcompile.frontend.trace import graph_from_module

    model, module = build_model(path, options.model, options.trust_pickle)
    shape = options.input_shape
    if shape is None:
        shape = getattr(module, "INPUT_SHAPE", None) or getattr(model, "input_shape", None)
        if shape is None:
            raise UnsupportedError(f"{path}: pass --input-shape (the per-step input shape without batch, e.g. 784 or "
                                   "2,34,34), or define INPUT_SHAPE next to the factory")
    shape = tuple(int(d) for d in shape)
    graph, trace = graph_from_module(model, shape, options.forward, options.trace_steps, name=path.stem)
    notes = [f"captured from PyTorch in '{trace.style}' style ({_STYLE_NOTE[trace.style]})"]
    return Source(graph, "torch", notes, model, trace)


_STYLE_NOTE = {
    "step": "forward computes one time step",
    "loop": "forward loops over time with a constant input",
    "sequence": "forward loops over a [T, B, ...] input",
}


def _load_onnx(path: Path, options: SourceOptions) -> Source:
    from nmcompile.frontend.onnx import convert, evaluate, load_calibration, read_onnx

    ann = read_onnx(path)
    if options.calibration is None:
        raise UnsupportedError(f"{path}: converting an ANN needs calibration inputs for threshold balancing; pass "
                               "--calibration data.npz (array x [N, *input_shape] in [0, 1], optional labels y)")
    x, y = load_calibration(options.calibration)
    conversion = convert(ann, x, options.percentile, name=path.stem)
    report = evaluate(ann, conversion.graph, x, y, options.snn_steps)
    notes = [f"converted ReLU layers to IF neurons (thresholds at the {options.percentile} percentile of "
             f"{len(x)} calibration inputs)", *report.lines()]
    return Source(conversion.graph, "onnx", notes)
