"""`qemu://`: a spinnaker2 artifact run as a network of emulated Cortex-M4 PEs.

Every PE of the placement runs the artifact's kernel.elf with its own data image in a QEMU process
(`qemu-system-arm -M mps2-an386`, `nmcompile.runtime.qemu_pe.PeProcess`); the host steps all PEs tick by tick and
routes every spike through the emitted routing tables (checked at load: every key reaches exactly the PEs that
listen to it), so a multi-PE and multi-chip network runs as a network. Options: `?record=1` also reads every
layer's u and v (`last_states`), `?timeout=SECONDS` bounds each tick of each PE, `?pes=local://N` or
`?pes=dask://HOST:PORT` runs the PEs themselves as jobs of an executor (`nmcompile.runtime.executors`): groups of
PEs that feed each other in a cycle run in lock step, every other PE over all its ticks at once, each generation of
independent groups in parallel, so one large network's PEs spread over a pool or a cluster. (`verify --executor`
shards the samples instead.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from nmcompile.errors import BoardError, InputFileError, UnsupportedError
from nmcompile.integrity import private_copy
from nmcompile.runtime.board import BaseBoard, BoardOption, flag_option, seconds_option


def _executor_spec(text: str) -> str:
    if text != "serial" and not text.startswith(("local", "dask://")):
        raise ValueError(text)
    return text


class _QemuPe:
    """A PE process with the interface the network steps (reset / tick / close)."""

    def __init__(self, elf, name: str, image: bytes, record: bool, timeout: float):
        from nmcompile.runtime.qemu_pe import PeProcess

        self.record = record
        self.n = int(np.frombuffer(image[12:16], dtype="<u4")[0])
        self.process = PeProcess(elf, image, record=record, name=name, tick_timeout=timeout)

    def reset(self) -> None:
        self.process.new_sample()

    def tick(self, keys: np.ndarray):
        out = self.process.tick(keys)
        if not self.record:
            zero = np.zeros(self.n, dtype=np.int64)
            return out.fired, out.readout.astype(np.int64), zero, zero
        return out.fired, out.readout.astype(np.int64), out.u.astype(np.int64), out.v.astype(np.int64)

    def close(self) -> None:
        self.process.close()


class QemuBoard(BaseBoard):
    scheme = "qemu"
    target = "spinnaker2"
    requires = ("spinnaker2/placement.json", "spinnaker2/kernel.elf")
    options = (flag_option("record"), seconds_option("timeout"),
               BoardOption("pes", "serial|local://N|dask://HOST:PORT", _executor_spec))

    def __init__(self, record: bool = False, timeout: float = 30.0, pes: str | None = None, progress=None):
        super().__init__(progress)
        self.record = record
        self.timeout = timeout
        self.pes = pes
        self.network = None
        self._copy = None
        self.last_states: dict[str, np.ndarray] = {}

    def load(self, source: object) -> None:
        from nmcompile.runtime.spinnaker2_net import Spinnaker2Network

        self.close()
        art = self.read_artifact(source)
        self._copy = private_copy(art, "spinnaker2")       # the files rebuilt from network.nmir, not the shipped ones
        root = Path(self._copy.name)
        elf = root / "spinnaker2" / "kernel.elf"
        header = elf.read_bytes()[:20]
        if len(header) < 20 or header[:4] != b"\x7fELF" or int.from_bytes(header[18:20], "little") != 40:
            raise InputFileError(f"{elf}: not an ARM ELF file (corrupt or replaced); compile the artifact again")
        record, timeout = self.record, self.timeout
        self.network = Spinnaker2Network(
            root, lambda name, image: _QemuPe(elf, name, image, record, timeout))
        self.network.check_routes()
        self.report(f"qemu://: {len(self.network.pe_names)} PE(s) on {len(self.network.tables)} chip(s); routes "
                    "checked")

    def run_all(self, spikes: np.ndarray) -> dict[str, np.ndarray]:
        spikes = self.check_spikes(spikes)
        if self.network is None:
            raise BoardError("qemu://: no artifact loaded")
        self.report(f"qemu://: {spikes.shape[0]} steps x {spikes.shape[1]} samples on "
                    f"{len(self.network.pe_names)} PE(s)")
        if self.pes is None:
            results = self.network.run(spikes, record=self.record)
        else:
            from nmcompile.runtime.executors import open_executor
            from nmcompile.runtime.spinnaker2_net import run_distributed

            with open_executor(self.pes) as executor:
                results = run_distributed(self.network, spikes, executor, record=self.record, timeout=self.timeout,
                                          progress=self.progress)
        self.last_states = {k: v for k, v in results.items() if k not in self.outputs}
        return {name: results[name] for name in self.outputs}

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One sample in chunks [t, 1, N_in] (or EventChunks), the PEs keeping their state across chunks; the stream
        starts from a fresh state."""
        from nmcompile.runtime.spinnaker2_session import NetworkSession

        if self.network is None:
            raise BoardError("qemu://: no artifact loaded")
        name = self.single_output()
        session = NetworkSession(self.network)
        started = False
        for chunk in chunks:
            chunk = self.check_spikes(chunk)
            if chunk.shape[1] != 1:
                raise UnsupportedError(f"qemu:// streams one sample at a time (a chunk has batch {chunk.shape[1]}); "
                                       "use run() for batches")
            if not started:
                session.reset()
                started = True
            flat = chunk.reshape(chunk.shape[0], -1)
            try:
                out = np.stack([session.step(x)[name] for x in flat]) if len(flat) else np.zeros((0, 0))
            except BaseException:
                self.network.close()
                raise
            yield out.reshape(len(flat), 1, -1)

    def close(self) -> None:
        if self.network is not None:
            self.network.close()
            self.network = None
        if self._copy is not None:
            self._copy.cleanup()
            self._copy = None
