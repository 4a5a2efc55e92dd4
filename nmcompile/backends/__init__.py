"""Backends: one package per target. Each has `pipeline.py` (the passes it runs, as visible code) and, once its
emitter exists, `emit.py` (writes the target's files into an artifact directory) and `verify.py`."""

from __future__ import annotations

import importlib
import importlib.util


def pipeline(target: str) -> list[str]:
    """The pass list of a target's compile pipeline."""
    return list(importlib.import_module(f"nmcompile.backends.{target}.pipeline").PIPELINE)


def has_emitter(target: str) -> bool:
    return importlib.util.find_spec(f"nmcompile.backends.{target}.emit") is not None


def backend_status(target: str) -> str:
    if has_emitter(target):
        return "available: `nmcompile compile --target " + target + "` writes the target's files"
    return ("not in this build: the passes run and `--stop-after` writes the compiled integer IR, but no "
            "target files are emitted")
