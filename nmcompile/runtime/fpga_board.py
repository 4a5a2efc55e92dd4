"""Boards that speak the FPGA emulator's UART protocol: the Verilated RTL (`verilator://`) and a serial port
(`serial:///dev/ttyUSB0?baud=1000000`, also a pty bridged to the RTL).

Each sample runs from a fresh state: RESET (state from the init image, spikes and traces cleared), plastic
weights written back to their compiled values, then the inputs streamed in chunks of the design's input queue.
After a sample the plastic weights are read back (the reference's final weights).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
from pathlib import Path

import numpy as np

from nmcompile import artifact
from nmcompile.errors import NmcError, ShapeError
from nmcompile.protocols.fpga_uart import ProtocolError, Region
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


class UartBoard:
    """The host side shared by every transport: load an fpga artifact, stream samples, read weights back."""

    latency = 0

    def __init__(self, program: bool = True):
        self.program = program
        self.link: FpgaLink | None = None
        self.cycles: list[int] = []

    def open_link(self, project: Path) -> FpgaLink:
        raise NotImplementedError

    def load(self, source: object) -> None:
        path = Path(str(source))
        art = artifact.read(path)
        if art.target != "fpga" or not (path / "fpga" / "layout.json").is_file():
            raise NmcError(f"{path}: not a compiled fpga artifact (compile with --target fpga)")
        self.art = art
        self.layout = json.loads((path / "fpga" / "layout.json").read_text())
        self.latency = art.latency
        self.link = self.open_link(path / "fpga")
        info = self.link.info()
        design = self.layout["design"]
        if (info.neurons, info.in_words, info.syn_depth) != (design["neurons"], design["in_words"],
                                                             design["syn_depth"]):
            raise NmcError(f"the board's design ({info.neurons} neurons, {32 * info.in_words} channels, "
                           f"{info.syn_depth} synapse words) differs from the artifact's ({design['neurons']}, "
                           f"{32 * design['in_words']}, {design['syn_depth']}); rebuild the bitstream from fpga/")
        if self.program:
            self.link.program((path / "fpga" / "program.bin").read_bytes())
        self._plastic = [p for p in self.layout["projections"] if p["plastic"]]
        self._initial = {p["name"]: self.link.read(Region.SYN, p["w_base"], p["src_len"] * p["dst_len"])
                         for p in self._plastic}

    def run_all(self, spikes: np.ndarray) -> dict[str, np.ndarray]:
        if self.link is None:
            raise NmcError("no network loaded; call load() first")
        spikes = np.asarray(spikes)
        channels = self.layout["input"]["channels"]
        if spikes.ndim < 3 or int(np.prod(spikes.shape[2:])) != channels:
            raise ShapeError(f"spikes must be [T, B, {channels}] for this network, got {spikes.shape}")
        steps, batch = spikes.shape[:2]
        out = self.layout["output"]
        outputs = np.zeros((steps, batch, out["size"]), dtype=np.int64)
        weights = {p["name"]: np.zeros((batch, p["dst_len"], p["src_len"]), dtype=np.int64) for p in self._plastic}
        self.cycles = []
        for b in range(batch):
            self.link.reset()
            for p in self._plastic:
                self.link.write(Region.SYN, p["w_base"], self._initial[p["name"]])
            outputs[:, b], cycles = self.link.run_sample(spikes[:, b].reshape(steps, -1), self.layout["design"][
                "in_words"], out["size"])
            self.cycles.append(cycles)
            for p in self._plastic:
                raw = self.link.read(Region.SYN, p["w_base"], p["src_len"] * p["dst_len"])
                block = np.frombuffer(raw, dtype=np.int8).reshape(p["src_len"], p["dst_len"])
                weights[p["name"]][b] = block.T
        result = {out["name"]: outputs.reshape(steps, batch, *out["shape"])}
        result.update({f"weight:{name}": w for name, w in weights.items()})
        return result

    def run(self, spikes: np.ndarray) -> np.ndarray:
        result = self.run_all(spikes)
        out = result[self.layout["output"]["name"]]
        return out.reshape(out.shape[0], out.shape[1], -1)

    def stream(self, chunks):
        raise NmcError("streaming over the UART board runs whole samples; use run()")

    def close(self) -> None:
        self.link = None


class VerilatorBoard(UartBoard):
    """The Verilated RTL, built once per design size, fed through its UART pins over pipes."""

    def __init__(self, program: bool = True, blank: bool = False):
        super().__init__(program=program or blank)
        self.blank = blank
        self.proc: subprocess.Popen | None = None

    def open_link(self, project: Path) -> FpgaLink:
        from nmcompile.runtime.verilator_build import build_model

        binary = build_model(project, log=lambda m: print(m, flush=True))
        self.proc = subprocess.Popen([str(binary), *(["+blank"] if self.blank else [])], cwd=project,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return FpgaLink(PipeStream(self.proc))

    def close(self) -> None:
        super().close()
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


class SerialBoard(UartBoard):
    """A board (or a pty) on a serial port, through pyserial."""

    def __init__(self, port: str, baud: int = 1_000_000, program: bool = True, timeout: float = 30.0):
        super().__init__(program=program)
        self.port, self.baud, self.timeout = port, baud, timeout
        self.serial = None

    def open_link(self, project: Path) -> FpgaLink:
        import serial

        try:
            self.serial = serial.Serial(self.port, self.baud, timeout=0.05)
        except serial.SerialException as err:
            raise NmcError(f"cannot open {self.port}: {err}") from None
        return FpgaLink(self.serial, timeout=self.timeout)

    def close(self) -> None:
        super().close()
        if self.serial is not None:
            self.serial.close()
            self.serial = None
