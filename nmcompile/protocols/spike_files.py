"""Spike files: `.npz` archives holding `spikes` [T, B, N] or [T, B, *input_shape] (0/1, integer or bool)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from nmcompile.errors import InputFileError


def load_spikes(path: str | Path, key: str = "spikes") -> np.ndarray:
    """Read and validate a spike array; every problem is one InputFileError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise InputFileError(f"{path}: no array named '{key}' (found: {', '.join(archive.files) or 'none'})")
            spikes = archive[key]
    except InputFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error):
        raise InputFileError(f"{path}: truncated or not an .npz file") from None
    if spikes.ndim < 3:
        raise InputFileError(f"{path}: '{key}' must have shape [T, B, N] (or [T, B, *input_shape]), got {spikes.shape}")
    if 0 in spikes.shape[:2]:
        raise InputFileError(f"{path}: '{key}' has {spikes.shape[0]} steps and {spikes.shape[1]} samples; both must "
                             "be at least 1")
    if 0 in spikes.shape[2:]:
        raise InputFileError(f"{path}: '{key}' has an empty input shape {spikes.shape[2:]}")
    if spikes.dtype.kind not in "biuf":
        raise InputFileError(f"{path}: '{key}' has dtype {spikes.dtype}; use an integer or bool array of 0/1")
    if spikes.size and not np.all((spikes == 0) | (spikes == 1)):
        raise InputFileError(f"{path}: '{key}' holds values other than 0 and 1")
    return spikes.astype(np.int8)
