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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmcompile import __version__
from nmcompile.errors import InputFileError
from nmcompile.ir.graph import Graph

FORMAT = "nmcompile-artifact"
FORMAT_VERSION = 1
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

    @property
    def latency(self) -> int:
        return int(self.manifest["latency"])

    @property
    def target(self) -> str:
        return str(self.manifest["target"])

    def reference(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        with np.load(self.path / "reference" / "inputs.npz", allow_pickle=False) as f:
            inputs = f["spikes"]
        with np.load(self.path / "reference" / "outputs.npz", allow_pickle=False) as f:
            outputs = {k: f[k] for k in f.files}
        return inputs, outputs


def write(out: Path, *, graph: Graph, target: str, source: Path, pipeline: list[str], inputs: np.ndarray,
          report: str, files: dict[str, bytes], stage: str = "complete") -> Artifact:
    """Write the artifact directory (replacing files nmcompile owns there)."""
    from nmcompile.ir.serialize import graph_to_bytes

    out.mkdir(parents=True, exist_ok=True)
    (out / "reference").mkdir(exist_ok=True)
    ir_bytes = graph_to_bytes(graph)
    outputs = reference_run(graph, inputs)
    contents: dict[str, bytes] = {
        "network.nmir": ir_bytes,
        "reference/inputs.npz": npz_bytes({"spikes": inputs}),
        "reference/outputs.npz": npz_bytes(outputs),
        "report.md": report.encode(),
        **files,
    }
    for rel, data in contents.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    shapes = graph.shapes()
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
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Artifact(out, manifest, graph)


def read(path: Path, check_digests: bool = True) -> Artifact:
    """Open an artifact directory; every missing or altered file is one error naming it."""
    from nmcompile.ir.serialize import load

    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise InputFileError(f"{path}: not an nmcompile artifact (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputFileError(f"{manifest_path}: corrupt JSON") from None
    if manifest.get("format") != FORMAT:
        raise InputFileError(f"{manifest_path}: not an nmcompile artifact manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputFileError(f"{manifest_path}: artifact format version {manifest.get('format_version')} is not "
                             f"supported (this nmcompile reads {FORMAT_VERSION})")
    if check_digests:
        for rel, digest in manifest.get("files", {}).items():
            file = path / rel
            if not file.is_file():
                raise InputFileError(f"{path}: {rel} is missing")
            if sha256_file(file) != digest:
                raise InputFileError(f"{path}: {rel} was modified after compilation (sha256 differs from the "
                                     "manifest); recompile")
    graph = load(path / "network.nmir")
    return Artifact(path, manifest, graph)
