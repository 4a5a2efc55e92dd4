"""Build the SpiNNaker 2 PE program (kernel.elf) from the package's kernel sources, cached by content.

The sources ship as package data (nmcompile/backends/spinnaker2/kernel/: C, the startup file and the PE-shaped
linker script) and are read with importlib.resources, so an installed wheel builds the same program. The cache key is
the sources, the compiler flags, the compiler's version and the newlib libraries it links; the cache lives in
$NMC_CACHE (default ~/.cache/nmcompile)/spinnaker2/<key>/. A build runs in a temporary directory that is renamed into
place, and a cached ELF is checked against the SHA-256 recorded beside it when it is read (an empty, truncated or
altered ELF is rebuilt).

    python -m nmcompile.backends.spinnaker2.build      # build (or find) kernel.elf, print its path and sizes
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.resources import files as package_files
from pathlib import Path

from nmcompile.errors import BoardError, ToolMissingError

KERNEL = package_files("nmcompile") / "backends" / "spinnaker2" / "kernel"   # package data
C_SOURCES = ("startup.c", "main.c", "image.c", "kernel.c")
HEADERS = ("snm2.h",)
LINKER_SCRIPT = "pe.ld"
CC = "arm-none-eabi-gcc"
SIZE = "arm-none-eabi-size"
ARCH_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
CFLAGS = ("-std=c11", *ARCH_FLAGS, "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-ffunction-sections",
          "-fdata-sections")
LDFLAGS = ("-nostartfiles", "--specs=nano.specs", "--specs=rdimon.specs", "-Wl,--gc-sections")
NEWLIB_FILES = ("libc_nano.a", "librdimon_nano.a", "nano.specs", "rdimon.specs")
INSTALL_HINT = ("install it with `apt-get install --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi` "
                "(`make tools` in an nmcompile checkout does this)")
ELF = "kernel.elf"
CODE_BYTES = 32 * 1024             # ITCM
KERNEL_DATA_BYTES = 0xE800 - 0x8000  # .data + .bss + heap, below the PE data region
PE_DATA_BYTES = 0x1F000 - 0xE900     # the image and the working state


@dataclass(frozen=True)
class KernelSizes:
    """Sizes of the PE program (arm-none-eabi-size -A): code in ITCM, the kernel's own data below 0xE800."""

    code: int          # .text (with .rodata), .ARM.exidx, .init_array
    data: int          # .data + .bss
    code_limit: int = CODE_BYTES
    data_limit: int = KERNEL_DATA_BYTES
    pe_data: int = PE_DATA_BYTES

    def describe(self) -> str:
        return (f"kernel.elf: code {self.code} B of {self.code_limit} B ITCM, data {self.data} B of "
                f"{self.data_limit} B (0x8000..0xE800); PE data region {self.pe_data} B (0xE900..0x1F000)")


@dataclass(frozen=True)
class KernelBuild:
    elf: Path
    key: str
    sizes: KernelSizes
    cached: bool       # True when the ELF came from the cache


def cache_root() -> Path:
    return Path(os.environ.get("NMC_CACHE", Path.home() / ".cache" / "nmcompile")) / "spinnaker2"


def compiler() -> str:
    path = shutil.which(CC)
    if path is None:
        raise ToolMissingError(f"{CC} is not installed; {INSTALL_HINT}")
    return path


def _newlib(cc: str) -> list[Path]:
    """The newlib files the link needs (in the hard-float Cortex-M4 multilib); ToolMissingError when absent."""
    found = []
    for name in NEWLIB_FILES:
        out = subprocess.run([cc, *ARCH_FLAGS, f"-print-file-name={name}"], capture_output=True, text=True)
        path = Path(out.stdout.strip())
        if out.returncode != 0 or not path.is_absolute() or not path.is_file():
            raise ToolMissingError(f"newlib for arm-none-eabi ({name}) is not installed; {INSTALL_HINT}")
        found.append(path)
    return found


