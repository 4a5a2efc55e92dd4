"""The `nmcompile` command line.

Only click and the standard library are imported here; each command imports what it needs (numpy, torch, nir,
Lava...) when it runs, so `nmcompile --help` stays fast. User errors print one `error:` line and exit 1.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from pathlib import Path

import click

from nmcompile import __version__
from nmcompile.backends import BACKENDS
from nmcompile.errors import NmcError

EXIT_INTERNAL = 3


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = " ".join(str(message).split())
    if category.__name__ == "NmcWarning":
        click.echo(f"warning: {text}", err=True)
    elif os.environ.get("NMC_DEBUG"):
        click.echo(f"warning ({category.__name__}): {text}", err=True)


class _Group(click.Group):
    """Turns NmcError into one line and exit 1; any other exception into one line and exit 3."""

    def invoke(self, ctx: click.Context):
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except NmcError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as err:  # a bug in nmcompile: still one line, with a way to get the traceback
            if os.environ.get("NMC_DEBUG"):
                raise
            detail = " ".join(str(err).split())[:200]
            click.echo(f"internal error: {type(err).__name__}: {detail} "
                       "(this is a bug in nmcompile; rerun with NMC_DEBUG=1 for the traceback)", err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="nmcompile")
def main() -> None:
    """Compile trained spiking neural networks for neuromorphic hardware and prove the result.

    \b
    Typical session:
      nmcompile inspect net.nir              what is in the network (layers, neurons, synapses)
      nmcompile inspect net.nir --ir         the exact IR the compiler sees, as text
      nmcompile targets                      which hardware targets this build can compile for
      nmcompile compile net.nir --target fpga -o net-fpga
                                             quantize, partition and emit: an artifact directory
      nmcompile verify net-fpga --board verilator://
                                             the hardware's spikes against the integer reference
      nmcompile run net-fpga --board ref:// --input in.npz --output out.npz

    Input spike files are .npz with an array `spikes` of shape [T, B, N_in], or .npy holding that one array
    (np.save); 0/1 values of an integer, bool or float dtype.
    """


def _shape(ctx, param, value):
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a shape like 784 or 2,34,34") from None
    if not shape or min(shape) <= 0:
        raise click.BadParameter(f"{value!r} is not a shape like 784 or 2,34,34")
    return shape


def _finite_positive(ctx, param, value):
    if value is not None and not (0 < value < float("inf")):
        raise click.BadParameter(f"{value!r} is not a positive finite number")
    return value


def _output_path(ctx, param, value):
    """-o/--output/--junit: a non-empty name, used exactly as typed."""
    if value is not None and not str(value).strip():
        raise click.BadParameter("the name is empty")
    return Path(value) if value is not None else None


def source_options(f):
    """Options that tell the frontends how to read a network (all optional)."""
    options = [
        click.option("--model", "model_spec", metavar="PKG.MODULE:FACTORY",
                     help="For a .pt state dict: the function that builds the untrained network "
                          "(package.module:function or path/file.py:function)."),
        click.option("--input-shape", callback=_shape, metavar="SHAPE",
                     help="Per-step input shape without batch, e.g. 784 or 2,34,34 (PyTorch sources; default: "
                          "INPUT_SHAPE defined next to the factory)."),
        click.option("--forward", "forward_style", type=click.Choice(["auto", "step", "loop", "sequence"]),
                     default="auto", show_default=True,
                     help="How the model's forward treats time: one step per call, a loop over a constant input, "
                          "or a loop over a [T, B, ...] input."),
        click.option("--trace-steps", type=click.IntRange(1, 100_000), default=8, show_default=True,
                     help="Steps of the probe input for a sequence-style model."),
        click.option("--trust-pickle", is_flag=True,
                     help="Load a checkpoint that holds pickled Python objects (a whole module). Unpickling can run "
                          "arbitrary code: only for files you trust."),
        click.option("--nir-dt", type=float, default=None, metavar="SECONDS", callback=_finite_positive,
                     help="Time step used to discretise NIR's continuous equations (default 1e-4 s, the "
                          "snnTorch/SpikingJelly export convention)."),
        click.option("--nir-reset", type=click.Choice(["zero", "subtract"]), default=None,
                     help="Reset mode of the neurons of a foreign NIR file (NIR cannot record it; default: reset to "
                          "v_reset as the NIR spec says)."),
        click.option("--calibration", type=click.Path(path_type=Path), default=None,
                     help="For an .onnx ANN: .npz with inputs x [N, *shape] in [0, 1] (and labels y) used to balance "
                          "thresholds and to report the converted network's accuracy."),
        click.option("--percentile", type=click.FloatRange(0, 100, min_open=True), default=99.9,
                     callback=_finite_positive, show_default=True,
                     help="ONNX conversion: activation percentile used as each layer's threshold."),
        click.option("--snn-steps", type=click.IntRange(1, 100_000), default=64, show_default=True,
                     help="ONNX conversion: steps of rate-coded input for the accuracy report."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def backend_options(kind: str):
    """The options every backend contributes to `compile` or `report` (nmcompile.backends registry)."""
    from nmcompile.backends import all_options

    def decorate(f):
        for _, option in reversed(all_options(kind)):
            flag = "--" + option.name.replace("_", "-")
            if option.flag:
                f = click.option(flag, option.name, is_flag=True, default=bool(option.default), help=option.help)(f)
            else:
                f = click.option(flag, option.name, default=option.default, metavar=option.metavar,
                                 help=option.help)(f)
        return f

    return decorate


def _backend_values(kind: str, target: str, kw: dict) -> dict:
    """Pop the backends' options from `kw`; refuse one given for another target than `target`."""
    from nmcompile.backends import all_options
    from nmcompile.errors import UnsupportedError

    chosen = {}
    for backend, option in all_options(kind):
        value = kw.pop(option.name)
        if backend.name == target:
            chosen[option.name] = value
        elif value != option.default:
            flag = "--" + option.name.replace("_", "-")
            raise UnsupportedError(f"{flag} is an option of the {backend.name} backend; this is {target}")
    return chosen


