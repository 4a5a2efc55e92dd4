"""Boards that speak the FPGA emulator's UART protocol: the Verilated RTL (`verilator://`) and a serial port
(`serial:///dev/ttyUSB0?baud=1000000`, also a pty bridged to the RTL).

Each sample of run()/run_all() runs from a fresh state: RESET (state from the init image, spikes and traces cleared),
plastic weights written back to their compiled values, then the inputs streamed with STREAM: INJECT frames sent while
the board runs, under the credit flow control of the design's input queue (FpgaLink.stream_sample). After a sample
the plastic weights are read back (the reference's final weights). stream() feeds one sample in chunks, keeping the
state between them.
"""

from __future__ import annotations

import abc
import json
import os
import select
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import ParseResult

import numpy as np

from nmcompile.errors import BoardError, NmcError, UnsupportedError
from nmcompile.integrity import private_copy
from nmcompile.protocols.fpga_uart import VERSION, ProtocolError, Region
from nmcompile.runtime.board import BaseBoard, Progress, flag_option, int_option, parse_query, seconds_option
from nmcompile.runtime.fpga_link import FpgaLink


class PipeStream:
    """A subprocess's stdin/stdout as a byte stream (read returns what is there within a short wait)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()

    def write(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ProtocolError(f"the simulator exited: {self._stderr()}") from None

    def read(self, n: int) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], 0.05)
        if not ready:
            if self.proc.poll() is not None:
                raise ProtocolError(f"the simulator exited with status {self.proc.returncode}: {self._stderr()}")
            return b""
        data = os.read(self.fd, n)
        if not data:
            raise ProtocolError(f"the simulator closed its output: {self._stderr()}")
        return data

    def _stderr(self) -> str:
        try:
            return self.proc.stderr.read().decode(errors="replace").strip()[-500:] if self.proc.poll() is not None \
                else "(still running)"
        except (OSError, ValueError):
            return ""


class UartBoard(BaseBoard):
    """The host side shared by every transport: load an fpga artifact, stream samples, read weights back."""

    target = "fpga"
    requires = ("fpga/layout.json", "fpga/program.bin")

    def __init__(self, program: bool = True, progress: Progress | None = None):
        super().__init__(progress)
        self.program = program
        self.link: FpgaLink | None = None
        self.cycles: list[int] = []
        self._project: tempfile.TemporaryDirectory | None = None

    @abc.abstractmethod
    def open_link(self, project: Path) -> FpgaLink:
        """Connect to the design (a Verilated model's pipes, a serial port)."""

    def load(self, source: object) -> None:
        """A compiled fpga artifact. The board uses the fpga/ files as this nmcompile rebuilds them from the
        artifact's network.nmir (equal to the shipped ones, or the load was refused), written to a private
        temporary project: the design that runs is the one the IR describes."""
        self.close()                                   # a board holds one network: release the previous one
        art = self.read_artifact(source)
        self.art = art
        self._project = private_copy(art, "fpga")
        project = Path(self._project.name) / "fpga"
        self.layout = json.loads((project / "layout.json").read_text())
        self.link = self.open_link(project)
        info = self.link.info()
        if info.version != VERSION:
            raise BoardError(f"the board's host interface is version {info.version}; this nmcompile speaks version "
                             f"{VERSION} (inputs streamed during a run, WRITE frames take effect only after their CRC "
                             "checks): rebuild the bitstream from fpga/")
        design = self.layout["design"]
        if (info.neurons, info.in_words, info.syn_depth) != (design["neurons"], design["in_words"],
                                                             design["syn_depth"]):
            raise BoardError(f"the board's design ({info.neurons} neurons, {32 * info.in_words} channels, "
                             f"{info.syn_depth} synapse words) differs from the artifact's ({design['neurons']}, "
                             f"{32 * design['in_words']}, {design['syn_depth']}); rebuild the bitstream from fpga/")
        if self.program:
            self.link.program((project / "program.bin").read_bytes())
        self._plastic = [p for p in self.layout["projections"] if p["plastic"]]
        self._initial = {p["name"]: self.link.read(Region.SYN, p["w_base"], p["src_len"] * p["dst_len"])
                         for p in self._plastic}

    def _link(self) -> FpgaLink:
        if self.link is None:
            raise NmcError("no network loaded; call load() first")
        return self.link

    def _start_sample(self) -> None:
        """RESET (state from the init image, spikes and traces cleared) and the compiled plastic weights."""
        link = self._link()
        link.reset()
        for p in self._plastic:
            link.write(Region.SYN, p["w_base"], self._initial[p["name"]])

    def _weights(self) -> dict[str, np.ndarray]:
        """The plastic projections' current weights [out, in]."""
        weights = {}
        for p in self._plastic:
            raw = self._link().read(Region.SYN, p["w_base"], p["src_len"] * p["dst_len"])
            weights[p["name"]] = np.frombuffer(raw, dtype=np.int8).reshape(p["src_len"], p["dst_len"]).T.astype(
                np.int64)
        return weights

    def run_all(self, spikes: np.ndarray) -> dict[str, np.ndarray]:
        link = self._link()
        spikes = self.check_spikes(spikes)
        steps, batch = spikes.shape[:2]
        out = self.layout["output"]
        outputs = np.zeros((steps, batch, out["size"]), dtype=np.int64)
        weights = {p["name"]: np.zeros((batch, p["dst_len"], p["src_len"]), dtype=np.int64) for p in self._plastic}
        self.cycles = []
        for b in range(batch):
            self._start_sample()
            outputs[:, b], cycles = link.stream_sample(spikes[:, b].reshape(steps, -1), self.layout["design"][
                "in_words"], out["size"])
            self.cycles.append(cycles)
            for name, w in self._weights().items():
                weights[name][b] = w
        result = {out["name"]: outputs.reshape(steps, batch, *out["shape"])}
        result.update({f"weight:{name}": w for name, w in weights.items()})
        return result

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One sample in chunks [t, 1, N_in]: the board keeps its state (and learns) across chunks; the stream
        starts from a fresh state. `last_weights` holds the plastic weights after the last chunk."""
        link = self._link()
        self.single_output()
        out = self.layout["output"]
        started = False
        self.cycles = []
        for chunk in chunks:
            chunk = self.check_spikes(chunk)
            steps, batch = chunk.shape[:2]
            if batch != 1:
                raise UnsupportedError(f"{self.scheme}:// streams one sample at a time (a chunk has batch {batch}); "
                                       "use run() for batches")
            if not started:
                self._start_sample()
                started = True
            spikes, cycles = link.stream_sample(chunk[:, 0].reshape(steps, -1), self.layout["design"]["in_words"],
                                             out["size"])
            self.cycles.append(cycles)
            self.last_weights = self._weights()
            yield spikes.reshape(steps, 1, -1)

    def close(self) -> None:
        super().close()
        self.link = None
        if self._project is not None:
            self._project.cleanup()
            self._project = None


class VerilatorBoard(UartBoard):
    """The Verilated RTL, built once per design size, fed through its UART pins over pipes.

    verilator://            the design starts from the $readmemh images, then program.bin is sent over the UART
    verilator://?program=0  the images only (what a bitstream built with them holds)
    verilator://?blank=1    a design without images, loaded by program.bin alone
    """

    scheme = "verilator"
    options = (flag_option("program"), flag_option("blank"))

    def __init__(self, program: bool = True, blank: bool = False, progress: Progress | None = None):
        super().__init__(program=program or blank, progress=progress)
        self.blank = blank
        self.proc: subprocess.Popen | None = None

    def open_link(self, project: Path) -> FpgaLink:
        from nmcompile.runtime.verilator_build import build_model

        binary = build_model(project, log=self.report)
        try:
            self.proc = subprocess.Popen([str(binary), *(["+blank"] if self.blank else [])], cwd=project,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as err:
            raise BoardError(f"cannot start the Verilated model {binary}: {err}") from None
        return FpgaLink(PipeStream(self.proc))

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            for pipe in (self.proc.stdout, self.proc.stderr):
                pipe.close()
            self.proc = None
        super().close()


class SerialBoard(UartBoard):
    """A board (or a pty) on a serial port, through pyserial: serial:///dev/ttyUSB0?baud=1000000.

    Options: baud (default 1000000, the emulator's rate), program=0 (the board already holds the network, e.g. a
    bitstream built with the images), timeout (seconds to wait for an answer, default 30)."""

    scheme = "serial"
    options = (int_option("baud"), flag_option("program"), seconds_option("timeout"))

    def __init__(self, port: str, baud: int = 1_000_000, program: bool = True, timeout: float = 30.0,
                 progress: Progress | None = None):
        super().__init__(program=program, progress=progress)
        self.port, self.baud, self.timeout = port, baud, timeout
        self.serial = None

    @classmethod
    def from_url(cls, url: ParseResult, query: Mapping[str, str], progress: Progress | None = None) -> SerialBoard:
        example = "serial:///dev/ttyUSB0?baud=1000000"
        if url.netloc:
            raise UnsupportedError(f"{url.geturl()}: the device must be an absolute path after 'serial://' (three "
                                   f"slashes), e.g. {example}")
        if url.path in ("", "/"):
            raise UnsupportedError(f"serial:// needs a device path, e.g. {example}")
        return cls(url.path, **parse_query(cls.scheme, query, cls.options), progress=progress)

    def open_link(self, project: Path) -> FpgaLink:
        import serial

        try:
            self.serial = serial.Serial(self.port, self.baud, timeout=0.05)
        except (serial.SerialException, ValueError) as err:
            raise BoardError(f"cannot open {self.port}: {err}") from None
        return FpgaLink(self.serial, timeout=self.timeout, line_rate=self.baud / 10)

    def close(self) -> None:
        super().close()
        if self.serial is not None:
            self.serial.close()
            self.serial = None
