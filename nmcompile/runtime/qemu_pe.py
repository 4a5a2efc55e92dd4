"""Run one SpiNNaker 2 PE (kernel.elf + a PE data image) under QEMU (mps2-an386, Cortex-M4F, semihosting).

The kernel's I/O is docs/formats/spinnaker2.md "Kernel input and output": tick records `[n][n keys]` in,
`[m][m fired neurons][readout voltages][u, v when recording]` out, one record per tick.

    samples = run_pe(elf, image, ticks_per_sample, record=True)    # whole sequences through files
    samples[0].spikes            # [T, n_neurons] 0/1;  .readout [T, n_readouts];  .u, .v [T, n_neurons]

    with PeProcess(elf, image) as pe:                               # tick by tick through FIFOs
        out = pe.tick(keys)       # the keys arriving in this tick -> this tick's output record
        pe.new_sample()           # reset the state

`profile_pe` runs with `-icount shift=0` (one instruction = 1 ns of virtual time) and returns the instructions the
kernel spent in its synaptic and neuron phases, counted with SysTick (25 MHz: 40 instructions per count).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmcompile.errors import BoardError, ToolMissingError

QEMU = "qemu-system-arm"
INSTALL_HINT = ("install it with `apt-get install --no-install-recommends qemu-system-arm` (`make tools` in an "
                "nmcompile checkout does this)")
NEW_SAMPLE = 0xFFFFFFFF
END = 0xFFFFFFFE
HEADER_WORDS = 16
MAGIC = 0x324D4E53
INSTRUCTIONS_PER_SYSTICK = 40      # -icount shift=0: 1 GHz instruction clock; SysTick counts the 25 MHz core clock
PROFILE_FIELDS = ("ticks", "packets", "packets_matched", "synapses", "neuron_updates", "systick_synapses",
                  "systick_neurons")


def qemu() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise ToolMissingError(f"{QEMU} is not installed; {INSTALL_HINT}")
    return path


def qemu_command(elf: Path, args: Sequence[str], icount: bool = False) -> list[str]:
    """The QEMU command line running `elf` with semihosting arguments `args` (names without commas or spaces)."""
    for a in args:
        if "," in a or " " in a:
            raise ValueError(f"semihosting argument {a!r} must not contain commas or spaces")
    semihosting = ",".join(["enable=on", "target=native", "arg=kernel.elf", *[f"arg={a}" for a in args]])
    return [qemu(), "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor", "none", "-serial", "none",
            *(["-icount", "shift=0"] if icount else []), "-semihosting-config", semihosting,
            "-kernel", str(Path(elf).resolve())]


@dataclass(frozen=True)
class ImageInfo:
    source_id: int
    n_neurons: int
    n_readouts: int


def image_info(image: bytes) -> ImageInfo:
    """Header fields the host needs to parse the kernel's output (the kernel itself validates the image)."""
    if len(image) < 4 * HEADER_WORDS:
        return ImageInfo(0, 0, 0)
    h = struct.unpack_from(f"<{HEADER_WORDS}I", image)
    return ImageInfo(source_id=h[2], n_neurons=h[3], n_readouts=h[11])


@dataclass
class PeSample:
    """One sample's output: spikes [T, n_neurons] (0/1), readout voltages [T, n_readouts], and with record u, v
    [T, n_neurons] (int32, as the kernel writes them)."""

    spikes: np.ndarray
    readout: np.ndarray
    u: np.ndarray | None = None
    v: np.ndarray | None = None


@dataclass
class PeTick:
    """One tick's output record: the local indices of the neurons that fired, the readout voltages and with record
    u and v of every neuron."""

    fired: np.ndarray
    readout: np.ndarray
    u: np.ndarray | None = None
    v: np.ndarray | None = None


@dataclass(frozen=True)
class PeProfile:
    """Counts of a profiled run; instructions are SysTick counts times 40 (exact to 40 instructions per phase and
    tick)."""

    ticks: int
    packets: int
    packets_matched: int
    synapses: int
    neuron_updates: int
    instructions_synapses: int
    instructions_neurons: int