def _options(kw: dict):
    from nmcompile.api import SourceOptions

    return SourceOptions(model=kw.pop("model_spec"), input_shape=kw.pop("input_shape"),
                         forward=kw.pop("forward_style"), trace_steps=kw.pop("trace_steps"),
                         trust_pickle=kw.pop("trust_pickle"), nir_dt=kw.pop("nir_dt"), nir_reset=kw.pop("nir_reset"),
                         calibration=kw.pop("calibration"), percentile=kw.pop("percentile"),
                         snn_steps=kw.pop("snn_steps"))


@main.command()
def targets() -> None:
    """List the hardware targets this build can compile for, with their limits."""
    from nmcompile.targets import describe_targets

    click.echo(describe_targets())


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--ir", "show_ir", is_flag=True, help="Print the exact IR text dump instead of the layer table.")
@click.option("--check", is_flag=True,
              help="PyTorch sources: run the framework's own forward and the IR on random spikes (T=50) and count "
                   "differing output spikes, in float64 and in float32.")
@click.option("--energy", is_flag=True,
              help="Synaptic operations, neuron updates, energy per target and bit budget (random input spikes at "
                   "rate 0.2 for 100 steps, or --calibration-spikes).")
@click.option("--calibration-spikes", type=click.Path(path_type=Path), default=None,
              help="With --energy: spike file (.npz with `spikes` [T, B, N_in], or .npy) to measure activity on.")
@source_options
def inspect(source: Path, show_ir: bool, check: bool, energy: bool, calibration_spikes: Path | None, **kw) -> None:
    """Describe the network in SOURCE: one row per layer with op, shape, neurons, synapses and parameters.

    SOURCE is a .nir, .nmir, .pt/.pth (with --model), .onnx (with --calibration) or lava-dl netx .net file, or
    a compiled artifact directory (`nmcompile compile -o DIR`).
    """
    from nmcompile.api import load_source

    loaded = load_source(source, _options(kw))
    for note in loaded.notes:
        click.echo(note if show_ir is False else f"# {note}")
    if show_ir:
        from nmcompile.ir.dump import dump

        click.echo(dump(loaded.graph), nl=False)
    else:
        from nmcompile.summary import layer_table

        click.echo(layer_table(loaded.graph))
    if check:
        _frontend_check(loaded)
    if energy:
        _energy(loaded.graph, calibration_spikes)


