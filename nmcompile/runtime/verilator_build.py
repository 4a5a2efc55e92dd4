"""Build the Verilated FPGA emulator of an artifact, cached by the content of its sources.

The cache key is the Verilog of the project (nmc_top.v holds the design's sizes), the harness, the build flags and
the Verilator version; memory images are read at run time, so networks of the same design size share one build.
The cache lives in $NMC_CACHE (default ~/.cache/nmcompile)/verilator; ccache is used when installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from nmcompile.errors import BoardError, InputFileError, ToolMissingError

SIM_CLKS_PER_BIT = 4          # UART bit time in simulation (the harness and the RTL must agree)
BINARY = "Vnmc_top"
DIGEST = "Vnmc_top.sha256"    # sha256 of the binary, written when it was built, checked before every use


def cache_root() -> Path:
    return Path(os.environ.get("NMC_CACHE", Path.home() / ".cache" / "nmcompile")) / "verilator"


def verilator() -> str:
    path = shutil.which("verilator")
    if path is None:
        raise ToolMissingError("verilator is not installed; install it with `apt-get install verilator` (`make tools` "
                               "in an nmcompile checkout does this), see README.md")
    return path


def _sources(project: Path) -> list[Path]:
    files = [*sorted((project / "hdl").glob("*.v")), project / "nmc_top.v", project / "tb" / "nmc_harness.cpp"]
    missing = [str(f.relative_to(project)) for f in files if not f.is_file()]
    if missing:
        raise InputFileError(f"{project}: not an fpga project ({', '.join(missing)} missing)")
    return files


def build_key(project: Path, clks_per_bit: int = SIM_CLKS_PER_BIT) -> str:
    version = subprocess.run([verilator(), "--version"], capture_output=True, text=True).stdout.strip()
    h = hashlib.sha256(f"{version}\nclks_per_bit={clks_per_bit}\n".encode())
    for source in _sources(project):
        h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def build_model(project: Path, clks_per_bit: int = SIM_CLKS_PER_BIT, log=None) -> Path:
    """The harness binary for `project` (an artifact's fpga/ directory), building it if not cached."""
    project = Path(project)
    key = build_key(project, clks_per_bit)
    target = cache_root() / key
    binary = target / BINARY
    if _cached_build_ok(target):
        return binary
    if target.exists():                # a cached build that is broken (empty, truncated, altered): build it again
        if log:
            log(f"the cached Verilated model {binary} is damaged; rebuilding it")
        shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"building the Verilated model of {project} (cached afterwards in {target.parent})")
    work = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=target.parent))
    env = dict(os.environ)
    if shutil.which("ccache"):
        env["OBJCACHE"] = "ccache"
    command = [verilator(), "--cc", "--exe", "--build", "-j", str(min(os.cpu_count() or 1, 4)), "-O3",
               "-Wno-fatal", "--top-module", "nmc_top", f"-GCLKS_PER_BIT={clks_per_bit}",
               "-CFLAGS", f"-DNMC_CLKS_PER_BIT={clks_per_bit}", "-LDFLAGS", "-lutil", "--Mdir", str(work / "obj"),
               "-o", BINARY, *[str(s) for s in _sources(project)]]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        shutil.rmtree(work, ignore_errors=True)
        raise BoardError(f"verilator failed to build {project}:\n{tail}")
    built = (work / "obj" / BINARY).read_bytes()
    (work / BINARY).write_bytes(built)
    (work / BINARY).chmod(0o755)
    (work / DIGEST).write_text(hashlib.sha256(built).hexdigest() + "\n")
    shutil.rmtree(work / "obj", ignore_errors=True)
    try:
        work.rename(target)
    except OSError:                    # another process built it meanwhile
        shutil.rmtree(work, ignore_errors=True)
    return binary


def _cached_build_ok(target: Path) -> bool:
    """A cached build is used only when its binary is a non-empty executable whose sha256 is the one recorded
    when it was built."""
    binary, digest = target / BINARY, target / DIGEST
    try:
        if not (binary.is_file() and os.access(binary, os.X_OK) and binary.stat().st_size > 0 and digest.is_file()):
            return False
        return hashlib.sha256(binary.read_bytes()).hexdigest() == digest.read_text().strip()
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """`python -m nmcompile.runtime.verilator_build ARTIFACT/fpga`: build (or find) the model, print its path."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nmcompile.runtime.verilator_build ARTIFACT/fpga", file=sys.stderr)
        return 2
    print(build_model(Path(args[0]), log=lambda m: print(m, file=sys.stderr)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
