"""Backends: one `Backend` object per target, listed in an explicit registry (no folder scanning).

    backend = get_backend("fpga")
    backend.pipeline                      # the passes `nmcompile compile --target fpga` runs, in order
    backend.emit(view, target, options)   # files of the artifact (paths relative to it) and report lines

A backend reads the lowered network (`nmcompile.lowered.LoweredNetwork`) built after partitioning, never the
graph. The CLI derives `--target` choices, the backend's own compile options, `nmcompile targets` and the board
URL schemes from this registry; cli.py and api.py name no backend. Adding a backend: docs/extending.md.
Importing this module is cheap: every backend names its emitter, boards and report as "module:function"
strings that are imported when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nmcompile.errors import UnsupportedError


def load_object(spec: str) -> Any:
    """Import "package.module:attribute"."""
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class BackendOption:
    """A compile option a backend contributes to `nmcompile compile` (`--NAME`, underscores as dashes). `files`:
    whether it changes the emitted files (recorded in the manifest and replayed when `verify` rebuilds them);
    False for an option that only adds to the report."""

    name: str
    help: str
    flag: bool = False
    metavar: str | None = None
    default: Any = None
    files: bool = True


@dataclass(frozen=True)
class Emitted:
    """What an emitter returns: the target's files (relative path -> bytes) and its report.md section."""

    files: dict[str, bytes]
    report: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Backend:
    """A target's backend.

    name        the target name (`--target`, `nmcompile.targets.TARGETS`)
    pipeline    the passes of its compile pipeline, in order
    emitter     "module:function" with emit(view, target, options, log) -> Emitted; None: this build runs the
                passes only (`--stop-after`)
    options     compile options the backend reads from `options` in emit
    check_options  "module:function" with check(options) raising UnsupportedError for a malformed value of
                `options`: run before the passes, so that a wrong flag is named before the compile's work
    boards      URL scheme -> "module:Class" of the boards that run its artifacts: `nmcompile.runtime.board.open_board`
                imports the class and calls Class.from_url(parsed_url, query, progress=...)
    conformance boards on which the conformance suite runs every shared test network (tests/backends)
    report      "module:function" with section(artifact, options, log) -> list[str]: extra `nmcompile report` lines
    report_options  the options that section reads (`nmcompile report --NAME`)
    """

    name: str
    summary: str
    pipeline: tuple[str, ...]
    emitter: str | None = None
    options: tuple[BackendOption, ...] = ()
    check_options: str | None = None
    boards: dict[str, str] = field(default_factory=dict)
    conformance: tuple[str, ...] = ()
    report: str | None = None
    report_options: tuple[BackendOption, ...] = ()

    @property
    def available(self) -> bool:
        return self.emitter is not None

    def status(self) -> str:
        if self.available:
            return f"available: `nmcompile compile --target {self.name}` writes the target's files"
        return ("not in this build: the passes run and `--stop-after` writes the compiled integer IR, but no target "
                "files are emitted")

    def emit(self, view: Any, target: Any, options: dict[str, Any], log: Callable[[str], None]) -> Emitted:
        if self.emitter is None:
            raise UnsupportedError(f"the {self.name} backend is not in this build: no target files can be emitted; "
                                   "pass --stop-after partition to compile to the integer IR, report and reference "
                                   "only")
        return load_object(self.emitter)(view, target, options, log)


def _registry() -> dict[str, Backend]:
    from nmcompile.backends.fpga.backend import BACKEND as FPGA
    from nmcompile.backends.loihi.backend import BACKEND as LOIHI
    from nmcompile.backends.spinnaker2.backend import BACKEND as SPINNAKER2

    return {b.name: b for b in (LOIHI, SPINNAKER2, FPGA)}


BACKENDS: dict[str, Backend] = _registry()


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UnsupportedError(f"unknown target {name!r}; targets: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def all_options(kind: str = "compile") -> list[tuple[Backend, BackendOption]]:
    """Every backend's options of `nmcompile compile` (kind "compile") or `nmcompile report` ("report")."""
    return [(b, option) for b in BACKENDS.values()
            for option in (b.options if kind == "compile" else b.report_options)]


def board_schemes() -> dict[str, tuple[str, str]]:
    """URL scheme -> (target, "module:Class") over every backend."""
    return {scheme: (b.name, spec) for b in BACKENDS.values() for scheme, spec in b.boards.items()}