def _energy(graph, calibration_spikes) -> None:
    import numpy as np

    from nmcompile.passes import PassContext, run_pipeline
    from nmcompile.passes.analyse import analyse
    from nmcompile.targets import TARGETS

    # the exact folding passes first: analysis counts synapses of projections between neuron layers
    graph = run_pipeline(graph, ["fold_bn", "fold_mpbn", "fuse_projections"], PassContext())
    if calibration_spikes is not None:
        from nmcompile.protocols.spike_files import load_spikes

        x = load_spikes(calibration_spikes)
    else:
        shape = graph.node(graph.inputs[0]).shape
        x = (np.random.default_rng(0).random((100, 4, *shape)) < 0.2).astype(np.int8)
    for target in TARGETS.values():
        if target.energy_per_synop_j is None:
            continue
        click.echo(f"\nenergy estimate for {target.name}:")
        click.echo("\n".join(analyse(graph, PassContext(target=target, calibration=x)).lines()))


def _frontend_check(loaded) -> None:
    import numpy as np

    from nmcompile.errors import UnsupportedError
    from nmcompile.frontend.check import compare, float64_model

    if loaded.model is None:
        raise UnsupportedError("--check compares against the source framework, so it needs a PyTorch source (.pt)")
    rng = np.random.default_rng(0)
    shape = loaded.graph.node(loaded.graph.inputs[0]).shape
    x = (rng.random((50, 8, *shape)) < 0.2).astype(np.float64)
    if loaded.trace.style == "loop":
        x[:] = x[:1]
    with float64_model(loaded.model) as m64:
        exact = compare(m64, loaded.graph, loaded.trace, x, "float64")
    single = compare(loaded.model.float(), loaded.graph, loaded.trace, x, "float32")
    click.echo(f"frontend check (random input, {x.shape[0]} steps x {x.shape[1]} samples): "
               f"float64 {exact}; float32 {single}")
    if exact.mismatches:
        raise UnsupportedError(f"the IR does not reproduce the framework in float64 ({exact}); please report this")


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(), callback=_output_path,
              help="The .nir file to write (exactly this path; its directory must exist; an existing file is "
                   "replaced).")
@source_options
def export(source: Path, out: Path, **kw) -> None:
    """Write the float network in SOURCE as a NIR file, for other platforms' tools.

    \b
    NIR (the Neuromorphic Intermediate Representation, neuroir.org) is the exchange format that snnTorch,
    SpikingJelly, Norse, Sinabs, Lava-dl, Rockpool, SpiNNaker 2 and others read. SOURCE is anything `inspect`
    reads: a .nir, a float .nmir, a .pt/.pth (with --model) or an .onnx (with --calibration).

    \b
    NIR's neurons are continuous-time equations; nmcompile's are discrete steps. The file is written with
    forward Euler at dt = --nir-dt if given, else the dt the source was read with (a .nir source), else
    1e-4 s, the snnTorch/SpikingJelly convention: beta = 1 - dt/tau, gain = r*dt/tau (docs/semantics.md §4).
    A tool reading the file must use the same dt (nmcompile: --nir-dt). What NIR cannot say (reset by
    subtraction, delayed reset, '>=', refractory periods, initial states) is kept as nmcompile metadata, so
    `nmcompile` reads the file back spike for spike; other readers ignore it (a warning names such layers).

    \b
    Integer networks (a compiled artifact, a quantized .nmir) are refused: NIR has no integer semantics;
    export the float source instead. Ops NIR has no equivalent for are refused, naming the node.
    """
    from nmcompile.api import load_source
    from nmcompile.errors import UnsupportedError
    from nmcompile.outputs import check_file_target

    check_file_target(out)
    options = _options(kw)
    if options.nir_dt is not None and not options.nir_dt > 0:
        raise UnsupportedError(f"--nir-dt must be a positive number of seconds, got {options.nir_dt:g}")
    loaded = load_source(source, options)
    graph = loaded.graph
    integer = [(name, op.kind) for name, op in graph.nodes.items() if op.numeric == "integer"]
    if loaded.kind == "artifact" or integer:
        what = ("a compiled artifact" if loaded.kind == "artifact"
                else f"a quantized network (node '{integer[0][0]}' is {integer[0][1]})")
        raise UnsupportedError(f"{source} is {what}: NIR has no integer semantics, so it cannot be written exactly; "
                               "export the float source it was compiled from instead")
    from nmcompile.frontend.nir import DEFAULT_DT, graph_to_nir

    dt = next(v for v in (options.nir_dt, graph.dt, DEFAULT_DT) if v is not None)
    nir_graph = graph_to_nir(graph, dt)            # refuses unsupported ops (naming node and op) before writing
    _write_nir_file(nir_graph, out)
    click.echo(f"wrote {out} ({len(graph.nodes)} nodes, dt {dt:g} s)")


