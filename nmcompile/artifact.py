"""The artifact directory `nmcompile compile` writes (docs/formats/artifact.md), and reading it back.

    out/manifest.json        format version, target, versions, source and IR digests, latency, shapes, file digests
    out/network.nmir         the compiled integer network (the golden model backends must equal)
    out/reference/inputs.npz     input spikes [T, B, *input_shape]
    out/reference/outputs.npz    expected outputs [T + L, B, *output_shape] of the integer model, and for every
                                 plastic projection P its final weights `weight:P` [B, out, in]
    out/report.md            what every pass did: folds, latency, quantization, cores, energy
    out/<target files>       written by the target's backend

Everything is written deterministically: the same source and options give byte-identical directories.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmcompile import __version__
from nmcompile.errors import InputFileError
from nmcompile.ir.graph import Graph

FORMAT = "nmcompile-artifact"
FORMAT_VERSION = 2
_EPOCH = (1980, 1, 1, 0, 0, 0)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic .npz (fixed timestamps, sorted members), readable with np.load."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.save(member, np.array(arrays[key], order="C", copy=True), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def reference_run(graph: Graph, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Expected outputs: the inputs followed by L silent steps (so the last input's effect reaches the outputs),
    run in the integer model (or in float64 for an artifact stopped before quantization)."""
    from nmcompile.ir.simulate import simulate

    pad = np.zeros((graph.latency, *inputs.shape[1:]), dtype=inputs.dtype)
    x = np.concatenate([inputs, pad])
    result = simulate(graph, x.astype(np.int64) if graph.is_integer else x.astype(np.float64))
    outputs = {name: out for name, out in result.outputs.items()}
    outputs.update({f"weight:{name}": w for name, w in result.weights.items()})  # plastic: final W [B, out, in]
    return outputs


@dataclass
class Artifact:
    path: Path
    manifest: dict
    graph: Graph
    derived: dict[str, bytes] = field(default_factory=dict)   # files rebuilt from the IR (read(rederive=True))

    @property
    def latency(self) -> int:
        return int(self.manifest["latency"])

    @property
    def target(self) -> str:
        return str(self.manifest["target"])

    def reference(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        try:
            with np.load(self.path / "reference" / "inputs.npz", allow_pickle=False) as f:
                inputs = f["spikes"]
            with np.load(self.path / "reference" / "outputs.npz", allow_pickle=False) as f:
                outputs = {k: f[k] for k in f.files}
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise InputFileError(f"{self.path}: reference/ files are unreadable ({err})") from None
        return inputs, outputs


def write(out: Path, *, graph: Graph, target: str, source: Path, pipeline: list[str], inputs: np.ndarray,
          report: str, files: dict[str, bytes], stage: str = "complete",
          compile_options: dict | None = None) -> Artifact:
    """Write the artifact directory `out` as a whole (nmcompile.outputs.replace_directory: built in a temporary
    directory next to it, then renamed; an earlier artifact there is replaced entirely, anything else refused).
    `compile_options` records what `verify` needs to rebuild the target files: {"target_overrides": {...},
    "backend_options": {...}} (JSON values)."""
    from nmcompile.ir.serialize import graph_to_bytes
    from nmcompile.outputs import replace_directory

    ir_bytes = graph_to_bytes(graph)
    outputs = reference_run(graph, inputs)
    contents: dict[str, bytes] = {
        "network.nmir": ir_bytes,
        "reference/inputs.npz": npz_bytes({"spikes": inputs}),
        "reference/outputs.npz": npz_bytes(outputs),
        "report.md": report.encode(),
        **files,
    }
    shapes = graph.shapes()
    recorded = compile_options or {}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nmcompile_version": __version__,
        "target": target,
        "stage": stage,
        "pipeline": pipeline,
        "source": {"file": source.name, "sha256": sha256_file(source) if source.is_file() else None},
        "ir_sha256": sha256_bytes(ir_bytes),
        "latency": graph.latency,
        "inputs": {n: list(shapes[n]) for n in graph.inputs},
        "outputs": {n: list(shapes[n]) for n in graph.outputs},
        "reference": {"steps": int(inputs.shape[0]), "batch": int(inputs.shape[1])},
        "files": {rel: sha256_bytes(data) for rel, data in sorted(contents.items())},
        "compile": {"target_overrides": dict(recorded.get("target_overrides", {})),
                    "backend_options": dict(recorded.get("backend_options", {}))},
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    replace_directory(out, {**contents, "manifest.json": text.encode()}, is_ours=is_artifact_dir)
    return Artifact(out, manifest, graph)


def is_artifact_dir(path: Path) -> bool:
    """Whether `path` holds an nmcompile artifact (its manifest names the format), i.e. may be replaced."""
    try:
        return json.loads((path / "manifest.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read(path: Path, check_digests: bool = True, rederive: bool = False) -> Artifact:
    """Open an artifact directory: the manifest checked key by key (nmcompile.integrity), then exactly its files
    present with their digests; every problem is one error naming the file. `rederive`: also rebuild every
    derived file from network.nmir and refuse a difference (what boards, `run` and `verify` do); the rebuilt
    bytes are in `Artifact.derived`."""
    from nmcompile.integrity import check_file_set, check_manifest
    from nmcompile.ir.serialize import load

    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise InputFileError(f"{path}: not an nmcompile artifact (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InputFileError(f"{manifest_path}: corrupt JSON") from None
    except OSError as err:
        raise InputFileError(f"{manifest_path}: cannot read ({err.strerror or err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputFileError(f"{manifest_path}: not an nmcompile artifact manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputFileError(f"{manifest_path}: artifact format version {manifest.get('format_version')} is not "
                             f"supported (this nmcompile reads {FORMAT_VERSION}); recompile the artifact")
    check_manifest(manifest, str(path))
    if check_digests:
        check_file_set(path, manifest)
    art = Artifact(path, manifest, load(path / "network.nmir"))
    if rederive:
        from nmcompile.integrity import rederive as rebuild

        art.derived = rebuild(art)
    return art
