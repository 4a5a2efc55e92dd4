"""`udp://HOST:PORT`: a SpiNNaker 2 board (or the emulated one of `nmcompile emulate ART --listen udp://...`) over
the datagram protocol of docs/formats/spinnaker2-udp.md.

    with open_board("udp://127.0.0.1:17893") as board:
        board.load("net-spinnaker2")          # the artifact's spinnaker2/ files, sent in LOAD pieces
        out = board.run(spikes)                # every sample: RESET, then each step's input spikes
        for chunk_out in board.stream(chunks): ...

Options: timeout (seconds of silence before the board counts as gone, default 10), window (messages in flight,
default 64, at most the board's). The host packs the steps' spike records into as few datagrams as they fit (a
step as a bitmap when that is smaller than its keys) and pipelines them up to the window, so a host faster than
the board waits instead of losing spikes. After every run the board's counters (spikes in, spikes out, steps) are
compared with the host's: a difference is an error, never a silent loss. `counters` holds the host's channel
counters (retransmissions, duplicates, reordered and corrupt datagrams seen) and `board_counters` the board's.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import ParseResult

import numpy as np

from nmcompile.errors import BoardError, UnsupportedError
from nmcompile.protocols.spinnaker2_udp import (
    LAST,
    LOAD_HEADER,
    MAX_PAYLOAD,
    VALUES,
    Kind,
    ProtocolError,
    RecordPacker,
    pack_files,
    parse_records,
    step_records,
)
from nmcompile.runtime.board import BaseBoard, Progress, int_option, parse_query, seconds_option
from nmcompile.runtime.udp_channel import Channel

HOST_BUFFER = 1 << 16        # outputs the host holds unconsumed: bounded by the steps it sent itself
MAX_WINDOW = 4096


class UdpBoard(BaseBoard):
    scheme = "udp"
    target = "spinnaker2"
    requires = ("spinnaker2/placement.json",)
    options = (seconds_option("timeout"), int_option("window"))

    def __init__(self, host: str, port: int, timeout: float = 10.0, window: int = 64,
                 progress: Progress | None = None):
        super().__init__(progress)
        if window > MAX_WINDOW:
            raise UnsupportedError(f"udp://?window={window}: at most {MAX_WINDOW} messages in flight")
        self.host, self.port, self.timeout, self.window = host, port, timeout, window
        self.channel: Channel | None = None
        self.sock: socket.socket | None = None
        self.board_counters: dict[str, int] = {}
        self.sent_spikes = self.received_spikes = self.steps_done = 0

    @classmethod
    def from_url(cls, url: ParseResult, query: Mapping[str, str], progress: Progress | None = None) -> UdpBoard:
        example = "udp://127.0.0.1:17893"
        if url.path not in ("", "/"):
            raise UnsupportedError(f"{url.geturl()}: udp:// takes HOST:PORT and no path, e.g. {example}")
        try:
            port = url.port
        except ValueError:
            port = None
        if not url.hostname or not port:
            raise UnsupportedError(f"{url.geturl()}: udp:// needs HOST:PORT, e.g. {example}")
        return cls(url.hostname, port, **parse_query(cls.scheme, query, cls.options), progress=progress)

    @property
    def counters(self) -> dict[str, int]:
        return self.channel.counters.as_dict() if self.channel is not None else {}

    def _open(self) -> Channel:
        """Greet the board: a new session, the board's boot id and window."""
        if self.channel is not None:
            return self.channel
        try:
            address = socket.getaddrinfo(self.host, self.port, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
        except socket.gaierror as err:
            raise BoardError(f"udp://{self.host}:{self.port}: cannot resolve {self.host}: {err.strerror}") from None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.setblocking(False)
        describe = f"the board at udp://{self.host}:{self.port}"
        channel = Channel(self.sock, address, random.getrandbits(32), window=self.window, timeout=self.timeout,
                          describe=describe, buffer=HOST_BUFFER)
        channel.send(Kind.HELLO, struct.pack("<H", self.window))
        info = self._expect(channel, Kind.INFO)
        self.boot_id, board_window, _ = struct.unpack("<IHH", info)
        channel.window = min(self.window, board_window)
        self.channel = channel
        return channel

    @staticmethod
    def _expect(channel: Channel, kind: Kind) -> bytes:
        datagram = channel.receive()
        if datagram.kind != kind:
            raise ProtocolError(f"{channel.describe} answered {datagram.kind:#04x}, expected {kind.name}")
        return datagram.payload

    def load(self, source: object) -> None:
        self.close()
        art = self.read_artifact(source)
        root = art.path / "spinnaker2"
        self.placement = json.loads((root / "placement.json").read_text())
        files = {f.name: f.read_bytes() for f in sorted(root.iterdir())
                 if f.is_file() and (f.suffix in (".bin", ".json") or f.name == "kernel.elf")}
        blob = pack_files(files)
        channel = self._open()
        piece = MAX_PAYLOAD - LOAD_HEADER.size
        for offset in range(0, len(blob), piece):
            channel.send(Kind.LOAD, LOAD_HEADER.pack(offset, len(blob)) + blob[offset:offset + piece])
        channel.send(Kind.LOAD_END, hashlib.sha256(blob).digest())
        pes, chips, input_size = struct.unpack("<HHI", self._expect(channel, Kind.LOADED))
        if input_size != self.input_size:
            raise BoardError(f"the board expects {input_size} input channels, the artifact {self.input_size}")
        self.output_names = list(self.placement["outputs"])
        self.output_sizes = [len(self.placement["layers"][o["layer"]]["pe"])
                             for o in self.placement["outputs"].values()]
        self.report(f"udp://{self.host}:{self.port}: loaded {len(blob)} bytes on {pes} PE(s), {chips} chip(s)")

    # -- running -------------------------------------------------------------------------------------------------
    def _run_sample(self, flat: np.ndarray, reset: bool) -> list[np.ndarray]:
        """Send one sample's steps (RESET first when `reset`) while collecting their outputs; returns per output
        [steps, size]. The steps' spike records share datagrams (as many as fit), outputs are read after each."""
        channel = self._channel()
        steps = flat.shape[0]
        results = [np.zeros((steps, size), dtype=np.int64) for size in self.output_sizes]
        complete = [0] * len(results)
        if reset:
            channel.send(Kind.RESET)

        in_flight: deque[int] = deque()             # per SPIKES datagram not yet answered: its last step
        last_added = -1                             # the step of the last record handed to the packer

        def send(payload: bytes) -> None:
            # credit: at most half the window of SPIKES datagrams whose outputs are not all back, so the board
            # never holds more unprocessed messages than it buffers
            while in_flight and in_flight[0] < min(complete, default=steps):
                in_flight.popleft()
            while len(in_flight) >= max(1, channel.window // 2):
                self._output(channel.receive(), results, complete)
                while in_flight and in_flight[0] < min(complete, default=steps):
                    in_flight.popleft()
            channel.send(Kind.SPIKES, payload)
            in_flight.append(last_added)
            channel.poll(0)
            while channel.inbox:
                self._output(channel.inbox.popleft(), results, complete)

        packer = RecordPacker(send)
        spiking = flat != 0
        counts = np.count_nonzero(spiking, axis=1)
        self.sent_spikes += int(counts.sum())
        width = flat.shape[1]
        for t in range(steps):
            for record in step_records(self._step_base + t, np.flatnonzero(spiking[t]), width):
                packer.add(record)             # may send the records before it
                last_added = t
        packer.flush()
        while min(complete, default=steps) < steps:
            self._output(channel.receive(), results, complete)
        return results

    def _output(self, datagram, results: list[np.ndarray], complete: list[int]) -> None:
        if datagram.kind != Kind.OUTPUT:
            raise ProtocolError(f"unexpected message {datagram.kind:#04x} while running")
        for step, index, flags, values in parse_records(datagram.payload):
            step -= self._step_base
            if index >= len(results) or not 0 <= step < results[index].shape[0] or step != complete[index]:
                raise ProtocolError(f"the board sent output {index} of step {step + self._step_base} out of turn")
            if flags & VALUES:
                results[index][step, :len(values)] = values
            else:
                if values.size and values.max() >= results[index].shape[1]:
                    raise ProtocolError(f"the board sent output {index} neuron {int(values.max())} of step "
                                        f"{step + self._step_base}, beyond its {results[index].shape[1]} neurons")
                results[index][step, values] = 1
                self.received_spikes += int(values.size)
            if flags & LAST:
                complete[index] += 1

    def _channel(self) -> Channel:
        if self.channel is None:
            raise BoardError("udp://: no artifact loaded")
        return self.channel

    def check_counters(self) -> dict[str, int]:
        """The board's counters, which must agree with what this host sent and received."""
        channel = self._channel()
        channel.send(Kind.STATS)
        counters = json.loads(self._expect(channel, Kind.COUNTERS))
        self.board_counters = counters
        if counters["spikes_in"] != self.sent_spikes or counters["spikes_out"] != self.received_spikes:
            raise ProtocolError(f"spike counters differ: host sent {self.sent_spikes} and received "
                                f"{self.received_spikes}, the board received {counters['spikes_in']} and sent "
                                f"{counters['spikes_out']}")
        return counters

    def run_all(self, spikes: np.ndarray) -> dict[str, np.ndarray]:
        spikes = self.check_spikes(spikes)
        steps, batch = spikes.shape[:2]
        flat = spikes.reshape(steps, batch, -1)
        outputs = {name: np.zeros((steps, batch, size), dtype=np.int64)
                   for name, size in zip(self.output_names, self.output_sizes, strict=True)}
        self._step_base = 0
        try:
            for b in range(batch):
                for name, values in zip(self.output_names, self._run_sample(flat[:, b], reset=True), strict=True):
                    outputs[name][:, b] = values
            self.check_counters()
        except BaseException:
            self.close()                  # a session left mid-sample is not reused: load() opens a new one
            raise
        return {name: outputs[name].reshape(steps, batch, *self.placement["layers"][o["layer"]]["shape"])
                for name, o in self.placement["outputs"].items() if name in self.outputs}

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One sample in chunks [t, 1, N_in] (or EventChunks): the board keeps its state across chunks; the
        stream starts from a fresh state."""
        self._channel()
        name = self.single_output()
        index = self.output_names.index(name)
        started = False
        self.steps_done = 0
        for chunk in chunks:
            chunk = self.check_spikes(chunk)
            if chunk.shape[1] != 1:
                raise UnsupportedError(f"udp:// streams one sample at a time (a chunk has batch {chunk.shape[1]}); "
                                       "use run() for batches")
            self._step_base = self.steps_done
            try:
                out = self._run_sample(chunk.reshape(chunk.shape[0], -1), reset=not started)
            except BaseException:
                self.close()
                raise
            if not started:
                started = True
            self.steps_done += chunk.shape[0]
            yield out[index].reshape(chunk.shape[0], 1, -1)
        self.check_counters()

    def close(self) -> None:
        super().close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self.channel = None