def _write_nir_file(nir_graph, out: Path) -> None:
    """nir.write to a private temporary file, then its bytes to exactly `out` (nmcompile.outputs.write_file: a
    sibling renamed onto it, no half-written file, never onto a special file)."""
    import tempfile

    import nir

    from nmcompile.outputs import write_file

    with tempfile.TemporaryDirectory(prefix="nmcompile-nir-") as tmp:
        nir.write(str(Path(tmp) / "graph.nir"), nir_graph)
        write_file(out, (Path(tmp) / "graph.nir").read_bytes())


@main.command("compile")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--target", "target_name", required=True, type=click.Choice(list(BACKENDS)),
              help="The hardware to compile for (`nmcompile targets` lists their limits).")
@click.option("-o", "--output", "out", type=click.Path(), default=None, callback=_output_path,
              help="Artifact directory to write (default: <source name>-<target>). It is built next to it and "
                   "renamed into place; an existing artifact there is replaced as a whole, any other existing "
                   "non-empty directory is refused.")
@click.option("--calibration-spikes", type=click.Path(path_type=Path), default=None,
              help="Spike file (.npz with `spikes` [T, B, N_in], or .npy): representative inputs used to measure "
                   "quantization agreement, firing rates for partitioning and energy, and as the artifact's "
                   "reference inputs.")
@click.option("--dump-after", multiple=True, metavar="PASS", help="Print the IR after this pass (repeatable).")
@click.option("--print-ir-after-all", is_flag=True, help="Print the IR after every pass.")
@click.option("--stop-after", metavar="PASS", default=None,
              help="Stop after this pass and write the IR, report and reference reached so far.")
@click.option("--chips", type=click.IntRange(1, 4096), default=None,
              help="Number of chips available (default: the target's).")
@click.option("--reference-samples", type=click.IntRange(1, 10_000), default=None,
              help="Samples in the artifact's reference run (the first ones of --calibration-spikes, which must "
                   "hold that many, else random spikes for 50 steps at rate 0.2); default 4 (or all calibration "
                   "samples when there are fewer); `verify` replays all of them on the board.")
@click.option("--stdp", "stdp_layers", multiple=True, metavar="PROJECTION",
              help="Make this projection plastic (pair-based STDP with 8-bit traces, docs/semantics.md §3.5; fpga "
                   "only). Repeatable. Names are those of `nmcompile inspect --ir` after quantize, e.g. '2'.")
@click.option("--stdp-param", "stdp_params", multiple=True, metavar="KEY=VALUE",
              help="STDP rule parameter for every --stdp projection (needs --stdp): pre_increment, post_increment "
                   "(0..255), pre_decay, post_decay, ltp_shift, ltd_shift (0..7), w_min, w_max (-128..127). "
                   "Repeatable.")
@click.option("--strict", is_flag=True,
              help="Refuse a degenerate quantization (a threshold or all weights of a layer rounding to 0, or a "
                   "layer's spike agreement below 90%) instead of warning.")