def kernel_sources() -> dict[str, bytes]:
    """The kernel's source files by name, read from the package."""
    return {name: (KERNEL / name).read_bytes() for name in (*C_SOURCES, *HEADERS, LINKER_SCRIPT)}


def build_key(cc: str | None = None) -> str:
    cc = cc or compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.strip()
    h = hashlib.sha256(f"{version}\n{' '.join(CFLAGS)}\n{' '.join(LDFLAGS)}\n".encode())
    for lib in _newlib(cc):
        h.update(f"{lib.name}:{lib.stat().st_size}\n".encode())
    for name, text in sorted(kernel_sources().items()):
        h.update(name.encode() + b"\0" + text + b"\0")
    return h.hexdigest()[:20]


def kernel_sizes(elf: Path) -> KernelSizes:
    """Code and data sizes of a kernel ELF, from `arm-none-eabi-size -A`."""
    tool = shutil.which(SIZE)
    if tool is None:
        raise ToolMissingError(f"{SIZE} is not installed; {INSTALL_HINT}")
    out = subprocess.run([tool, "-A", str(elf)], capture_output=True, text=True)
    if out.returncode != 0:
        raise BoardError(f"{SIZE} cannot read {elf}: {out.stderr.strip()}")
    sections = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    code = sum(sections.get(s, 0) for s in (".text", ".ARM.exidx", ".init_array"))
    data = sections.get(".data", 0) + sections.get(".bss", 0)
    return KernelSizes(code=code, data=data)


def _valid(directory: Path) -> bool:
    """A cached build: the ELF is there, non-empty and matches the SHA-256 recorded when it was built."""
    elf, digest, sizes = directory / ELF, directory / f"{ELF}.sha256", directory / "sizes.json"
    try:
        data = elf.read_bytes()
        return (len(data) > 52 and data[:4] == b"\x7fELF" and sizes.is_file()
                and hashlib.sha256(data).hexdigest() == digest.read_text().strip())
    except OSError:
        return False


def _sizes_of(directory: Path) -> KernelSizes:
    return KernelSizes(**json.loads((directory / "sizes.json").read_text()))


def build_kernel(log=None) -> KernelBuild:
    """kernel.elf for the installed compiler, from the cache or built now."""
    cc = compiler()
    key = build_key(cc)
    target = cache_root() / key
    if _valid(target):
        return KernelBuild(target / ELF, key, _sizes_of(target), cached=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"building the SpiNNaker 2 PE kernel (cached afterwards in {target.parent})")
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        src = work / "src"
        src.mkdir()
        for name, text in kernel_sources().items():
            (src / name).write_bytes(text)
        command = [cc, *CFLAGS, *LDFLAGS, "-T", str(src / LINKER_SCRIPT), *[str(src / s) for s in C_SOURCES],
                   "-o", str(work / ELF)]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise BoardError(f"{CC} failed to build the SpiNNaker 2 PE kernel:\n{tail}")
        sizes = kernel_sizes(work / ELF)
        (work / "sizes.json").write_text(json.dumps({"code": sizes.code, "data": sizes.data}))
        (work / f"{ELF}.sha256").write_text(hashlib.sha256((work / ELF).read_bytes()).hexdigest() + "\n")
        shutil.rmtree(src)
        if target.exists():            # a broken earlier build (or one that another process just finished)
            if _valid(target):
                return KernelBuild(target / ELF, key, _sizes_of(target), cached=True)
            stale = Path(tempfile.mkdtemp(prefix=f".{key}-stale-", dir=target.parent))
            with contextlib.suppress(OSError):
                target.rename(stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            work.rename(target)
        except OSError:                # another process renamed its build into place meanwhile
            if not _valid(target):
                raise
        return KernelBuild(target / ELF, key, _sizes_of(target), cached=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: python -m nmcompile.backends.spinnaker2.build", file=sys.stderr)
        return 2
    build = build_kernel(log=lambda m: print(m, file=sys.stderr))
    print(build.elf)
    print(build.sizes.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
