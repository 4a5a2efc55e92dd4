"""Writing what the user asked for, exactly where they asked, all or nothing.

    replace_directory(Path("out"), {"manifest.json": b"...", "fpga/top.v": b"..."}, is_ours=is_artifact_dir)
    write_file(Path("out.npz"), data)

A directory is built as a temporary sibling and renamed into place; an existing directory is replaced only when
`is_ours` recognises it (an earlier artifact) or it is empty, so no file of an earlier compile survives. A file is
written to a temporary sibling and renamed onto its name (the name exactly as given: no suffix is added).
Every failure (a missing or unwritable directory, a special file, an over-long name) is one InputFileError.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from nmcompile.errors import InputFileError


def _umask_mode(mode: int) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _cannot(path: Path, err: OSError) -> InputFileError:
    return InputFileError(f"{path}: cannot write ({err.strerror or err})")


def check_directory_target(out: Path, is_ours: Callable[[Path], bool]) -> bool:
    """Refuse a place `replace_directory` would refuse (an empty name, the current directory or a parent of it, a
    file, a non-empty directory `is_ours` does not accept); True when `out` is an existing directory. Callers run
    it before long work too, so that a wrong -o is named before the work starts."""
    out = Path(out)
    if str(out) in ("", "."):
        raise InputFileError("the output directory name is empty or '.'; name a new directory, e.g. -o net-fpga")
    try:
        if out.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
            raise InputFileError(f"{out}: is the current directory or one of its parents; name a new directory")
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            raise InputFileError(f"{out} exists and is not a directory; name a directory to write the artifact to")
        existing = out.is_dir()
        if existing and any(out.iterdir()) and not is_ours(out):
            raise InputFileError(f"{out} exists and is not an nmcompile artifact: refusing to replace it; choose "
                                 "another -o or remove it")
    except OSError as err:
        raise _cannot(out, err) from None
    return existing


def replace_directory(out: Path, files: dict[str, bytes], is_ours: Callable[[Path], bool]) -> None:
    """Make `out` a directory holding exactly `files` (relative path -> bytes)."""
    out = Path(out)
    existing = check_directory_target(out, is_ours)
    try:
        parent = out.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        if not parent.is_dir():
            raise InputFileError(f"{out}: {parent} is not a directory")
    except OSError as err:
        raise _cannot(out, err) from None
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".nmc-", dir=parent))
        for rel, data in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for directory in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            directory.chmod(_umask_mode(0o777))
        if existing:
            old = Path(tempfile.mkdtemp(prefix=".nmc-old-", dir=parent))
            os.rename(out, old / "artifact")           # old artifact out of the way, then the new one in
            os.rename(tmp, out)
            tmp = None
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
            tmp = None
    except OSError as err:
        raise _cannot(out, err) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def check_file_target(path: Path) -> Path:
    """`path` can be written by write_file: a non-empty name, not a directory, not an existing special file (a
    device, a FIFO, a symbolic link to one), in an existing directory. Returns its directory."""
    path = Path(path)
    if str(path) in ("", "."):
        raise InputFileError("the output file name is empty; name the file to write")
    try:
        if path.is_dir():
            raise InputFileError(f"{path} is a directory; name the file to write")
        if (path.exists() or path.is_symlink()) and (path.is_symlink() or not path.is_file()):
            raise InputFileError(f"{path} exists and is not a regular file; name a file to write")
        parent = path.absolute().parent
        if not parent.is_dir():
            raise InputFileError(f"{path}: directory {path.parent} does not exist")
    except OSError as err:
        raise _cannot(path, err) from None
    return parent


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to exactly `path` (a temporary sibling renamed onto it); see check_file_target."""
    path = Path(path)
    parent = check_file_target(path)
    try:
        fd, name = tempfile.mkstemp(prefix=".nmc-", dir=parent)
    except OSError as err:
        raise _cannot(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(name, _umask_mode(0o666))
        os.replace(name, path)
    except OSError as err:
        raise _cannot(path, err) from None
    finally:
        if os.path.exists(name):
            os.unlink(name)