@backend_options("compile")
@source_options
def compile_cmd(source: Path, target_name: str, out: Path | None, calibration_spikes: Path | None, dump_after,
                print_ir_after_all: bool, stop_after: str | None, chips: int | None, reference_samples: int | None,
                stdp_layers, stdp_params, strict: bool, **kw) -> None:
    """Compile SOURCE for a target: fold, retime, quantize, partition, analyse, emit.

    \b
    Writes an artifact directory: manifest.json, network.nmir (the integer golden model), reference/ (inputs
    and expected outputs), report.md, and the target's own files. `nmcompile run DIR --board ref://` runs
    the golden model; `nmcompile verify DIR --board ...` compares hardware against it.

    \b
    Example (the bundled example network):
      nmcompile compile examples/digits/digits.pt --model examples/digits/model.py:make_model \\
          --target fpga -o digits-fpga
    """
    from nmcompile.api import CompileRequest, compile_network
    from nmcompile.passes.stdp import rule_from_flags

    chosen = _backend_values("compile", target_name, kw)
    rule = rule_from_flags(stdp_params, stdp_layers)
    request = CompileRequest(
        source=source, target=target_name, out=out or Path(f"{source.stem}-{target_name}"), options=_options(kw),
        calibration_spikes=calibration_spikes, dump_after=tuple(dump_after), print_ir_after_all=print_ir_after_all,
        stop_after=stop_after, target_overrides={"chips": chips} if chips is not None else {},
        reference_samples=reference_samples, stdp={layer: rule for layer in stdp_layers},
        backend_options=chosen, strict=strict)
    art = compile_network(request, log=lambda m: click.echo(m, err=True), emit=lambda m: click.echo(m, nl=False))
    click.echo(f"wrote {art.path} ({art.manifest['stage']}; latency {art.latency} steps; "
               f"{len(art.manifest['files'])} files)")


def executor_option(what: str):
    """`--executor SPEC` and `--jobs N` (= `--executor local://N`) of `run` and `verify`: where the samples of the
    input run (nmcompile.runtime.executors)."""
    executor = click.option(
        "--executor", "executor_spec", metavar="SPEC", default=None,
        help=f"Where {what} run: serial (the default: one board in this process); local://N (N "
             "worker processes on this machine; local: one per CPU); dask://HOST:PORT (the workers of a running "
             "Dask scheduler, started with `dask scheduler` and `dask worker tcp://HOST:PORT`; needs pip install "
             "'nmcompile[cluster]'; ?timeout=SECONDS, default 10). The samples (batch axis) are cut into "
             "contiguous shards, one per worker; each worker opens its own board, loads the network, runs its "
             "shard from a fresh state, and the outputs are joined in sample order: the same spikes as one run.")
    jobs = click.option("--jobs", type=click.IntRange(min=1), default=None, metavar="N",
                        help="Shorthand for --executor local://N: N worker processes on this machine.")

    def decorate(command):
        def with_jobs(*args, jobs: int | None = None, **kw):
            if jobs is not None:
                if kw.get("executor_spec") is not None:
                    raise click.UsageError("give either --jobs or --executor, not both")
                kw["executor_spec"] = f"local://{jobs}"
            return command(*args, **kw)

        with_jobs = functools.wraps(command)(with_jobs)      # keeps the options already attached to `command`
        return executor(jobs(with_jobs))

    return decorate


@main.command()
@click.argument("artifact_dir", metavar="ARTIFACT", type=click.Path(path_type=Path))
@click.option("--board", "board_url", required=True,
              help="Where to run: lava:// (Lava's bit-accurate simulator, for loihi2 artifacts); verilator:// (the "
                   "FPGA RTL, Verilated and driven through its UART pins; ?program=0 uses only the memory images, "
                   "?blank=1 only the UART programming stream); serial:///dev/ttyUSB0?baud=1000000 (an FPGA board; "
                   "?program=0 when it already holds the network, ?timeout=SECONDS); qemu:// (spinnaker2 PEs under "
                   "QEMU); udp://HOST:PORT (a SpiNNaker 2 board or `nmcompile emulate`; ?timeout=SECONDS); ref:// "
                   "(the integer reference itself, a self-check). Unknown or malformed options are refused.")
@click.option("--junit", type=click.Path(), default=None, callback=_output_path,
              help="Write a JUnit XML report to exactly this file.")
@executor_option("the reference samples")
def verify(artifact_dir: Path, board_url: str, junit: Path | None, executor_spec: str | None) -> None:
    """Hardware-in-the-loop check: run the artifact's reference inputs on a board and compare every output
    spike at every step (and, with STDP, the learned weights) with the integer golden model. Exit status 0 when
    equal, 1 otherwise.

    \b
    Example:
      nmcompile verify digits-fpga --board verilator:// --junit verify.xml
    """
    from nmcompile.errors import VerificationError
    from nmcompile.outputs import check_file_target
    from nmcompile.runtime.hil import verify_reporting_errors

    if junit is not None:
        check_file_target(junit)                      # before the run, not after it

    result = verify_reporting_errors(artifact_dir, board_url, progress=lambda m: click.echo(m, err=True),
                                     executor=executor_spec)
    for line in result.lines():
        click.echo(line)
    if junit is not None:
        from nmcompile.outputs import write_file

        write_file(junit, result.junit_xml())         # also when the board failed: an <error> testcase
    if result.error is not None:
        raise result.error
    if not result.passed:
        raise VerificationError(f"{board_url} differs from the reference of {artifact_dir}")


