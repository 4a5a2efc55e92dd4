"""Spike rasters of a run: input and output spikes of one sample, drawn with matplotlib's headless Agg backend
(needs `pip install 'nmcompile[plot]'`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from nmcompile.errors import InputFileError, ToolMissingError
from nmcompile.outputs import write_file


def plot_rasters(inputs: np.ndarray, outputs: np.ndarray, path: str | Path, sample: int = 0,
                 title: str = "") -> None:
    """Two rasters (input above, output below) of `sample`: a dot per (step, neuron) with a spike; a non-spiking
    output (readout voltages) is drawn as an image of its values."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ToolMissingError("--plot needs matplotlib: pip install 'nmcompile[plot]'") from None
    path = Path(path)
    x = np.asarray(inputs)[:, sample].reshape(inputs.shape[0], -1)
    y = np.asarray(outputs)[:, sample].reshape(outputs.shape[0], -1)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    try:
        steps, neurons = np.nonzero(x)
        top.scatter(steps, neurons, s=2, marker="|", color="black")
        top.set_ylabel(f"input neuron ({x.shape[1]})")
        top.set_ylim(-0.5, x.shape[1] - 0.5)
        if np.all((y == 0) | (y == 1)):
            steps, neurons = np.nonzero(y)
            bottom.scatter(steps, neurons, s=4, marker="|", color="tab:red")
            bottom.set_ylim(-0.5, y.shape[1] - 0.5)
        else:
            bottom.imshow(y.T, aspect="auto", origin="lower", interpolation="nearest")
        bottom.set_ylabel(f"output neuron ({y.shape[1]})")
        bottom.set_xlabel("step")
        top.set_xlim(-0.5, max(x.shape[0], 1) - 0.5)
        top.set_title(title or f"sample {sample}")
        image = io.BytesIO()
        try:
            fig.savefig(image, dpi=100, format=path.suffix.lstrip(".").lower() or "png")
        except ValueError as err:       # matplotlib's "Format 'xyz' is not supported"
            raise InputFileError(f"{path}: {err}") from None
        write_file(path, image.getvalue())
    finally:
        plt.close(fig)
