"""User-facing errors.

Every problem caused by user input (a file, a model, a flag, a network that does not fit) is raised as an
`NmcError` subclass whose message is one line naming what is wrong (the file, node, field or resource) and,
where there is one, the fix. The CLI prints that line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

import warnings
from pathlib import Path


class NmcError(Exception):
    """Base of all user-facing errors; `str(err)` is the single line the CLI prints."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class InputFileError(NmcError):
    """A file is missing, empty, truncated, corrupt or of the wrong kind."""


def existing_file(path) -> Path:
    """`path` as a Path when it names a non-empty file; else InputFileError ('no such file', 'file is empty')."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: file is empty")
    return path


class GraphError(NmcError):
    """The network graph is malformed: unknown node, dangling edge, illegal cycle, bad parameter."""


class ShapeError(GraphError):
    """Tensor shapes do not agree (an edge, a weight, an input file)."""


class NumericError(GraphError):
    """A parameter holds NaN/inf or a value outside its legal range."""


class UnsupportedError(NmcError):
    """A layer, option or feature is not supported (by nmcompile, or by the chosen target)."""


class ResourceError(NmcError):
    """A network does not fit the target: names the layer, the resource, what is needed and what exists."""


class ToolMissingError(NmcError):
    """An external tool (Lava venv, verilator, arm-none-eabi-gcc, qemu) is not installed; says how to install it."""


class BoardError(NmcError):
    """A board or its transport failed: no answer, a corrupt or unexpected frame, a simulator or runner that
    exited, a device that cannot be opened. Raised by every board (`nmcompile.runtime`), never for user input."""


class VerificationError(NmcError):
    """A deployed network's output differs from the integer reference."""


class NmcWarning(UserWarning):
    """Something the user should know that does not stop the work; the CLI prints it as one `warning:` line."""


def warn(message: str) -> None:
    warnings.warn(" ".join(message.split()), NmcWarning, stacklevel=3)
