"""The artifact as a verifiable unit (docs/formats/artifact.md, "Trust model").

    check_manifest(manifest, label)      # every key present and of its type, file paths inside the artifact
    check_file_set(path, manifest)       # exactly the manifest's files exist (no missing, extra or linked file)
    derived = rederive(art)              # every target file and the reference outputs rebuilt from network.nmir

An artifact is data: `network.nmir` is the golden model, and every other file but report.md is a function of it
and of the compile options recorded in the manifest (`compile`). `verify` and `run` rebuild those files with the
installed nmcompile and refuse any difference, naming the file; boards then use the rebuilt bytes, so no board
runs code or data that this nmcompile did not produce itself.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from nmcompile.errors import InputFileError, NmcError, NmcWarning

REQUIRED_FILES = ("network.nmir", "reference/inputs.npz", "reference/outputs.npz", "report.md")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"\d+(\.\d+)*([.+-][0-9A-Za-z.+-]+)?")


def _fail(label: str, what: str) -> InputFileError:
    return InputFileError(f"{label}: {what}; the manifest is damaged or was edited, recompile the artifact")


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(type(d) is int and d > 0 for d in value)


def check_manifest(manifest: Any, label: str) -> None:
    """Every key of format version 2 present with its type; file paths relative and inside the artifact; the
    IR digest listed among the files. One InputFileError naming the key otherwise."""
    from nmcompile.backends import BACKENDS
    from nmcompile.passes import integer_source_pipeline

    if not isinstance(manifest, dict):
        raise _fail(label, "manifest.json is not a JSON object")
    expected: dict[str, tuple[type, ...]] = {
        "nmcompile_version": (str,), "target": (str,), "stage": (str,), "pipeline": (list,), "source": (dict,),
        "ir_sha256": (str,), "latency": (int,), "inputs": (dict,), "outputs": (dict,), "reference": (dict,),
        "files": (dict,), "compile": (dict,)}
    for key, types in expected.items():
        if key not in manifest:
            raise _fail(label, f"manifest.json has no '{key}'")
        if not isinstance(manifest[key], types) or isinstance(manifest[key], bool):
            raise _fail(label, f"manifest.json '{key}' has the wrong type ({type(manifest[key]).__name__})")
    if manifest["target"] not in BACKENDS:
        raise _fail(label, f"manifest.json names an unknown target {manifest['target']!r}")
    if not _VERSION.fullmatch(manifest["nmcompile_version"]):
        raise _fail(label, f"manifest.json 'nmcompile_version' {manifest['nmcompile_version']!r} is not a version")
    target_passes = list(BACKENDS[manifest["target"]].pipeline)
    # a float source runs the target's pipeline, an integer one (netx, a compiled network) retargets instead
    passes = (integer_source_pipeline(target_passes) if manifest["pipeline"][:1] == ["retarget"]
              else target_passes)
    stage = manifest["stage"]
    stopped = stage.removeprefix("stopped after ")
    if stage == "complete":
        ran = passes
    elif stage.startswith("stopped after ") and stopped in passes:
        ran = passes[: passes.index(stopped) + 1]
    else:
        raise _fail(label, f"manifest.json 'stage' {stage!r} is not 'complete' or 'stopped after PASS'")
    ran_iter = iter(ran)                   # the passes that ran: in order, a part of the pipeline up to the stage
    if not all(isinstance(p, str) and p in ran_iter for p in manifest["pipeline"]) or (
            stage != "complete" and manifest["pipeline"][-1:] != [stopped]):
        raise _fail(label, f"manifest.json 'pipeline' is not a part of the {manifest['target']} pipeline up to its "
                           "stage")
    source = manifest["source"]
    if (set(source) != {"file", "sha256"} or not isinstance(source["file"], str)
            or not (source["sha256"] is None or (isinstance(source["sha256"], str)
                                                 and _HEX64.fullmatch(source["sha256"])))):
        raise _fail(label, "manifest.json 'source' must hold 'file' and 'sha256'")
    if manifest["latency"] < 0:
        raise _fail(label, f"manifest.json 'latency' is negative ({manifest['latency']})")
    for key in ("inputs", "outputs"):
        if not manifest[key] or not all(isinstance(k, str) and _is_shape(v) for k, v in manifest[key].items()):
            raise _fail(label, f"manifest.json '{key}' must map node names to shapes")
    reference = manifest["reference"]
    if set(reference) != {"steps", "batch"} or not all(type(v) is int and v > 0 for v in reference.values()):
        raise _fail(label, "manifest.json 'reference' must hold positive integers 'steps' and 'batch'")
    options = manifest["compile"]
    if set(options) != {"target_overrides", "backend_options"} or not all(isinstance(v, dict)
                                                                          for v in options.values()):
        raise _fail(label, "manifest.json 'compile' must hold 'target_overrides' and 'backend_options'")
    files = manifest["files"]
    for rel, digest in files.items():
        parts = PurePosixPath(rel).parts
        if (not rel or rel.startswith("/") or "\\" in rel or ".." in parts or "." in parts
                or rel == "manifest.json" or PurePosixPath(rel).as_posix() != rel):
            raise _fail(label, f"manifest.json lists the file path {rel!r}, which is not inside the artifact")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _fail(label, f"manifest.json has a malformed sha256 for {rel}")
    for rel in REQUIRED_FILES:
        if rel not in files:
            raise _fail(label, f"manifest.json does not list {rel}")
    if not isinstance(manifest["ir_sha256"], str) or manifest["ir_sha256"] != files["network.nmir"]:
        raise _fail(label, "manifest.json 'ir_sha256' differs from the digest of network.nmir")


def check_file_set(path: Path, manifest: dict) -> None:
    """The directory holds exactly the manifest's files, as regular files (no symbolic links); each matches its
    digest. Names the first missing, extra or modified file."""
    from nmcompile.artifact import sha256_file

    listed = manifest["files"]
    present = set()
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path).as_posix()
        if file.is_symlink():
            raise InputFileError(f"{path}: {rel} is a symbolic link; an artifact holds regular files only")
        if file.is_file() and rel != "manifest.json":
            present.add(rel)
    extra = sorted(present - set(listed))
    if extra:
        raise InputFileError(f"{path}: {extra[0]} is not part of the artifact (not in manifest.json); it was added "
                             "after compilation: remove it or recompile into a fresh directory")
    for rel, digest in sorted(listed.items()):
        if rel not in present:
            raise InputFileError(f"{path}: {rel} is missing")
        if sha256_file(path / rel) != digest:
            raise InputFileError(f"{path}: {rel} was modified after compilation (sha256 differs from the manifest); "
                                 "recompile")


@dataclass(frozen=True)
class StoredTile:
    """A tile of the partition mapping as network.nmir stores it (layer, core, boxes)."""

    layer: str
    core: int
    boxes: list


@dataclass
class StoredMapping:
    """The core mapping read back from network.nmir: what the emitters read to place neurons (the tiles); the
    partitioner's costs, which only the report uses, are not needed to rebuild files."""

    tiles: list[StoredTile]
    cores: int
    core_use: np.ndarray
    capacity: np.ndarray
    lower_bound: dict[str, int] = field(default_factory=dict)
    rates_measured: bool = False

    @classmethod
    def from_json(cls, document: dict, label: str) -> StoredMapping:
        from nmcompile.passes.partition import RESOURCES

        try:
            tiles = [StoredTile(str(t["layer"]), int(t["core"]),
                                [tuple((int(a), int(b)) for a, b in box) for box in t["boxes"]])
                     for t in document["tiles"]]
            cores = int(document["cores"])
            use = document.get("core_use", {})
            core_use = np.array([use.get(r, [0] * cores) for r in RESOURCES], dtype=float).T.reshape(cores, -1)
        except (KeyError, TypeError, ValueError):
            raise InputFileError(f"{label}: network.nmir holds a malformed core mapping") from None
        return cls(tiles, cores, core_use, np.full(len(RESOURCES), np.inf),
                   {str(k): int(v) for k, v in dict(document.get("lower_bound", {})).items()})