def encode_ticks(ticks_per_sample: Sequence[Sequence[Sequence[int]]]) -> bytes:
    """The INPUT stream: per sample a new-sample marker and its tick records, then the end marker."""
    words: list[np.ndarray] = []
    for sample in ticks_per_sample:
        words.append(np.array([NEW_SAMPLE], dtype=np.uint32))
        for keys in sample:
            keys = np.asarray(keys, dtype=np.uint32).reshape(-1)
            words.append(np.array([keys.size], dtype=np.uint32))
            words.append(keys)
    words.append(np.array([END], dtype=np.uint32))
    return np.concatenate(words).astype("<u4").tobytes()


def _kernel_message(stderr: str, stdout: str) -> str:
    for text in (stderr, stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no message"


def _exit_error(name: str, status: int, stderr: str, stdout: str) -> BoardError:
    return BoardError(f"{name}: the PE kernel exited with status {status}: {_kernel_message(stderr, stdout)}")


def _decode(out: np.ndarray, ticks: Sequence[int], info: ImageInfo, record: bool, name: str) -> list[PeSample]:
    n, r = info.n_neurons, info.n_readouts
    samples = []
    pos = 0
    for steps in ticks:
        spikes = np.zeros((steps, n), dtype=np.uint8)
        readout = np.zeros((steps, r), dtype=np.int32)
        u = np.zeros((steps, n), dtype=np.int32) if record else None
        v = np.zeros((steps, n), dtype=np.int32) if record else None
        for t in range(steps):
            if pos >= out.size:
                raise BoardError(f"{name}: the PE kernel's output ends after {pos} words (expected more ticks)")
            m = int(out[pos])
            end = pos + 1 + m + r + (2 * n if record else 0)
            if m > n or end > out.size:
                raise BoardError(f"{name}: malformed output record at word {pos} (m = {m}, {n} neurons)")
            fired = out[pos + 1 : pos + 1 + m]
            if fired.size and int(fired.max()) >= n:
                raise BoardError(f"{name}: output record at word {pos} names neuron {int(fired.max())} of {n}")
            spikes[t, fired] = 1
            q = pos + 1 + m
            readout[t] = out[q : q + r].view(np.int32)
            q += r
            if record:
                u[t] = out[q : q + n].view(np.int32)
                v[t] = out[q + n : q + 2 * n].view(np.int32)
            pos = end
        samples.append(PeSample(spikes, readout, u, v))
    if pos != out.size:
        raise BoardError(f"{name}: the PE kernel wrote {out.size - pos} words more than its ticks")
    return samples


def _default_timeout(ticks_per_sample) -> float:
    ticks = sum(len(s) for s in ticks_per_sample)
    keys = sum(int(np.size(k)) for s in ticks_per_sample for k in s)
    return 20.0 + 2e-3 * ticks + 1e-5 * keys


def _run(elf: Path, image: bytes, ticks_per_sample, record: bool, name: str, timeout: float | None,
         profile: bool) -> tuple[bytes, bytes | None]:
    qemu()                               # ToolMissingError before any work
    if timeout is None:
        timeout = _default_timeout(ticks_per_sample)
    with tempfile.TemporaryDirectory(prefix="nmc-pe-") as tmp:
        work = Path(tmp)
        (work / "image.bin").write_bytes(image)
        (work / "input.bin").write_bytes(encode_ticks(ticks_per_sample))
        args = ["image.bin", "input.bin", "output.bin", "1" if record else "0", *(["profile.bin"] if profile else [])]
        try:
            proc = subprocess.run(qemu_command(elf, args, icount=profile), cwd=work, stdin=subprocess.DEVNULL,
                                  capture_output=True, encoding="utf-8", errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as err:
            ticks = sum(len(s) for s in ticks_per_sample)
            raise BoardError(f"{name}: the PE kernel did not finish its {ticks} ticks within {timeout:.0f} s "
                             "(QEMU killed)") from err
        if proc.returncode != 0:
            raise _exit_error(name, proc.returncode, proc.stderr, proc.stdout)
        output = work / "output.bin"
        if not output.is_file():
            raise BoardError(f"{name}: the PE kernel wrote no output")
        prof = (work / "profile.bin").read_bytes() if profile else None
        return output.read_bytes(), prof


def run_pe(elf: Path | str, image: bytes, ticks_per_sample: Sequence[Sequence[Sequence[int]]], record: bool = False,
           *, name: str = "PE image", timeout: float | None = None) -> list[PeSample]:
    """Run the PE program on `image` for every sample (a list of per-tick key arrays: the keys arriving in that
    tick); the state is reset at every sample start. `name` (the image file) appears in errors."""
    info = image_info(image)
    data, _ = _run(Path(elf), image, ticks_per_sample, record, name, timeout, profile=False)
    if len(data) % 4:
        raise BoardError(f"{name}: the PE kernel's output is {len(data)} bytes, not whole words")
    out = np.frombuffer(data, dtype="<u4")
    return _decode(out, [len(s) for s in ticks_per_sample], info, record, name)


def profile_pe(elf: Path | str, image: bytes, ticks_per_sample: Sequence[Sequence[Sequence[int]]], *,
               name: str = "PE image", timeout: float | None = None) -> PeProfile:
    """Run with `-icount shift=0` and return the counts of the kernel's synaptic and neuron phases."""
    _, data = _run(Path(elf), image, ticks_per_sample, False, name, timeout, profile=True)
    if data is None or len(data) != 8 * len(PROFILE_FIELDS):
        raise BoardError(f"{name}: the PE kernel wrote a malformed profile")
    c = dict(zip(PROFILE_FIELDS, struct.unpack(f"<{len(PROFILE_FIELDS)}Q", data), strict=True))
    return PeProfile(ticks=c["ticks"], packets=c["packets"], packets_matched=c["packets_matched"],
                     synapses=c["synapses"], neuron_updates=c["neuron_updates"],
                     instructions_synapses=c["systick_synapses"] * INSTRUCTIONS_PER_SYSTICK,
                     instructions_neurons=c["systick_neurons"] * INSTRUCTIONS_PER_SYSTICK)


def _cleanup(procs: list[subprocess.Popen], fds: list[int], files: list, directory: str) -> int | None:
    """End QEMU (end marker, then kill), close the FIFOs and remove the working directory; the exit status."""
    status = None
    for proc in procs:
        if proc.poll() is None and fds:
            with contextlib.suppress(OSError):
                os.write(fds[0], struct.pack("<I", END))
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        else:
            status = proc.returncode
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()
    for f in files:
        f.close()
    files.clear()
    shutil.rmtree(directory, ignore_errors=True)
    return status


class PeProcess:
    """A persistent QEMU running one PE on FIFOs: feed the keys arriving in a tick, get that tick's output record.

    Both FIFOs are opened by the host read-write (Linux never blocks such an open), so QEMU's own opens return at
    once in either order and the host notices a dead kernel by its exit status rather than by an end of file.
    `close()` (also on leaving a `with` block, or when the object is collected) ends QEMU and removes the FIFOs."""

    def __init__(self, elf: Path | str, image: bytes, *, record: bool = False, name: str = "PE image",
                 tick_timeout: float = 10.0, start_timeout: float = 10.0):
        self.name = name
        self.record = record
        self.info = image_info(image)
        self.tick_timeout = tick_timeout
        self.ticks = 0
        qemu()                           # ToolMissingError before any work
        self._dir = tempfile.mkdtemp(prefix="nmc-pe-")
        self._fds: list[int] = []
        self._files: list = []
        self._procs: list[subprocess.Popen] = []
        self._finalizer = weakref.finalize(self, _cleanup, self._procs, self._fds, self._files, self._dir)
        try:
            work = Path(self._dir)
            (work / "image.bin").write_bytes(image)
            os.mkfifo(work / "input.fifo")
            os.mkfifo(work / "output.fifo")
            self._in = os.open(work / "input.fifo", os.O_RDWR | os.O_NONBLOCK)
            self._fds.append(self._in)
            self._out = os.open(work / "output.fifo", os.O_RDWR | os.O_NONBLOCK)
            self._fds.append(self._out)
            self._stdout = open(work / "qemu.stdout", "w")  # noqa: SIM115 (closed by _cleanup)
            self._files.append(self._stdout)
            self._stderr = open(work / "qemu.stderr", "w")  # noqa: SIM115
            self._files.append(self._stderr)
            args = ["image.bin", "input.fifo", "output.fifo", "1" if record else "0"]
            self._procs.append(subprocess.Popen(qemu_command(Path(elf), args), cwd=work, stdin=subprocess.DEVNULL,
                                                stdout=self._stdout, stderr=self._stderr))
        except BaseException:
            self._finalizer()
            raise
        self._start_deadline = time.monotonic() + start_timeout

    # -- I/O ------------------------------------------------------------------------------------------------
    def _died(self) -> BoardError | None:
        status = self._procs[0].poll()
        if status is None:
            return None
        out = Path(self._dir, "qemu.stdout").read_text(errors="replace")
        err = Path(self._dir, "qemu.stderr").read_text(errors="replace")
        if status == 0:
            return BoardError(f"{self.name}: the PE kernel ended (status 0) while the host still feeds it")
        return _exit_error(self.name, status, err, out)

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise BoardError(f"{self.name}: the PE process is closed")

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._in, view)
                view = view[written:]
                continue
            except BlockingIOError:
                pass
            self._wait(select.POLLOUT, self._in, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        chunks = []
        while size:
            try:
                chunk = os.read(self._out, size)
            except BlockingIOError:
                chunk = b""
            if chunk:
                chunks.append(chunk)
                size -= len(chunk)
                continue
            self._wait(select.POLLIN, self._out, deadline)
        return b"".join(chunks)

    def _wait(self, event: int, fd: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, event)
        while True:
            remaining = deadline - time.monotonic()
            if poller.poll(max(0, min(remaining, 0.05)) * 1000):
                return
            error = self._died()
            if error is not None:
                raise error
            if remaining <= 0:
                raise BoardError(f"{self.name}: the PE kernel did not finish tick {self.ticks} within "
                                 f"{self.tick_timeout:g} s")

    def _deadline(self) -> float:
        deadline = time.monotonic() + self.tick_timeout
        if self.ticks == 0:              # the first tick also waits for QEMU to start and load the image
            deadline = max(deadline, self._start_deadline)
        return deadline

    # -- API ------------------------------------------------------------------------------------------------
    def new_sample(self) -> None:
        """Reset the PE's state (the kernel starts with a reset state)."""
        self._check_open()
        self._write(struct.pack("<I", NEW_SAMPLE), self._deadline())

    def tick(self, keys: Sequence[int] | np.ndarray = ()) -> PeTick:
        """Deliver the keys arriving in this tick, run the tick, return its output record."""
        self._check_open()
        keys = np.asarray(keys, dtype=np.uint32).reshape(-1)
        deadline = self._deadline()
        self._write(struct.pack("<I", keys.size) + keys.astype("<u4").tobytes(), deadline)
        n, r = self.info.n_neurons, self.info.n_readouts
        m = struct.unpack("<I", self._read(4, deadline))[0]
        if m > n:
            raise BoardError(f"{self.name}: malformed output record (m = {m}, {n} neurons)")
        body = np.frombuffer(self._read(4 * (m + r + (2 * n if self.record else 0)), deadline), dtype="<u4")
        self.ticks += 1
        fired = body[:m].astype(np.int64)
        readout = body[m : m + r].view(np.int32)
        if not self.record:
            return PeTick(fired, readout)
        q = m + r
        return PeTick(fired, readout, body[q : q + n].view(np.int32), body[q + n : q + 2 * n].view(np.int32))

    def keys_of(self, fired: np.ndarray) -> np.ndarray:
        """The multicast keys of this PE's fired neurons: (source_id << 8) | unit."""
        return ((self.info.source_id << 8) | np.asarray(fired, dtype=np.int64)).astype(np.uint32)

    def close(self) -> int | None:
        """End the kernel (end marker; killed if it does not exit within 2 s), remove the FIFOs; QEMU's exit status
        (None when it had to be killed or was already closed)."""
        if not self._finalizer.alive:
            return None
        return self._finalizer()

    def __enter__(self) -> PeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
