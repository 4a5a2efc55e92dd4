"""The `nmcompile` command line.

Only click and the standard library are imported here; each command imports what it needs (numpy, torch, nir,
Lava...) when it runs, so `nmcompile --help` stays fast. User errors print one `error:` line and exit 1.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click

from nmcompile import __version__
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
      nmcompile run net.nir --board ref:// --input in.npz --output out.npz
      nmcompile targets                      which hardware targets this build can compile for

    Input spike files are .npz with an array `spikes` of shape [T, B, N_in] (0/1).
    """


def _nir_options(f):
    f = click.option("--nir-dt", type=float, default=None, metavar="SECONDS",
                     help="Time step used to discretise NIR's continuous equations (default 1e-4 s, the "
                          "snnTorch/SpikingJelly export convention).")(f)
    f = click.option("--nir-reset", type=click.Choice(["zero", "subtract"]), default=None,
                     help="Reset mode for neurons of a foreign NIR file (NIR cannot record it; default: "
                          "reset to v_reset as the NIR spec says).")(f)
    return f


@main.command()
def targets() -> None:
    """List the hardware targets this build can compile for, with their limits."""
    from nmcompile.targets import describe_targets

    click.echo(describe_targets())


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--ir", "show_ir", is_flag=True, help="Print the exact IR text dump instead of the layer table.")
@_nir_options
def inspect(source: Path, show_ir: bool, nir_dt: float | None, nir_reset: str | None) -> None:
    """Describe the network in SOURCE (.nir or .nmir): one row per layer with op, shape, neurons,
    synapses and parameter count."""
    from nmcompile.api import load_network

    graph = load_network(source, nir_dt=nir_dt, nir_reset=nir_reset)
    if show_ir:
        from nmcompile.ir.dump import dump

        click.echo(dump(graph), nl=False)
    else:
        from nmcompile.summary import layer_table

        click.echo(layer_table(graph))


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--board", "board_url", default="ref://", show_default=True,
              help="Where to run: ref:// is nmcompile's reference simulator, in process.")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help=".npz with `spikes` [T, B, N_in] (0/1, any integer dtype).")
@click.option("--output", "output_path", required=True, type=click.Path(path_type=Path),
              help=".npz to write: `spikes` [T, B, N_out] and `latency` (steps).")
@click.option("--integer", is_flag=True, help="Require the integer (quantized) model of the network.")
@click.option("--float32", "use_float32", is_flag=True, help="Simulate a float network in float32 (default float64).")
@_nir_options
def run(source: Path, board_url: str, input_path: Path, output_path: Path, integer: bool, use_float32: bool,
        nir_dt: float | None, nir_reset: str | None) -> None:
    """Run the network in SOURCE on a board and write the output spikes.

    SOURCE is a .nir or .nmir file: a float network runs in the float semantics, a quantized (integer)
    one in the integer golden model.
    """
    import numpy as np

    from nmcompile.api import load_network
    from nmcompile.runtime.board import open_board
    from nmcompile.runtime.spikes import load_spikes

    spikes = load_spikes(input_path)
    graph = load_network(source, nir_dt=nir_dt, nir_reset=nir_reset)
    options = {"integer": "1" if integer else "0", "precision": "float32" if use_float32 else "float64"}
    board = open_board(board_url, **options)
    try:
        board.load(graph)
        out = board.run(spikes)
    finally:
        board.close()
    np.savez(output_path, spikes=out, latency=np.int64(board.latency))
    total = int(np.count_nonzero(out)) if out.dtype.kind != "f" or np.all((out == 0) | (out == 1)) else None
    summary = f"{total} output spikes" if total is not None else "output values"
    click.echo(f"ran {spikes.shape[0]} steps x {spikes.shape[1]} samples on {board_url}: {summary} "
               f"-> {output_path} (latency {board.latency})")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
