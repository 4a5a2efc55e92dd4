"""Safe checkpoint loading: a `.pt` file is untrusted data.

    model = build_model("model.pt", "mypkg.models:make_net")

The file is read with `torch.load(weights_only=True)`, which unpickles tensors and plain containers only. A
file that holds other Python objects (a pickled full module, or anything crafted to run code) is refused with
a message naming `--trust-pickle`; only that flag loads it with full unpickling. The factory (`module:function`,
or `path/to/file.py:function`) builds the untrained network the state dict belongs to.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import re
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nmcompile.errors import InputFileError, NmcError, ShapeError, UnsupportedError, existing_file

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")


# A legacy (non-zip) torch.save file opens with pickle's PROTO opcode (0x80), at protocol 4+ a FRAME header, then
# torch's magic number 0x1950a86a20f9469cfc6c pickled as LONG1 (0x8a, 10 bytes, little endian): MAGIC_NUMBER and
# _legacy_save in torch/serialization.py
LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
LEGACY_HEAD_BYTES = 32


class UnsafeCheckpointError(NmcError):
    """The checkpoint would execute code or instantiate arbitrary classes when unpickled."""


def import_factory(spec: str) -> tuple[Callable[[], Any], Any]:
    """Resolve 'pkg.module:function' or 'path/to/file.py:function'; returns (factory, its module)."""
    if spec.count(":") != 1 or not all(spec.split(":")):
        raise UnsupportedError(f"--model {spec!r} must look like 'package.module:factory' or 'file.py:factory'")
    target, attr = spec.split(":")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise InputFileError(f"--model {spec!r}: no such file {target}")
            module_spec = importlib.util.spec_from_file_location(f"_nmcompile_factory_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            cwd = str(Path.cwd())
            added = cwd not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(target)
            finally:
                if added:
                    sys.path.remove(cwd)
    except NmcError:
        raise
    except SystemExit as err:
        raise UnsupportedError(f"--model {spec!r}: importing '{target}' called sys.exit({err.code!r})") from None
    except Exception as err:  # ModuleNotFoundError, SyntaxError, errors raised by the module itself
        detail = " ".join(str(err).split())[:160]
        raise UnsupportedError(f"--model {spec!r}: cannot import '{target}' ({type(err).__name__}: {detail})") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise UnsupportedError(f"--model {spec!r}: module '{target}' has no attribute '{attr}'")
    if not callable(factory):
        raise UnsupportedError(f"--model {spec!r}: '{attr}' is not callable")
    return factory, module


def load_state(path: str | Path, trust_pickle: bool = False) -> Any:
    """torch.load with weights_only=True; returns a state dict (or, with trust_pickle, whatever was saved)."""
    import torch

    path = existing_file(path)
    check_container(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        found = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err))))
        what = f" ({', '.join(found[:3])})" if found else ""
        if "GLOBAL" in str(err) or "Unsupported" in str(err) or "weights_only" in str(err):
            raise UnsafeCheckpointError(
                f"{path}: holds pickled Python objects{what}, not just tensors; unpickling it could run arbitrary "
                "code, so nmcompile refuses. Save model.state_dict() and pass --model, or pass --trust-pickle if "
                "you trust this file"
            ) from None
        raise InputFileError(f"{path}: corrupt checkpoint ({' '.join(str(err).split())[:100]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as err:
        raise InputFileError(f"{path}: truncated, corrupt or not a PyTorch checkpoint "
                             f"({type(err).__name__}: {' '.join(str(err).split())[:100]})") from None
    return data


def check_container(path: Path) -> None:
    """A zip checkpoint (torch.save's format since 1.6) whose members all match their CRC-32: torch.load reads the
    tensor records without checking them, so flipped bytes inside a stored tensor would load silently. Legacy
    (non-zip) checkpoints carry no checksum and are read as they are once their header is torch's; any other
    bytes are refused here, before the unpickler could misname them."""
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            head = f.read(LEGACY_HEAD_BYTES)
        if not (head[:1] == b"\x80" and LEGACY_MAGIC in head):
            raise InputFileError(f"{path}: truncated, corrupt or not a PyTorch checkpoint: neither a complete zip "
                                 "archive (torch.save) nor a legacy torch.save pickle")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    # zipfile raises NotImplementedError for a member whose header names a compression method it lacks: a
    # damaged or crafted container, refused like any other
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise InputFileError(f"{path}: corrupt checkpoint container ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:100]})") from None
    if bad is not None:
        raise InputFileError(f"{path}: corrupt checkpoint: member '{bad}' fails its CRC-32 check (the file was "
                             "damaged or altered after saving)")


def unwrap_state_dict(data: Any, path: Path) -> dict[str, Any]:
    """The tensor dict inside common wrappers ({'state_dict': ...}, {'model': ...})."""
    import torch

    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return data
    if isinstance(data, dict):
        for key in _WRAPPER_KEYS:
            inner = data.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
    raise InputFileError(f"{path}: not a state dict of tensors (found {type(data).__name__}"
                         f"{' with keys ' + ', '.join(map(str, list(data)[:5])) if isinstance(data, dict) else ''})")


def check_finite(state: dict[str, Any], path: Path) -> None:
    import torch

    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            bad = "NaN" if torch.isnan(value).any() else "inf"
            raise InputFileError(f"{path}: '{key}' contains {bad}; the checkpoint comes from a diverged training run "
                                 "or is corrupt")


def build_model(path: str | Path, model_spec: str | None, trust_pickle: bool = False) -> tuple[Any, Any]:
    """The trained nn.Module for a checkpoint, and the factory's module (None for a trusted pickled module)."""
    import torch

    path = Path(path)
    data = load_state(path, trust_pickle)
    if isinstance(data, torch.nn.Module):
        if model_spec:
            raise UnsupportedError(f"{path}: holds a whole pickled module; --model is not needed")
        return data, None
    state = unwrap_state_dict(data, path)
    check_finite(state, path)
    if not model_spec:
        raise UnsupportedError(f"{path}: a state dict needs --model package.module:factory to build the network "
                               "it belongs to")
    factory, module = import_factory(model_spec)
    try:
        model = factory()
    except SystemExit as err:
        raise UnsupportedError(f"--model {model_spec!r}: the factory called sys.exit({err.code!r})") from None
    except Exception as err:
        raise UnsupportedError(f"--model {model_spec!r}: the factory raised {type(err).__name__}: "
                               f"{' '.join(str(err).split())[:160]}") from None
    if not isinstance(model, torch.nn.Module):
        raise UnsupportedError(f"--model {model_spec!r}: the factory returned {type(model).__name__}, not a "
                               "torch.nn.Module")
    _load_into(model, state, path, model_spec)
    return model, module


def _load_into(model, state: dict[str, Any], path: Path, spec: str) -> None:
    from nmcompile.frontend.lowering import transient_state_keys

    transient = transient_state_keys(model)
    state = {k: v for k, v in state.items() if k not in transient}
    own = {k: v for k, v in model.state_dict().items() if k not in transient}
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    if unexpected:
        raise ShapeError(f"{path}: key '{unexpected[0]}' ({len(unexpected)} unexpected in all) is not in the model "
                         f"built by {spec}; is it the right factory?")
    if missing:
        raise ShapeError(f"{path}: the model built by {spec} needs '{missing[0]}' ({len(missing)} missing in all), "
                         "which the checkpoint lacks")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ShapeError(f"{path}: '{key}' has shape {tuple(value.shape)} but the model built by {spec} expects "
                             f"{tuple(own[key].shape)}")
    model.load_state_dict(state, strict=not transient)
