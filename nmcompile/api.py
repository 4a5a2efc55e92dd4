"""The functions the CLI calls: turn any supported source into a verified IR graph.

    source = load_source("model.pt", SourceOptions(model="mypkg.net:make", input_shape=(64,)))
    source.graph, source.notes

Sources: `.nir` (NIR 1.0.x), `.nmir` (nmcompile IR), `.pt`/`.pth` (a PyTorch state dict plus a factory, traced
by `nmcompile.frontend.trace`), `.onnx` (a trained ANN, converted to IF neurons with calibration data).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nmcompile.errors import InputFileError, UnsupportedError, existing_file
from nmcompile.ir.graph import Graph

NETWORK_SUFFIXES = {
    ".nir": "NIR graph",
    ".nmir": "nmcompile IR",
    ".pt": "PyTorch checkpoint (with --model)",
    ".pth": "PyTorch checkpoint (with --model)",
    ".onnx": "ONNX ANN (converted to spiking neurons; with --calibration)",
    ".net": "lava-dl netx HDF5 (integer; compiled without quantize)",
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
    ann_reset: str = "subtract"              # ONNX: the converted IF neurons' reset (compile: by the target)


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
        from nmcompile import artifact

        art = artifact.read(path, rederive=True)
        return Source(art.graph, "artifact", [f"compiled artifact for {art.target} (latency {art.latency} steps)"])
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
    elif suffix == ".net":
        from nmcompile.frontend.netx import read_netx

        source = Source(read_netx(existing_file(path)), "netx",
                        ["lava-dl netx network: integer from the start, compiled without quantize (retarget)"])
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
    if any(type(m).__module__.startswith("DCLS.") for m in model.modules()):
        from nmcompile.frontend.dcls import check_against_forward, graph_from_dcls_model, round_positions
        from nmcompile.frontend.trace import Trace

        graph = graph_from_dcls_model(model, shape, name=path.stem)
        check_against_forward(model, graph)
        round_positions(model)  # the model kept for --check is its inference form, run over [T, B, C]
        return Source(graph, "torch", ["read as a chain of Dcls1d synapses (rounded positions: per-synapse delays) "
                                       "and neuron layers; equal to the model's own forward"], model,
                      Trace(style="sequence", steps=0, input_shape=shape))
    graph, trace = graph_from_module(model, shape, options.forward, options.trace_steps, name=path.stem)
    notes = [f"captured from PyTorch in '{trace.style}' style ({_STYLE_NOTE[trace.style]})"]
    return Source(graph, "torch", notes, model, trace)


_STYLE_NOTE = {
    "step": "forward computes one time step",
    "loop": "forward loops over time with a constant input",
    "sequence": "forward loops over a [T, B, ...] input",
}


def _load_onnx(path: Path, options: SourceOptions) -> Source:
    from nmcompile.frontend.onnx import balance_reset_to_zero, convert, evaluate, load_calibration, read_onnx

    ann = read_onnx(path)
    if options.calibration is None:
        raise UnsupportedError(f"{path}: converting an ANN needs calibration inputs for threshold balancing; pass "
                               "--calibration data.npz (array x [N, *input_shape] in [0, 1], optional labels y)")
    x, y = load_calibration(options.calibration)
    if options.ann_reset == "zero":
        conversion, balance = balance_reset_to_zero(ann, x, y, options.snn_steps, name=path.stem)
        method = ["converted ReLU layers to IF neurons with reset to zero (the target has no reset by subtraction)",
                  balance.line()]
    else:
        conversion = convert(ann, x, options.percentile, name=path.stem)
        method = [f"converted ReLU layers to IF neurons with reset by subtraction (thresholds at the "
                  f"{options.percentile} percentile of {len(x)} calibration inputs)"]
    report = evaluate(ann, conversion.graph, x, y, options.snn_steps)
    notes = [*method, *report.lines()]
    return Source(conversion.graph, "onnx", notes)


@dataclass
class CompileRequest:
    source: Path
    target: str
    out: Path
    options: SourceOptions = field(default_factory=SourceOptions)
    calibration_spikes: Path | None = None
    dump_after: tuple[str, ...] = ()
    print_ir_after_all: bool = False
    stop_after: str | None = None
    target_overrides: dict[str, Any] = field(default_factory=dict)
    reference_samples: int | None = None       # samples of the artifact's reference (None: 4, or all calibration
                                               # samples when there are fewer)
    stdp: dict[str, dict[str, int]] = field(default_factory=dict)   # plastic projection -> rule parameters
    backend_options: dict[str, Any] = field(default_factory=dict)    # the backends' own options (Backend.options)
    strict: bool = False                       # warnings (degenerate quantization, ...) are errors


REFERENCE_STEPS, REFERENCE_RATE, DEFAULT_REFERENCE_SAMPLES = 50, 0.2, 4


def compile_network(request: CompileRequest, log=None, emit=None):
    """Load, run the target's pipeline, lower to the network view, emit the backend's files, write the artifact.
    `log` receives progress lines, `emit` IR dumps (both default to discarding). Returns the Artifact."""
    import numpy as np

    from nmcompile import artifact, backends
    from nmcompile.lowered import lower_network
    from nmcompile.lowered.limits import check_network_size, refuse
    from nmcompile.outputs import check_directory_target
    from nmcompile.passes import PassContext, integer_source_pipeline, run_pipeline
    from nmcompile.targets import get_target

    log = log or (lambda message: None)
    target = get_target(request.target, **request.target_overrides)
    backend = backends.get_backend(target.name)
    passes = list(backend.pipeline)
    for name in [*request.dump_after, *([request.stop_after] if request.stop_after else [])]:
        if name not in [*passes, "retarget"]:
            raise UnsupportedError(f"{name!r} is not a pass of the {target.name} pipeline ({', '.join(passes)})")
    if request.stop_after is None and not backend.available:
        backend.emit(None, target, {}, log)                     # raises: names the backend and --stop-after
    if request.stdp and not target.stdp:
        refuse("--stdp", "STDP", "stdp", False, lambda t: t.stdp, target)
    if request.reference_samples is not None and request.reference_samples < 1:
        raise UnsupportedError(f"--reference-samples must be at least 1 (got {request.reference_samples})")
    if backend.check_options is not None:
        backends.load_object(backend.check_options)(request.backend_options)
    check_directory_target(request.out, artifact.is_artifact_dir)     # -o before the work, not after it
    options = request.options
    if "subtract" not in target.reset_modes:   # an ONNX ANN converts to what the target runs
        options = replace(options, ann_reset="zero")
    source = load_source(request.source, options)
    for note in source.notes:
        log(note)
    graph = source.graph
    if graph.is_integer:  # a netx file or a compiled network: re-expressed in the target's formats, not quantized
        passes = integer_source_pipeline(passes)
    if request.stop_after is None:         # partition will place it: a network no chip count holds fails now
        check_network_size(sum(op.size for op in graph.nodes.values() if op.role == "neuron"), target)
    calibration = _calibration(request, source, graph)
    samples = request.reference_samples
    if calibration is not None and samples is not None and samples > calibration.shape[1]:
        raise UnsupportedError(f"--reference-samples {samples}: the calibration spikes hold only "
                               f"{calibration.shape[1]} samples")
    ctx = PassContext(target=target, calibration=calibration, options={"stdp": request.stdp, **request.backend_options},
                      log=log)
    graph = run_pipeline(graph, passes, ctx, dump_after=request.dump_after,
                         print_ir_after_all=request.print_ir_after_all, stop_after=request.stop_after, emit=emit,
                         log=log)
    done = passes if request.stop_after is None else passes[: passes.index(request.stop_after) + 1]
    _check_quantization(graph, ctx, request.strict)
    if samples is None:
        samples = DEFAULT_REFERENCE_SAMPLES if calibration is None else min(DEFAULT_REFERENCE_SAMPLES,
                                                                            calibration.shape[1])
    inputs = calibration[:, :samples] if calibration is not None else _random_spikes(graph, samples)
    files: dict[str, bytes] = {}
    backend_report: list[str] = []
    stage = "complete" if request.stop_after is None else f"stopped after {request.stop_after}"
    if request.stop_after is None:
        emitted = backend.emit(lower_network(graph), target, request.backend_options, log)
        files, backend_report = emitted.files, emitted.report
    report = _report(request, source, target, done, ctx, stage, backend_report)
    return artifact.write(request.out, graph=graph, target=target.name, source=request.source, pipeline=done,
                          inputs=np.asarray(inputs).astype(np.int64), report=report, files=files, stage=stage,
                          compile_options={"target_overrides": request.target_overrides,
                                           "backend_options": request.backend_options})


def _check_quantization(graph: Graph, ctx, strict: bool) -> None:
    """Degenerate layers (nmcompile.passes.quantize_check): a warning each, or with `strict` an error."""
    from nmcompile.errors import warn
    from nmcompile.passes.quantize_check import degenerate_layers

    if "quantize" not in ctx.reports:
        return
    problems = degenerate_layers(graph, ctx.reports["quantize"])
    if problems and strict:
        raise UnsupportedError(f"--strict: degenerate quantization: {problems[0]}"
                               + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    for problem in problems:
        warn(f"degenerate quantization: {problem}")


def _random_spikes(graph: Graph, samples: int):
    import numpy as np

    shape = graph.node(graph.inputs[0]).shape
    rng = np.random.default_rng(0)
    return (rng.random((REFERENCE_STEPS, samples, *shape)) < REFERENCE_RATE).astype(np.int64)


def _calibration(request: CompileRequest, source: Source, graph: Graph):
    """Spike calibration data: --calibration-spikes, or the rate-coded ONNX calibration set."""
    import numpy as np

    if request.calibration_spikes is not None:
        from nmcompile.protocols.spike_files import load_spikes

        spikes = load_spikes(request.calibration_spikes)
        shape = tuple(graph.node(graph.inputs[0]).shape)
        if int(np.prod(spikes.shape[2:])) != int(np.prod(shape)):
            from nmcompile.errors import ShapeError

            raise ShapeError(f"{request.calibration_spikes}: spikes have {int(np.prod(spikes.shape[2:]))} values per "
                             f"step (shape {spikes.shape}) but the network's input has shape {shape}")
        return spikes.reshape(spikes.shape[:2] + shape).astype(np.int64)
    if source.kind == "onnx" and request.options.calibration is not None:
        from nmcompile.encoding import rate_encode
        from nmcompile.frontend.onnx import load_calibration

        x, _ = load_calibration(request.options.calibration)
        return rate_encode(x[:64], request.options.snn_steps).astype(np.int64)
    return None


def _report(request: CompileRequest, source: Source, target, passes: list[str], ctx, stage: str,
            backend: list[str]) -> str:
    from nmcompile import __version__

    lines = [f"# nmcompile report: {request.source.name} for {target.name}", "",
             f"- nmcompile {__version__}, stage: {stage}",
             f"- target: {target.description}",
             f"- calibration: {'given' if ctx.calibration is not None else 'none (random spikes where needed)'}"]
    lines += [f"- {note}" for note in source.notes]
    for name in passes:
        report = ctx.reports.get(name)
        lines += ["", f"## {name}", ""]
        if report is None:
            lines.append("(nothing to report)")
        else:
            lines += ["    " + line if line.startswith("  ") else line for line in report.lines()]
    if backend:
        lines += ["", f"## {target.name} backend", "", *backend]
    return "\n".join(lines) + "\n"
