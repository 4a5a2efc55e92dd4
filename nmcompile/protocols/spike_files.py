"""Spike files: an `.npz` archive holding `spikes` [T, B, N] or [T, B, *input_shape], or an `.npy` file holding
that one array (np.save); 0/1 values of an integer, bool or float dtype."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from nmcompile.errors import InputFileError

NPY_MAGIC = b"\x93NUMPY"        # the first bytes of an .npy file (numpy's format.MAGIC_PREFIX)


def load_spikes(path: str | Path, key: str = "spikes") -> np.ndarray:
    """Read and validate a spike array; every problem is one InputFileError line naming the file. An .npz must
    hold an array named `key`; an .npy (recognised by its magic bytes, whatever the suffix) is that array."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            is_npy = f.read(len(NPY_MAGIC)) == NPY_MAGIC
        if is_npy:             # otherwise np.load reads a zip archive or refuses (no pickles)
            spikes, what = np.load(path, allow_pickle=False), "the array"
        else:
            with np.load(path, allow_pickle=False) as archive:
                if key not in archive.files:
                    raise InputFileError(f"{path}: no array named '{key}' "
                                         f"(found: {', '.join(archive.files) or 'none'})")
                spikes, what = archive[key], f"'{key}'"
    except InputFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error):
        raise InputFileError(f"{path}: truncated, or neither an .npz archive holding '{key}' nor an .npy array "
                             "(np.savez / np.save)") from None
    if spikes.ndim < 3:
        raise InputFileError(f"{path}: {what} must have shape [T, B, N] (or [T, B, *input_shape]), got {spikes.shape}")
    if 0 in spikes.shape[:2]:
        raise InputFileError(f"{path}: {what} has {spikes.shape[0]} steps and {spikes.shape[1]} samples; both must "
                             "be at least 1")
    if 0 in spikes.shape[2:]:
        raise InputFileError(f"{path}: {what} has an empty input shape {spikes.shape[2:]}")
    if spikes.dtype.kind not in "biuf":
        raise InputFileError(f"{path}: {what} has dtype {spikes.dtype}; use an integer, bool or float array of 0/1")
    if spikes.size and not np.all((spikes == 0) | (spikes == 1)):
        raise InputFileError(f"{path}: {what} holds values other than 0 and 1")
    return spikes.astype(np.int8)