_VERIFIED: dict[str, dict[str, bytes]] = {}


def rederive(art) -> dict[str, bytes]:
    """Rebuild every derived file of `art` (an Artifact whose digests were checked) from its network.nmir with this
    nmcompile: the reference outputs and, for a complete compile, every target file. Returns them (path -> bytes);
    refuses the first file whose shipped bytes differ, and a file set that differs. Cached per manifest (whose
    digests the caller checked: the same manifest means the same bytes)."""
    from nmcompile.artifact import npz_bytes, reference_run
    from nmcompile.ir.serialize import graph_to_bytes

    manifest = art.manifest
    key = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    if key in _VERIFIED:
        return _VERIFIED[key]
    path, graph = art.path, art.graph
    label = str(path)
    _check_graph_matches(art, label)
    inputs, _ = art.reference()
    canonical = {"network.nmir": graph_to_bytes(graph), "reference/inputs.npz": npz_bytes({"spikes": inputs})}
    for rel, data in canonical.items():
        if (path / rel).read_bytes() != data:
            raise InputFileError(f"{label}: {rel} is not in the form nmcompile writes (its bytes differ from the "
                                 "same content written again); the artifact was altered: recompile it")
    try:
        graph.verify()
        derived = {"reference/outputs.npz": npz_bytes(reference_run(graph, inputs))}
    except NmcError as err:
        raise InputFileError(f"{label}: network.nmir: {err}") from None
    if manifest["stage"] == "complete":
        derived.update(_target_files(art, label))
    expected = set(derived) | set(REQUIRED_FILES)
    listed = set(manifest["files"])
    if listed != expected:
        odd = sorted(listed ^ expected)[0]
        where = "is listed but this compile does not produce it" if odd in listed else "is missing from the artifact"
        raise InputFileError(f"{label}: {odd} {where} (rebuilt from network.nmir); recompile the artifact")
    for rel in sorted(derived):
        if (path / rel).read_bytes() != derived[rel]:
            note = ("" if manifest["nmcompile_version"] == _version() else
                    f" (compiled by nmcompile {manifest['nmcompile_version']}, this is {_version()})")
            raise InputFileError(f"{label}: {rel} differs from the file rebuilt from network.nmir{note}; the "
                                 "artifact was tampered with or is inconsistent: recompile it")
    _VERIFIED[key] = derived
    return derived


