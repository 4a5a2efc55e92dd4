"""The functions the CLI calls: load any supported network file into the IR, and run it."""

from __future__ import annotations

from pathlib import Path

from nmcompile.errors import InputFileError, UnsupportedError
from nmcompile.ir.graph import Graph

NETWORK_SUFFIXES = {".nir": "NIR graph", ".nmir": "nmcompile IR"}


def load_network(path: str | Path, *, nir_dt: float | None = None, nir_reset: str | None = None) -> Graph:
    """Read a network file into a verified IR graph: `.nir` (NIR 1.0.x) or `.nmir` (nmcompile IR)."""
    path = Path(path)
    if path.is_dir():
        raise UnsupportedError(f"{path}: is a directory; compiled artifact directories arrive with "
                               "`nmcompile compile`")
    suffix = path.suffix.lower()
    if suffix == ".nir":
        from nmcompile.frontend.nir import DEFAULT_DT, read_nir

        graph = read_nir(path, dt=nir_dt if nir_dt is not None else DEFAULT_DT, reset_mode=nir_reset)
    elif suffix == ".nmir":
        from nmcompile.ir.serialize import load

        graph = load(path)
    else:
        known = ", ".join(f"{s} ({d})" for s, d in NETWORK_SUFFIXES.items())
        if not path.exists():
            raise InputFileError(f"{path}: no such file")
        raise UnsupportedError(f"{path}: unknown network file type '{suffix or '(none)'}'; supported: {known}")
    graph.verify()
    return graph
