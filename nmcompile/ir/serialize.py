"""Save and load graphs as `.nmir` files (docs/formats/ir.md): a zip holding `graph.json` and one `.npy`
per array parameter. Writing is byte-deterministic (fixed timestamps, sorted JSON keys); reading never
unpickles anything and turns every malformed input into a one-line InputFileError.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from nmcompile.errors import GraphError, InputFileError, existing_file
from nmcompile.ir.base import Provenance
from nmcompile.ir.graph import Graph

FORMAT = "nmcompile-ir"
VERSION = 1
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _zip_write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array(array, order="C", copy=True), allow_pickle=False)
    return buffer.getvalue()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def graph_to_bytes(graph: Graph) -> bytes:
    nodes = []
    arrays: list[tuple[str, np.ndarray]] = []
    for index, (name, op) in enumerate(graph.nodes.items()):
        entry: dict[str, Any] = {
            "name": name,
            "op": op.kind,
            "params": {k: _jsonable(v) for k, v in op.scalar_params().items()},
            "arrays": {},
            "provenance": dataclasses.asdict(op.provenance) if op.provenance else None,
        }
        for key, array in op.array_params().items():
            member = f"arrays/{index}/{key}.npy"
            entry["arrays"][key] = member
            arrays.append((member, array))
        nodes.append(entry)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "dt": graph.dt,
        "latency": graph.latency,
        "nodes": nodes,
        "edges": [{"src": e.src, "dst": e.dst, "recurrent": e.recurrent} for e in graph.edges],
    }
    if graph.mapping is not None:
        document["mapping"] = graph.mapping.to_json() if hasattr(graph.mapping, "to_json") else graph.mapping
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        _zip_write(zf, "graph.json", json.dumps(document, indent=1, sort_keys=True).encode())
        for member, array in arrays:
            _zip_write(zf, member, _npy_bytes(array))
    return buffer.getvalue()


def save(graph: Graph, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(graph_to_bytes(graph))
    return path


def load(path: str | Path) -> Graph:
    path = existing_file(path)
    return graph_from_bytes(path.read_bytes(), str(path))


def graph_from_bytes(data: bytes, label: str = "<bytes>") -> Graph:
    from nmcompile.ir.ops import OP_TYPES

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        document = json.loads(zf.read("graph.json"))
    except (zipfile.BadZipFile, zlib.error, KeyError, EOFError, json.JSONDecodeError, UnicodeDecodeError,
            OSError):
        raise InputFileError(f"{label}: truncated or not an nmcompile IR file (.nmir)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputFileError(f"{label}: not an nmcompile IR file (missing format tag '{FORMAT}')")
    if document.get("version") != VERSION:
        raise InputFileError(f"{label}: IR format version {document.get('version')} is not supported "
                             f"(this nmcompile reads version {VERSION})")
    graph = Graph(str(document.get("name", "network")), document.get("dt"))
    graph.latency = int(document.get("latency", 0))
    graph.mapping = document.get("mapping")
    try:
        for entry in document["nodes"]:
            op_type = OP_TYPES.get(entry["op"])
            if op_type is None:
                raise InputFileError(f"{label}: node '{entry['name']}' has unknown op '{entry['op']}'")
            kwargs = dict(entry["params"])
            for key, member in entry["arrays"].items():
                try:
                    kwargs[key] = np.load(io.BytesIO(zf.read(member)), allow_pickle=False)
                except (KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, OSError):
                    raise InputFileError(f"{label}: array '{key}' of node '{entry['name']}' is missing or "
                                         "corrupt") from None
            if entry.get("provenance"):
                kwargs["provenance"] = Provenance(**entry["provenance"])
            try:
                op = op_type(**kwargs)
            except (TypeError, ValueError) as err:
                raise InputFileError(f"{label}: node '{entry['name']}' ({entry['op']}) is malformed: {err}") from None
            graph.add(entry["name"], op)
        for edge in document["edges"]:
            graph.connect(edge["src"], edge["dst"], bool(edge.get("recurrent", False)))
    except (KeyError, TypeError) as err:
        raise InputFileError(f"{label}: malformed graph.json ({err})") from None
    except GraphError as err:
        raise InputFileError(f"{label}: {err}") from None
    return graph
