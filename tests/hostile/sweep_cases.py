"""The cases of the black-box sweep (tests/hostile/sweep.py): fixtures made once, then one generator per category.

Each generator yields `Case`s: the command line, what it must do (error | usage | ok) and, where it matters, a
check of what was written. Special files are FIFOs and links the fixtures create, never system paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    category: str
    name: str
    argv: list[str]
    expect: str                                   # error | usage | ok
    check: Callable[[str], str | None] | None = None  # after the run, given stderr: None when fine, else what is wrong
    setup: Callable[[], object] | None = None      # before the run; its result is closed afterwards if closable
    env: dict[str, str] = field(default_factory=dict)


# -- fixtures ------------------------------------------------------------------------------------------------------

def _tiny_graph():
    from nmcompile.ir import ops as O
    from nmcompile.ir.graph import Graph

    rng = np.random.default_rng(0)
    g = Graph("tiny")
    g.add("in", O.Input(shape=(12,)))
    g.add("fc", O.Linear(weight=rng.normal(0.4, 0.5, (8, 12))))
    g.add("lif", O.LIF(shape=(8,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(8,)))
    g.chain("in", "fc", "lif", "out")
    return g


class Fixtures:
    """Files every case reads, made once in `work`."""

    def __init__(self, work: Path):
        from nmcompile.api import CompileRequest, compile_network
        from nmcompile.ir.serialize import save

        self.work = work
        self.nmir = save(_tiny_graph(), work / "tiny.nmir")
        self.spikes = self.npz("spikes.npz", spikes=(np.random.default_rng(1).random((20, 2, 12)) < 0.3).astype(
            np.int8))
        self.calibration = self.npz("calib.npz", spikes=(np.random.default_rng(2).random((30, 8, 12)) < 0.3)
                                    .astype(np.int8))
        self.artifacts = {}
        for target in ("fpga", "loihi2", "spinnaker2"):
            out = work / f"tiny-{target}"
            compile_network(CompileRequest(source=self.nmir, target=target, out=out, reference_samples=2))
            self.artifacts[target] = out
        self.digits = ROOT / "examples" / "digits" / "digits.pt"
        self.model = f"{ROOT / 'examples' / 'digits' / 'model.py'}:make_model"
        self.file = work / "a-file"
        self.file.write_text("x")
        self.fifo, self.fifo_link = work / "a-fifo", work / "a-fifo-link"   # special files (never /dev/null: a bug
        os.mkfifo(self.fifo)                                                  # running as root would replace it)
        self.fifo_link.symlink_to(self.fifo)
        self.counter = 0

    def npz(self, name: str, **arrays) -> Path:
        path = self.work / name
        np.savez(path, **arrays)
        return path

    def fresh(self, prefix: str) -> Path:
        self.counter += 1
        return self.work / f"{prefix}-{self.counter}"

    def copy_artifact(self, target: str) -> Path:
        dst = self.fresh(f"art-{target}")
        shutil.copytree(self.artifacts[target], dst)
        return dst


def _rehash(art: Path, rel: str) -> None:
    manifest = json.loads((art / "manifest.json").read_text())
    digest = hashlib.sha256((art / rel).read_bytes()).hexdigest()
    manifest["files"][rel] = digest
    if rel == "network.nmir":
        manifest["ir_sha256"] = digest
    (art / "manifest.json").write_text(json.dumps(manifest))


def _edit_manifest(art: Path, edit: Callable[[dict], None]) -> None:
    manifest = json.loads((art / "manifest.json").read_text())
    edit(manifest)
    (art / "manifest.json").write_text(json.dumps(manifest))


# -- cases ---------------------------------------------------------------------------------------------------------

def spike_file_cases(fx: Fixtures) -> Iterator[Case]:
    variants: dict[str, object] = {
        "T=0": np.zeros((0, 2, 12), np.int8), "B=0": np.zeros((5, 0, 12), np.int8),
        "N=0": np.zeros((5, 2, 0), np.int8), "width 11": np.zeros((5, 2, 11), np.int8),
        "width 13": np.zeros((5, 2, 13), np.int8), "2-D": np.zeros((5, 12), np.int8), "1-D": np.zeros(5, np.int8),
        "0-D": np.int8(1), "value 2": np.full((5, 2, 12), 2, np.int8), "value -1": np.full((5, 2, 12), -1),
        "value 0.5": np.full((5, 2, 12), 0.5), "NaN": np.full((5, 2, 12), np.nan), "inf": np.full((5, 2, 12), np.inf),
        "complex": np.zeros((5, 2, 12), complex), "strings": np.full((5, 2, 12), "1"),
        "datetime": np.zeros((5, 2, 12), "datetime64[s]"),
    }
    valid = {"int8": np.ones((5, 2, 12), np.int8), "bool": np.ones((5, 2, 12), bool),
             "float 0/1": np.ones((5, 2, 12)), "uint64": np.ones((5, 2, 12), np.uint64),
             "shape 3x4": np.ones((5, 2, 3, 4), np.int8)}
    files: dict[str, Path] = {}
    for name, array in {**variants, **valid}.items():
        files[name] = fx.npz(f"spk-{len(files)}.npz", spikes=array)
    objects = fx.work / "spk-object.npz"
    np.savez(objects, spikes=np.array([{"a": 1}], dtype=object))
    files["pickled object"] = objects
    files["no 'spikes'"] = fx.npz("spk-x.npz", x=np.ones((5, 2, 12)))
    files["empty archive"] = fx.npz("spk-empty.npz")
    for name, data in {"empty file": b"", "random bytes": os.urandom(300),
                       "truncated": fx.spikes.read_bytes()[:-40], "npy": b"\x93NUMPY" + bytes(100)}.items():
        path = fx.work / f"spk-{name.replace(' ', '_')}.npz"
        path.write_bytes(data)
        files[name] = path
    npy = fx.work / "spk-npy.npy"
    np.save(npy, np.ones((5, 2, 12), np.float32))
    files["npy array"] = npy
    files["missing"] = fx.work / "no-such.npz"
    files["directory"] = fx.work
    files["/dev/null"] = Path("/dev/null")
    for name, path in files.items():
        expect = "ok" if name in valid or name == "npy array" else "error"
        yield Case("spike files", f"run --input ({name})",
                   ["run", str(fx.nmir), "--input", str(path), "--output", str(fx.fresh("o"))], expect)
        if name in ("T=0", "B=0", "width 11", "2-D", "value 2", "pickled object", "truncated", "int8", "npy array"):
            yield Case("spike files", f"compile --calibration-spikes ({name})",
                       ["compile", str(fx.nmir), "--target", "fpga", "-o", str(fx.fresh("c")),
                        "--calibration-spikes", str(path)], expect)
            yield Case("spike files", f"inspect --energy ({name})",
                       ["inspect", str(fx.nmir), "--energy", "--calibration-spikes", str(path)], expect)
        if name in ("T=0", "width 13", "value 0.5", "int8"):
            art = fx.artifacts["fpga"]
            yield Case("spike files", f"run ART --input ({name})",
                       ["run", str(art), "--input", str(path), "--output", str(fx.fresh("o"))], expect)


def artifact_cases(fx: Fixtures) -> Iterator[Case]:
    for target, art in fx.artifacts.items():
        files = json.loads((art / "manifest.json").read_text())["files"]
        yield Case("artifacts", f"{target}: untouched (control)", ["verify", str(art), "--board", "ref://"], "ok")
        for rel in sorted(files):
            for how in ("flip+rehash", "flip", "delete", "append+rehash"):
                dst = fx.copy_artifact(target)
                path = dst / rel
                if how == "delete":
                    path.unlink()
                else:
                    data = bytearray(path.read_bytes())
                    if how.startswith("append"):
                        data += b"\n"
                    else:
                        data[len(data) // 2] ^= 0x01
                    path.write_bytes(bytes(data))
                    if how.endswith("rehash"):
                        _rehash(dst, rel)
                if rel == "report.md" and how.endswith("rehash"):
                    continue                  # the report is only digested: a rehashed edit is a consistent forgery
                command = ["verify", str(dst), "--board", "ref://"]
                if target == "fpga" and rel.startswith("fpga/") and how == "flip+rehash":
                    command = ["run", str(dst), "--board", "verilator://", "--input", str(fx.spikes), "--output",
                               str(fx.fresh("o"))]
                yield Case("artifacts", f"{target}: {rel} {how}", command, "error")
                if how in ("flip+rehash", "append+rehash") and command[0] == "verify":
                    yield Case("artifacts", f"{target}: {rel} {how} (run)",
                               ["run", str(dst), "--input", str(fx.spikes), "--output", str(fx.fresh("o"))], "error")
    art = fx.artifacts["fpga"]
    manifest = json.loads((art / "manifest.json").read_text())
    for key in sorted(manifest):
        for value in ("delete", None, [], "x", 12345678901, {"a": 1}, True):
            if key == "pipeline" and value == []:
                continue                      # a valid record (artifact.write of a hand-made graph): informational
            if value == "delete" or value != manifest[key]:
                dst = fx.copy_artifact("fpga")

                def edit(m, key=key, value=value):
                    if value == "delete":
                        del m[key]
                    else:
                        m[key] = value
                _edit_manifest(dst, edit)
                yield Case("manifests", f"'{key}' = {value!r}", ["verify", str(dst), "--board", "ref://"], "error")
    edits: dict[str, Callable[[dict], None]] = {
        "path traversal": lambda m: m["files"].update({"../a-file": hashlib.sha256(b"x").hexdigest()}),
        "absolute path": lambda m: m["files"].update({"/etc/hostname": "0" * 64}),
        "bad digest": lambda m: m["files"].update({"report.md": "zz"}),
        "ir_sha256 differs": lambda m: m.update(ir_sha256="0" * 64),
        "latency +1": lambda m: m.update(latency=m["latency"] + 1),
        "latency -1": lambda m: m.update(latency=-1),
        "input shape": lambda m: m.update(inputs={"in": [13]}),
        "output renamed": lambda m: m.update(outputs={"x": [8]}),
        "reference steps": lambda m: m["reference"].update(steps=3),
        "reference batch 0": lambda m: m["reference"].update(batch=0),
        "target loihi2": lambda m: m.update(target="loihi2"),
        "target unknown": lambda m: m.update(target="tpu"),
        "fpga part changed": lambda m: m["compile"]["backend_options"].update(fpga_part="xc7a35t"),
        "unknown option": lambda m: m["compile"]["backend_options"].update(evil=1),
        "chips override": lambda m: m["compile"]["target_overrides"].update(chips="many"),
        "unknown override": lambda m: m["compile"]["target_overrides"].update(warp=9),
        "format version 1": lambda m: m.update(format_version=1),
        "stage stopped": lambda m: m.update(stage="stopped after quantize"),
        "file unlisted": lambda m: m["files"].pop("fpga/synth.ys"),
        "network.nmir unlisted": lambda m: m["files"].pop("network.nmir"),
    }
    for name, edit in edits.items():
        dst = fx.copy_artifact("fpga")
        _edit_manifest(dst, edit)
        yield Case("manifests", name, ["verify", str(dst), "--board", "ref://"], "error")
        if name in ("fpga part changed", "file unlisted", "latency +1"):
            yield Case("manifests", f"{name} (run)", ["run", str(dst), "--input", str(fx.spikes), "--output",
                                                      str(fx.fresh("o"))], "error")
    for name, text in {"not JSON": "{", "a list": "[]", "a number": "1", "binary": "\xff\xfe", "deep": "[" * 100000,
                       "empty": ""}.items():
        dst = fx.copy_artifact("fpga")
        (dst / "manifest.json").write_text(text, errors="surrogateescape")
        yield Case("manifests", f"manifest {name}", ["verify", str(dst), "--board", "ref://"], "error")
    dst = fx.copy_artifact("fpga")
    (dst / "fpga" / "hdl" / "extra.v").write_text("module extra; endmodule\n")
    yield Case("artifacts", "stale extra .v in fpga/hdl", ["run", str(dst), "--board", "verilator://", "--input",
                                                           str(fx.spikes), "--output", str(fx.fresh("o"))], "error")
    dst = fx.copy_artifact("fpga")
    (dst / "fpga" / "old").mkdir()
    (dst / "fpga" / "old" / "x.hex").write_text("00\n")
    yield Case("artifacts", "stale directory", ["verify", str(dst), "--board", "ref://"], "error")
    dst = fx.copy_artifact("fpga")
    (dst / "report.md").unlink()
    (dst / "report.md").symlink_to(fx.artifacts["fpga"] / "report.md")
    yield Case("artifacts", "symlinked file", ["verify", str(dst), "--board", "ref://"], "error")
    for rel in ("lava_network.py", "run_lava.py", "network.npz"):
        dst = fx.copy_artifact("loihi2")
        with open(dst / rel, "ab") as f:
            f.write(b"\nimport os; os.system('touch PWNED')\n" if rel.endswith(".py") else b"\0")
        _rehash(dst, rel)
        yield Case("artifacts", f"loihi2: code in {rel} (lava://)", ["verify", str(dst), "--board", "lava://"],
                   "error", check=lambda err: "artifact code ran" if (fx.work / "PWNED").exists() else None)
    yield Case("artifacts", "not an artifact (empty dir)", ["verify", str(fx.fresh("empty")), "--board", "ref://"],
               "error", setup=lambda: fx.work.joinpath(f"empty-{fx.counter}").mkdir())


def random_cases(fx: Fixtures, count: int = 60) -> Iterator[Case]:
    """Seeded random manifest mutations (a value replaced somewhere in the manifest) and random spike arrays."""
    rng = np.random.default_rng(2026)
    values = [None, True, 0, -1, 2**63, 1.5, "", "x" * 300, [], [1, 2], {}, {"k": None}]
    original = json.loads((fx.artifacts["fpga"] / "manifest.json").read_text())
    for k in range(count):
        manifest = json.loads(json.dumps(original))
        node, trail = manifest, []
        while True:
            key = sorted(node)[rng.integers(len(node))]
            trail.append(key)
            if isinstance(node[key], dict) and node[key] and rng.random() < 0.6:
                node = node[key]
                continue
            break
        value = values[rng.integers(len(values))]
        if node[key] == value:
            continue
        node[key] = value
        dst = fx.copy_artifact("fpga")
        (dst / "manifest.json").write_text(json.dumps(manifest))
        yield Case("random", f"manifest {'.'.join(trail)} = {value!r}"[:80] + f" #{k}",
                   ["verify", str(dst), "--board", "ref://"], "error")
    for k in range(count):
        shape = tuple(int(d) for d in rng.integers(0, 4, size=rng.integers(1, 5)))
        dtype = [np.int8, np.uint16, np.float32, np.float64, np.bool_, np.int64][rng.integers(6)]
        array = rng.integers(-1, 3, size=shape).astype(dtype)
        valid = (len(shape) >= 3 and min(shape) >= 1 and int(np.prod(shape[2:])) == 12
                 and bool(np.all((array == 0) | (array == 1))))
        path = fx.npz(f"rand-{k}.npz", spikes=array)
        yield Case("random", f"spikes {shape} {np.dtype(dtype).name} #{k}",
                   ["run", str(fx.nmir), "--input", str(path), "--output", str(fx.fresh("o"))],
                   "ok" if valid else "error")


def output_path_cases(fx: Fixtures) -> Iterator[Case]:
    base = ["run", str(fx.nmir), "--input", str(fx.spikes), "--output"]
    out_bin = fx.work / "out.bin"

    def exact(err: str) -> str | None:
        if not out_bin.is_file() or (fx.work / "out.bin.npz").exists():
            return "the output was not written under exactly the name given"
        return None

    yield Case("output paths", "run --output out.bin", [*base, str(out_bin)], "ok", check=exact)
    bad = {"a directory": str(fx.work), "empty": "", "/proc": "/proc/nmc-out.npz", "a FIFO": str(fx.fifo),
           "a link to a FIFO": str(fx.fifo_link),
           "under a file": str(fx.file / "out.npz"), "over-long name": str(fx.work / ("a" * 300 + ".npz")),
           "missing directory": str(fx.work / "no" / "dir" / "out.npz"), "/": "/"}
    for name, path in bad.items():
        expect = "usage" if name == "empty" else "error"
        if name == "missing directory":      # compile -o creates the artifact directory's parents (mkdir -p)
            yield Case("output paths", "compile -o (missing parent directories)",
                       ["compile", str(fx.nmir), "--target", "fpga", "-o", str(fx.work / "new" / "dirs" / "art")],
                       "ok")
        yield Case("output paths", f"run --output ({name})", [*base, path], expect)
        yield Case("output paths", f"verify --junit ({name})",
                   ["verify", str(fx.artifacts["fpga"]), "--board", "ref://", "--junit", path], expect)
        if name != "missing directory":
            yield Case("output paths", f"compile -o ({name})",
                       ["compile", str(fx.nmir), "--target", "fpga", "-o", path], expect)
        yield Case("output paths", f"export -o ({name})", ["export", str(fx.nmir),
                                                           "-o", path], "usage" if name == "empty" else "error")
    other = fx.fresh("userdir")

    def make_user_dir():
        other.mkdir()
        (other / "thesis.tex").write_text("precious")

    yield Case("output paths", "compile -o (a non-empty directory that is not an artifact)",
               ["compile", str(fx.nmir), "--target", "fpga", "-o", str(other)], "error", setup=make_user_dir,
               check=lambda err: None if (other / "thesis.tex").read_text() == "precious" else "user file touched")
    yield Case("output paths", "compile -o .", ["compile", str(fx.nmir), "--target", "fpga", "-o", "."], "error")
    stale = fx.fresh("stale")

    def make_stale():
        shutil.copytree(fx.artifacts["fpga"], stale)
        (stale / "fpga" / "hdl" / "old.v").write_text("module old; endmodule\n")
        (stale / "leftover.txt").write_text("x")

    def no_stale(err: str) -> str | None:
        left = [p.name for p in (stale / "fpga" / "hdl" / "old.v", stale / "leftover.txt") if p.exists()]
        return f"files of the earlier compile survived: {left}" if left else None

    yield Case("output paths", "compile -o (an earlier fpga artifact with extra files)",
               ["compile", str(fx.nmir), "--target", "loihi2", "-o", str(stale)], "ok", setup=make_stale,
               check=no_stale)
    empty = fx.fresh("emptydir")
    yield Case("output paths", "compile -o (an empty directory)",
               ["compile", str(fx.nmir), "--target", "fpga", "-o", str(empty)], "ok", setup=lambda: empty.mkdir(),
               check=lambda err: None if (empty / "manifest.json").is_file() else "no artifact written")


def flag_cases(fx: Fixtures) -> Iterator[Case]:
    compile_base = ["compile", str(fx.nmir), "--target", "fpga"]
    usage = {"--chips": ["0", "-1", "abc", "99999"], "--reference-samples": ["0", "-3", "x", "100000"],
             "--trace-steps": ["0", "-1"], "--percentile": ["0", "101", "nan", "-5"],
             "--nir-dt": ["0", "-1", "nan", "inf"], "--snn-steps": ["0"], "--target": ["tpu", ""],
             "--forward": ["sideways"], "--nir-reset": ["maybe"]}
    for flag, values in usage.items():
        for value in values:
            argv = ([*compile_base, "-o", str(fx.fresh("c")), flag, value] if flag != "--target" else
                    ["compile", str(fx.nmir), "--target", value, "-o", str(fx.fresh("c"))])
            yield Case("flags", f"compile {flag} {value!r}", argv, "usage")
    errors = {
        "--reference-samples 9 with 8 calibration samples": ["--reference-samples", "9", "--calibration-spikes",
                                                              str(fx.calibration)],
        "--stdp-param garbage": ["--stdp", "fc", "--stdp-param", "x"],
        "--stdp-param pre_increment=999": ["--stdp", "fc", "--stdp-param", "pre_increment=999"],
        "--stdp on loihi2": ["--stdp", "fc"],
        "--fpga-part bogus": ["--fpga-part", "xc9z"],
        "--stop-after bogus": ["--stop-after", "nope"],
        "--dump-after bogus": ["--dump-after", "nope"],
        "--stdp unknown projection": ["--stdp", "nope"],
        "--stdp-param without --stdp": ["--stdp-param", "ltp_shift=2"],
        "--chips 2 on fpga": ["--chips", "2"],
    }
    for name, extra in errors.items():
        target = "loihi2" if "loihi2" in name else "fpga"
        yield Case("flags", f"compile {name}",
                   ["compile", str(fx.nmir), "--target", target, "-o", str(fx.fresh("c")), *extra], "error")
    yield Case("flags", "compile --reference-samples 8 with 8 calibration samples",
               [*compile_base, "-o", str(fx.fresh("c")), "--reference-samples", "8", "--calibration-spikes",
                str(fx.calibration)], "ok")
    yield Case("flags", "compile --chips 1", [*compile_base, "-o", str(fx.fresh("c")), "--chips", "1"], "ok")
    yield Case("usage", "no arguments", [], "usage")
    yield Case("usage", "unknown command", ["frobnicate"], "usage")
    yield Case("usage", "compile without --target", ["compile", str(fx.nmir)], "usage")
    yield Case("usage", "run without --input", ["run", str(fx.nmir), "--output", "x.npz"], "usage")


def board_url_cases(fx: Fixtures) -> Iterator[Case]:
    art = str(fx.artifacts["fpga"])
    urls = ["ref://?x=1", "ref://?integer=2", "ref://?precision=float16", "ref://host", "verilator://?program=2",
            "verilator://?blank=abc", "verilator://?program=1&program=1", "verilator://?=1", "verilator://?program",
            "verilator://extra/path", "serial:///dev/null?baud=abc", "serial:///dev/null?baud=0",
            "serial:///dev/null?baud=-9600", "serial:///dev/null?timeout=-1", "serial:///dev/null?timeout=nan",
            "serial:///dev/null?timeout=inf", "serial:///dev/null?program=2", "serial:///dev/null?parity=E",
            "serial:///dev/nmc-no-such-port", "serial://host/dev/ttyUSB0", "serial://", "lava://host",
            "lava://?states=yes", "nope://", "ref:/", "", "ref", "qemu://?record=2", "qemu://?workers=0",
            "%00://", "ref://?%zz=1"]
    for url in urls:
        yield Case("board URLs", f"verify --board {url!r}", ["verify", art, "--board", url], "error")
        yield Case("board URLs", f"run --board {url!r}",
                   ["run", art, "--board", url, "--input", str(fx.spikes), "--output", str(fx.fresh("o"))], "error")
    yield Case("board URLs", "verify on the wrong target's board", ["verify", art, "--board", "lava://"], "error")
    for extra in (["--float32"], ["--board", "ref://?precision=float32"], ["--board", "verilator://", "--integer"]):
        yield Case("board URLs", f"run ART {' '.join(extra)}",
                   ["run", art, *extra, "--input", str(fx.spikes), "--output", str(fx.fresh("o"))], "error")
    yield Case("board URLs", "run a network file on verilator://",
               ["run", str(fx.nmir), "--board", "verilator://", "--input", str(fx.spikes), "--output",
                str(fx.fresh("o"))], "error")


def checkpoint_cases(fx: Fixtures) -> Iterator[Case]:
    import struct
    import zipfile

    import torch

    state = torch.load(fx.digits, weights_only=True)
    base = ["compile", "--target", "fpga", "--model", fx.model]

    def checkpoint(name: str, data: bytes) -> Path:
        path = fx.work / f"ckpt-{name}.pt"
        path.write_bytes(data)
        return path

    raw = fx.digits.read_bytes()
    with zipfile.ZipFile(fx.digits) as archive:
        member = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 64)
    flipped = bytearray(raw)
    name_len, extra_len = struct.unpack_from("<HH", raw, member.header_offset + 26)   # the local header's
    offset = member.header_offset + 30 + name_len + extra_len + member.file_size // 2
    flipped[offset] ^= 0x40
    cases = {"flipped tensor byte": bytes(flipped), "truncated": raw[: len(raw) // 2], "empty": b"",
             "random bytes": os.urandom(2048), "zip of nothing": _zip_bytes({})}

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {fx.work / 'PWNED'}",))

    import pickle

    cases["pickle payload"] = pickle.dumps(Evil())
    evil_path = fx.work / "ckpt-evil-zip.pt"
    torch.save({"w": Evil()}, evil_path)
    cases["zip pickle payload"] = evil_path.read_bytes()
    for name, data in cases.items():
        path = checkpoint(name.replace(" ", "_"), data)
        yield Case("checkpoints", f"compile ({name})", [*base[:1], str(path), *base[1:], "-o", str(fx.fresh("c"))],
                   "error", check=lambda err: "pickle payload ran" if (fx.work / "PWNED").exists() else None)
    for name, edit in {"weight 1e30": lambda s: s["0.weight"].fill_(1e30), "nan weight":
                       lambda s: s["0.weight"].fill_(float("nan")), "missing key": lambda s: s.pop("0.bias"),
                       "wrong shape": lambda s: s.update({"0.bias": torch.zeros(3)}),
                       "extra key": lambda s: s.update({"evil": torch.zeros(1)})}.items():
        edited = {k: v.clone() for k, v in state.items()}
        edit(edited)
        path = fx.work / f"ckpt-{name.replace(' ', '_')}.pt"
        torch.save(edited, path)
        out = fx.fresh("c")
        if name == "weight 1e30":
            yield Case("checkpoints", "compile (weight 1e30): warns", [*base[:1], str(path), *base[1:], "-o",
                                                                       str(out)], "ok",
                       check=lambda err: None if "warning: degenerate quantization" in err else "no warning")
            yield Case("checkpoints", "compile --strict (weight 1e30)",
                       [*base[:1], str(path), *base[1:], "-o", str(fx.fresh("c")), "--strict"], "error")
        else:
            yield Case("checkpoints", f"compile ({name})", [*base[:1], str(path), *base[1:], "-o", str(out)], "error")
    factories = {"exits": "import sys\ndef make():\n    sys.exit(3)\n",
                 "exits at import": "import sys\nsys.exit(0)\n",
                 "raises": "def make():\n    raise RuntimeError('boom')\n",
                 "returns None": "def make():\n    return None\n",
                 "syntax error": "def make(:\n"}
    for name, text in factories.items():
        module = fx.work / f"factory_{name.replace(' ', '_')}.py"
        module.write_text(text)
        yield Case("checkpoints", f"--model factory that {name}",
                   ["compile", str(fx.digits), "--target", "fpga", "--model", f"{module}:make", "-o",
                    str(fx.fresh("c"))], "error")
    for spec in ("nope", "a:b:c", ":", "os:system", "os:sep", f"{fx.work}/missing.py:make"):
        yield Case("checkpoints", f"--model {spec!r}",
                   ["compile", str(fx.digits), "--target", "fpga", "--model", spec, "-o", str(fx.fresh("c"))], "error")


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def network_file_cases(fx: Fixtures) -> Iterator[Case]:
    nmir = fx.nmir.read_bytes()
    bodies = {"random bytes": os.urandom(512), "empty": b"", "truncated": nmir[: len(nmir) // 2],
              "zip without graph": _zip_bytes({"x": b"1"}),
              "graph.json garbage": _zip_bytes({"graph.json": b"{"}),
              "graph.json wrong format": _zip_bytes({"graph.json": b'{"format": "x"}'}),
              "graph.json no nodes": _zip_bytes({"graph.json": json.dumps(
                  {"format": "nmcompile-ir", "version": 1, "name": "x"}).encode()})}
    for suffix in (".nmir", ".nir", ".onnx"):
        for name, data in bodies.items():
            path = fx.work / f"net-{name.replace(' ', '_')}{suffix}"
            path.write_bytes(data)
            yield Case("network files", f"inspect {suffix} ({name})", ["inspect", str(path)], "error")
            if name in ("random bytes", "truncated"):
                yield Case("network files", f"compile {suffix} ({name})",
                           ["compile", str(path), "--target", "fpga", "-o", str(fx.fresh("c"))], "error")
                yield Case("network files", f"run {suffix} ({name})",
                           ["run", str(path), "--input", str(fx.spikes), "--output", str(fx.fresh("o"))], "error")
    for name, path in {"missing": fx.work / "missing.nmir", "unknown suffix": fx.file,
                       "directory .nmir": fx.work, "/dev/null": Path("/dev/null")}.items():
        yield Case("network files", f"inspect ({name})", ["inspect", str(path)], "error")


def board_cases(fx: Fixtures) -> Iterator[Case]:
    from tests.hostile.fake_board import BEHAVIOURS, FakeBoard

    art = fx.artifacts["fpga"]
    layout = json.loads((art / "fpga" / "layout.json").read_text())
    for behaviour in BEHAVIOURS:
        holder: dict[str, FakeBoard] = {}

        def start(behaviour=behaviour, holder=holder):
            holder["board"] = FakeBoard(layout, behaviour).__enter__()
            return holder["board"]

        case = Case("boards", f"fake board: {behaviour}", [], "error", setup=start)
        case.argv = _LazyArgv(lambda holder=holder: ["verify", str(art), "--board",
                                                     f"serial://{holder['board'].device}?timeout=2"])
        yield case
    cache = fx.fresh("cache")

    def empty_cached_binary():
        from nmcompile.runtime.verilator_build import BINARY, build_key

        key = build_key(art / "fpga")
        (cache / "verilator" / key).mkdir(parents=True)
        (cache / "verilator" / key / BINARY).write_bytes(b"")

    yield Case("boards", "empty cached Verilator binary (rebuilt)", ["verify", str(art), "--board", "verilator://"],
               "ok", setup=empty_cached_binary, env={"NMC_CACHE": str(cache)})


class _LazyArgv(list):
    """An argv computed after the case's setup (a fake board's device path)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __iter__(self):
        return iter(self.make())


CATEGORIES = {"spike files": spike_file_cases, "artifacts": artifact_cases, "random": random_cases,
              "output paths": output_path_cases,
              "flags": flag_cases, "board URLs": board_url_cases, "checkpoints": checkpoint_cases,
              "network files": network_file_cases, "boards": board_cases}