@main.command()
@click.argument("artifact_dir", metavar="ARTIFACT", type=click.Path(path_type=Path))
@click.option("--listen", required=True, metavar="udp://HOST:PORT|pty",
              help="spinnaker2 artifacts: the UDP address the emulated board listens on (port 0: any free one); "
                   "fpga artifacts: pty (the Verilated RTL behind a pseudo-terminal).")
@click.option("--pe", type=click.Choice(["model", "qemu"]), default="model", show_default=True,
              help="spinnaker2: PEs computed by the kernel's rules in numpy, or by the C kernel under QEMU.")
def emulate(artifact_dir: Path, listen: str, pe: str) -> None:
    """Start an emulated board for ARTIFACT's target and serve it until SIGTERM or Ctrl-C.

    \b
    Prints one line naming where to reach it: `LISTEN udp://HOST:PORT` (use --board udp://HOST:PORT) or
    `PTY /dev/pts/N` (use --board serial:///dev/pts/N). Hosts load and run networks over the wire exactly as
    on a real board (docs/hil.md).
    """
    from nmcompile.runtime.emulate import emulate as serve

    serve(artifact_dir, listen, pe, announce=click.echo, log=lambda m: click.echo(m, err=True))


@main.command()
@click.argument("artifact_dir", metavar="ARTIFACT", type=click.Path(path_type=Path))
@backend_options("report")
def report(artifact_dir: Path, **kw) -> None:
    """Print an artifact's report, followed by what its target's backend adds (fpga: the Yosys resource estimate
    of the emitted design, whether it fits the part, and NeuroCoreX's published numbers per neuron)."""
    from nmcompile import artifact
    from nmcompile.backends import get_backend, load_object

    art = artifact.read(artifact_dir)
    click.echo((art.path / "report.md").read_text().rstrip())
    backend = get_backend(art.target)
    chosen = _backend_values("report", art.target, kw)
    if backend.report is not None and art.manifest.get("stage") == "complete":
        lines = load_object(backend.report)(art, chosen, lambda m: click.echo(m, err=True))
        if lines:
            click.echo("")
            click.echo("\n".join(lines))


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--board", "board_url", default="ref://", show_default=True,
              help="Where to run: ref:// is nmcompile's reference simulator, in process (?precision=float32 for a "
                   "float network); lava://, verilator://, serial:///dev/ttyUSB0, qemu:// and udp://HOST:PORT run "
                   "a compiled artifact directory of their target (see `verify --help`).")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help=".npz with `spikes` [T, B, N_in] (or [T, B, *input_shape]), or .npy holding that one array "
                   "(np.save); 0/1 values of an integer, bool or float dtype.")
@click.option("--output", "output_path", required=True, type=click.Path(), callback=_output_path,
              help="The file to write, exactly this name (an .npz archive whatever its suffix): `spikes` "
                   "[T, B, N_out] and `latency` (steps).")
@click.option("--integer", is_flag=True, help="ref:// only: require the integer (quantized) model of the network.")
@click.option("--float32", "use_float32", is_flag=True,
              help="ref:// only: simulate a float network in float32 (default float64); refused for an integer one.")
@click.option("--labels", "labels_path", type=click.Path(path_type=Path), default=None,
              help=".npy with one integer label per sample: print the accuracy (class = argmax over output neurons "
                   "of the output summed over steps; ties to the lowest index).")
@click.option("--plot", "plot_path", type=click.Path(), default=None, callback=_output_path,
              help="Draw the input and output spike rasters of the first sample to this image (matplotlib).")
