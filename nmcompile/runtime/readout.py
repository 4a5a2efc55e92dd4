"""Classification accuracy of a run: the output read out by rate coding and compared with labels.

Readout rule: the predicted class of sample b is argmax over neurons n of sum over steps t of out[t, b, n] (the
spike count for spiking outputs, the summed value for a non-spiking readout layer's voltages); ties go to the lowest
neuron index (numpy's argmax). Labels are a .npy file of B integers in 0..N_out-1.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nmcompile.errors import InputFileError


def load_labels(path: str | Path, samples: int, classes: int | None = None) -> np.ndarray:
    """B integer labels from a .npy file, checked against the run's samples and output neurons."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        labels = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise InputFileError(f"{path}: not a .npy array") from None
    if not isinstance(labels, np.ndarray):
        labels.close()
        raise InputFileError(f"{path}: an .npz archive; labels are one .npy array of shape [B] (np.save)")
    if labels.dtype.kind not in "iu":
        raise InputFileError(f"{path}: labels must be an integer array of shape [B]")
    labels = labels.reshape(-1)
    if labels.shape[0] != samples:
        raise InputFileError(f"{path}: {labels.shape[0]} labels for {samples} samples")
    if labels.size and labels.min() < 0:
        raise InputFileError(f"{path}: labels must be class indices >= 0")
    if classes is not None:
        check_classes(labels, classes, path)
    return labels.astype(np.int64)


def check_classes(labels: np.ndarray, classes: int, path: str | Path) -> None:
    if labels.size and labels.max() >= classes:
        raise InputFileError(f"{path}: labels must lie in 0..{classes - 1} (the output has {classes} neurons)")


def predictions(outputs: np.ndarray) -> np.ndarray:
    """[T, B, N] -> the class of each sample by the module's readout rule."""
    outputs = np.asarray(outputs)
    return np.argmax(outputs.reshape(outputs.shape[0], outputs.shape[1], -1).sum(axis=0), axis=1)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(correct, total) samples."""
    return int(np.count_nonzero(predictions(outputs) == labels)), int(labels.shape[0])