def private_copy(art, folder: str) -> tempfile.TemporaryDirectory:
    """A private temporary directory holding the rebuilt files of `art` under `folder/` (e.g. "fpga"): what a
    board reads and runs, instead of the shipped files. The caller cleans it up."""
    if not art.derived:
        raise InputFileError(f"{art.path}: the artifact was opened without rebuilding its files")
    copy = tempfile.TemporaryDirectory(prefix=f"nmcompile-{folder}-")
    root = Path(copy.name)
    for rel, data in art.derived.items():
        if rel.startswith(f"{folder}/"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
    return copy


def _version() -> str:
    from nmcompile import __version__

    return __version__


def _check_graph_matches(art, label: str) -> None:
    """The manifest's latency, shapes and reference size are those of network.nmir and reference/inputs.npz."""
    graph, manifest = art.graph, art.manifest
    shapes = graph.shapes()
    if manifest["latency"] != graph.latency:
        raise _fail(label, f"manifest.json says latency {manifest['latency']}, network.nmir {graph.latency}")
    for key, names in (("inputs", graph.inputs), ("outputs", graph.outputs)):
        if manifest[key] != {n: list(shapes[n]) for n in names}:
            raise _fail(label, f"manifest.json '{key}' differ from network.nmir's")
    try:
        inputs, _ = art.reference()
    except (KeyError, ValueError, OSError, EOFError) as err:
        raise InputFileError(f"{label}: reference/inputs.npz or outputs.npz is unreadable ({err})") from None
    want = (manifest["reference"]["steps"], manifest["reference"]["batch"], *shapes[graph.inputs[0]])
    if len(graph.inputs) != 1 or inputs.shape != want or inputs.dtype != np.int64 \
            or not np.all((inputs == 0) | (inputs == 1)):
        raise _fail(label, f"reference/inputs.npz must hold 0/1 int64 spikes of shape {want}")


def _target_files(art, label: str) -> dict[str, bytes]:
    from nmcompile.backends import get_backend
    from nmcompile.lowered import lower_network
    from nmcompile.targets import get_target

    backend = get_backend(art.target)
    recorded = art.manifest["compile"]
    file_options = {o.name for o in backend.options if o.files}
    unknown = set(recorded["backend_options"]) - {o.name for o in backend.options}
    if unknown:
        raise _fail(label, f"manifest.json records an unknown {art.target} option {sorted(unknown)[0]!r}")
    defaults = {o.name: o.default for o in backend.options}
    options = {**defaults, **{k: v for k, v in recorded["backend_options"].items() if k in file_options}}
    graph = art.graph.copy()
    if isinstance(graph.mapping, dict):
        graph.mapping = StoredMapping.from_json(graph.mapping, label)
    try:
        stock = get_target(art.target)
        for name, value in recorded["target_overrides"].items():
            default = getattr(stock, name, None)
            if default is None or type(value) is not type(default):
                raise TypeError(f"{name}={value!r}")
        target = get_target(art.target, **recorded["target_overrides"])
    except (TypeError, ValueError, NmcError) as err:
        raise _fail(label, f"manifest.json 'compile' holds a malformed target override ({err})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NmcWarning)          # the compile already reported them
        try:
            return dict(backend.emit(lower_network(graph), target, options, lambda message: None).files)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            raise InputFileError(f"{label}: the target files cannot be rebuilt from network.nmir "
                                 f"({type(err).__name__}: {err}); recompile the artifact") from None