@executor_option("the input's samples")
@source_options
def run(source: Path, board_url: str, input_path: Path, output_path: Path, integer: bool, use_float32: bool,
        labels_path: Path | None, plot_path: Path | None, executor_spec: str | None, **kw) -> None:
    """Run the network in SOURCE on a board and write the output spikes.

    SOURCE is any network file `inspect` reads: a float network runs in the float semantics, a quantized
    (integer) one in the integer golden model. On a terminal a progress bar shows steps x samples done, their
    rate and the time left.

    \b
    Example:
      nmcompile run digits-fpga --board ref:// --input in.npz --output out.npz
    """
    import numpy as np

    from nmcompile.api import load_network
    from nmcompile.outputs import check_file_target
    from nmcompile.protocols.spike_files import load_spikes
    from nmcompile.runtime.board import open_board
    from nmcompile.runtime.progress import ProgressBar, run_in_slices

    in_process = board_url.startswith("ref://")
    if not in_process and (integer or use_float32):
        from nmcompile.errors import UnsupportedError

        flag = "--integer" if integer else "--float32"
        raise UnsupportedError(f"{flag} chooses how ref:// simulates the network; {board_url} runs a compiled "
                               "artifact in its target's integer model")
    check_file_target(output_path)                    # before the run, not after it
    if plot_path is not None:
        check_file_target(plot_path)
    spikes = load_spikes(input_path)
    labels = None
    if labels_path is not None:                    # checked before the run
        from nmcompile.runtime.readout import load_labels

        labels = load_labels(labels_path, spikes.shape[1])
    options = {**({"integer": "1"} if integer else {}), **({"precision": "float32"} if use_float32 else {})}

    def progress(message: str) -> None:
        click.echo(message, err=True)

    if executor_spec is not None:
        out, latency, where = _run_on_executor(source, board_url, options if in_process else {}, spikes,
                                               executor_spec, progress, kw if in_process else None)
    else:
        with open_board(board_url, progress=progress, **(options if in_process else {})) as board:
            board.load(load_network(source, _options(kw)) if in_process else source)   # boards load artifacts
            bar = ProgressBar(spikes.shape[0] * spikes.shape[1], stream=sys.stderr)
            out = run_in_slices(board, spikes, bar)[board.single_output()]
            bar.close()
            out = out.reshape(out.shape[0], out.shape[1], -1)
        latency, where = board.latency, board_url
    from nmcompile.artifact import npz_bytes
    from nmcompile.outputs import write_file

    write_file(output_path, npz_bytes({"spikes": out, "latency": np.int64(latency)}))
    total = int(np.count_nonzero(out)) if out.dtype.kind != "f" or np.all((out == 0) | (out == 1)) else None
    summary = f"{total} output spikes" if total is not None else "output values"
    click.echo(f"ran {spikes.shape[0]} steps x {spikes.shape[1]} samples on {where}: {summary} "
               f"-> {output_path} (latency {latency})")
    if labels is not None:
        from nmcompile.runtime.readout import accuracy, check_classes

        check_classes(labels, out.shape[2], labels_path)
        correct, count = accuracy(out, labels)
        click.echo(f"accuracy {correct}/{count} = {100 * correct / max(count, 1):.2f}% (rate-coded argmax)")
    if plot_path is not None:
        from nmcompile.runtime.raster import plot_rasters

        plot_rasters(spikes, out, plot_path, title=f"{source.name} on {board_url}, sample 0")
        click.echo(f"wrote {plot_path}")


def _run_on_executor(source: Path, board_url: str, options: dict, spikes, executor_spec: str, progress,
                     source_kw: dict | None):
    """`run --executor`: the samples sharded over the executor's workers; a network file is loaded here (with the
    source options) and sent to them as IR when `source_kw` is given (ref://), else every worker loads `source`.
    Returns the one output [T, B, N_out], the latency and where it ran."""
    from nmcompile.api import load_network
    from nmcompile.runtime.executors import open_executor, run_shards
    from nmcompile.runtime.progress import ProgressBar

    network = load_network(source, _options(source_kw)) if source_kw is not None else source
    bar = ProgressBar(spikes.shape[0] * spikes.shape[1], stream=sys.stderr)
    with open_executor(executor_spec) as executor:
        run = run_shards(board_url, options, network, spikes, executor, progress=progress, bar=bar)
        bar.close()
        count = len(run.shards)
        where = f"{board_url} ({count} shard{'s' if count > 1 else ''} on {executor.spec})"
    out = run.outputs[run.single_output()]
    return out.reshape(out.shape[0], out.shape[1], -1), run.latency, where


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
