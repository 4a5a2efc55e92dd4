"""An emulated SpiNNaker 2 board behind a UDP socket: what `nmcompile emulate ART --listen udp://HOST:PORT` runs.

    board = EmulatedBoard("127.0.0.1", 0, pe="model")      # port 0: any free port (board.address)
    board.serve()                                          # until stop() or SIGTERM

It speaks the board side of docs/formats/spinnaker2-udp.md: a HELLO starts a session (a new one replaces the old,
the way a real board serves the last host that greeted it), LOAD pieces build the network blob (placement,
routing tables, PE images, kernel.elf), LOAD_END checks its sha256 and starts the PEs, RESET starts a sample,
SPIKES of step t run tick t once the step's last fragment is in, and the step's outputs go back as OUTPUT messages.
PE compute: `model` executes the images with the kernel's rules in numpy, every PE at once (`FusedModelSession`, the
spikes of one `ModelPe` per PE), `qemu` runs the C kernel on an emulated Cortex-M4 per PE; spikes between PEs follow
the emitted routing tables (checked at load). Its counters (spikes in and out, steps, the channel's recovered
faults) answer STATS.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from nmcompile.errors import NmcError
from nmcompile.protocols.spinnaker2_udp import (
    LAST,
    LOAD_HEADER,
    MAX_KEYS,
    VALUES,
    VERSION,
    Datagram,
    Kind,
    ProtocolError,
    RecordPacker,
    VersionMismatch,
    fragments,
    parse_records,
    step_records,
    unpack_files,
)
from nmcompile.runtime.udp_channel import OTHER_VERSION_LIMIT, Channel

WINDOW = 64


class BoardChannel(Channel):
    """The board's channel: a HELLO with a new session (from any host) starts that session; any other datagram of
    an unknown session is answered with an ERROR, so a host that talked to a previous boot learns the board
    restarted."""

    _other_hosts: dict

    def restart(self, session: int, peer) -> None:
        super().restart(session, peer)
        self._other_hosts = {}      # host address -> (datagrams of another version in a row, time of last ERROR)

    def accept_from(self, datagram: Datagram, addr) -> bool:
        self._other_hosts.pop(addr, None)
        if datagram.session == self.session and addr == self.peer:
            return True
        if datagram.kind == Kind.HELLO and datagram.seq == 0:
            self.restart(datagram.session, addr)
            return True
        if datagram.kind not in (Kind.ACK, Kind.NACK):
            self.send_unsequenced(Kind.ERROR, b"unknown session: the board was restarted or another host greeted "
                                  b"it since; open the board again", peer=addr, session=datagram.session)
        return False

    def other_version(self, mismatch: VersionMismatch, addr) -> None:
        """A host of another protocol version: answered with an ERROR of this version (at most one per second per
        host; once the datagram's CRC checks, or after OTHER_VERSION_LIMIT in a row), which such a host reports as
        the board's version."""
        streak, last = self._other_hosts.get(addr, (0, 0.0))
        streak += 1
        now = time.monotonic()
        self._other_hosts[addr] = (streak, last)
        if (mismatch.intact or streak >= OTHER_VERSION_LIMIT) and now - last >= 1.0:
            self._other_hosts[addr] = (streak, now)
            message = (f"this board speaks version {VERSION} of the SpiNNaker 2 UDP protocol and the host version "
                       f"{mismatch.version}: run the same nmcompile release on both ends")
            self.send_unsequenced(Kind.ERROR, message.encode(), peer=addr, session=mismatch.session or 0)


class EmulatedBoard:
    """The board's program: sessions, loading, stepping the PEs, counters."""

    def __init__(self, host: str, port: int, pe: str = "model", timeout: float = 30.0, log=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        try:
            self.sock.bind((host, port))
        except OSError as err:
            self.sock.close()
            raise NmcError(f"cannot listen on udp://{host}:{port}: {err.strerror or err}") from None
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self.pe, self.timeout, self.log = pe, timeout, log
        self.boot_id = random.getrandbits(32)
        self.channel = BoardChannel(self.sock, None, session=0xFFFFFFFF, window=WINDOW, timeout=timeout,
                                    describe="the host")
        self.session_id = self.channel.session
        self.outbox = RecordPacker(lambda payload: self.channel.send(Kind.OUTPUT, payload))
        self._stopping = False
        self._served = threading.Event()          # set while serve() is not running
        self._served.set()
        self._work: tempfile.TemporaryDirectory | None = None
        self.network = self.runner = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.blob = bytearray()
        self.counters = {"spikes_in": 0, "spikes_out": 0, "steps": 0, "samples": 0}
        self._step_keys: list[np.ndarray] = []
        self._next_step = 0

    # -- the loop --------------------------------------------------------------------------------------------
    def serve(self) -> None:
        self._served.clear()
        try:
            while not self._stopping:
                try:
                    self.channel.poll(0 if self.channel.inbox else 0.2)
                except ProtocolError as err:          # a host sent the board an ERROR: nothing to do but note it
                    if self.log:
                        self.log(f"ignored: {err}")
                if self.channel.session != self.session_id:
                    self._new_session()
                # the messages in order; after a SPIKES message its outputs go at once and the socket is read (and
                # acknowledged) again before the next one
                while self.channel.inbox:
                    datagram = self.channel.inbox.popleft()
                    self._handle(datagram)
                    if datagram.kind == Kind.SPIKES:
                        break
                self.outbox.flush()
        finally:
            self._served.set()

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        """Stop serving (waiting for serve() in another thread to return) and release the socket and the PEs."""
        self._stopping = True
        self._served.wait(timeout=5)
        self._close_network()
        self.sock.close()

    def _new_session(self) -> None:
        self.session_id = self.channel.session
        self._reset_state()
        if self.log:
            self.log(f"session {self.session_id:#010x} from {self.channel.peer[0]}:{self.channel.peer[1]}")

    def _error(self, message: str) -> None:
        self.outbox.flush()
        self.channel.send_unsequenced(Kind.ERROR, message.encode())

    def _handle(self, datagram: Datagram) -> None:
        try:
            handler = {Kind.HELLO: self._hello, Kind.LOAD: self._load, Kind.LOAD_END: self._load_end,
                       Kind.RESET: self._reset, Kind.SPIKES: self._spikes, Kind.STATS: self._stats}.get(datagram.kind)
            if handler is None:
                raise ProtocolError(f"unknown message kind {datagram.kind:#04x}")
            if datagram.kind != Kind.SPIKES:
                self.outbox.flush()          # answers come after the outputs of the steps before them
            handler(datagram.payload)
        except NmcError as err:
            self._error(str(err))
        except Exception as err:  # a bug in the emulator: the host gets one line, the board keeps serving
            self._error(f"internal error in the emulated board: {type(err).__name__}: {err}")

    # -- messages --------------------------------------------------------------------------------------------
    def _hello(self, payload: bytes) -> None:
        self.channel.send(Kind.INFO, struct.pack("<IHH", self.boot_id, WINDOW, MAX_KEYS))

    def _load(self, payload: bytes) -> None:
        offset, total = LOAD_HEADER.unpack_from(payload)
        if offset != len(self.blob):
            raise ProtocolError(f"LOAD at offset {offset}, expected {len(self.blob)}")
        self.blob += payload[LOAD_HEADER.size:]
        if len(self.blob) > total:
            raise ProtocolError("LOAD pieces exceed the announced size")

    def _load_end(self, payload: bytes) -> None:
        from nmcompile.runtime.spinnaker2_model import FusedModelSession
        from nmcompile.runtime.spinnaker2_net import ModelPe, Spinnaker2Network, parse_image
        from nmcompile.runtime.spinnaker2_session import NetworkSession

        if hashlib.sha256(self.blob).digest() != payload:
            raise ProtocolError("the loaded network's sha256 differs from the host's")
        files = unpack_files(bytes(self.blob))
        self.blob = bytearray()
        self._close_network()
        self._work = tempfile.TemporaryDirectory(prefix="nmc-s2-board-")
        root = Path(self._work.name) / "spinnaker2"
        root.mkdir()
        for name, data in files.items():
            (root / name).write_bytes(data)
        if self.pe == "qemu":
            from nmcompile.runtime.spinnaker2_board import _QemuPe

            elf, timeout = root / "kernel.elf", self.timeout
            if not elf.is_file():
                raise ProtocolError("--pe qemu needs kernel.elf in the loaded network")
            net = Spinnaker2Network(root.parent, lambda name, image: _QemuPe(elf, name, image, False, timeout))
        else:
            net = Spinnaker2Network(root.parent, lambda name, image: ModelPe(parse_image(image, name)))
        net.check_routes()
        self.network, self.runner = net, FusedModelSession(net) if self.pe == "model" else NetworkSession(net)
        self.outputs = list(net.placement["outputs"])
        self.readout = [net.placement["layers"][o["layer"]]["readout"] for o in net.placement["outputs"].values()]
        if self.log:
            self.log(f"loaded {len(net.pe_names)} PE(s) on {len(net.tables)} chip(s), {self.pe} PEs")
        self.channel.send(Kind.LOADED, struct.pack("<HHI", len(net.pe_names), len(net.tables),
                                                   self.runner.input_size))

    def _reset(self, payload: bytes) -> None:
        if self.runner is None:
            raise ProtocolError("RESET before a network was loaded")
        self.runner.reset()
        self.counters["samples"] += 1
        self._step_keys, self._next_step = [], 0

    def _spikes(self, payload: bytes) -> None:
        if self.runner is None:
            raise ProtocolError("SPIKES before a network was loaded")
        for step, _, flags, keys in parse_records(payload):
            if step != self._next_step:
                raise ProtocolError(f"spikes of step {step} while step {self._next_step} is due")
            if keys.size and (keys.min() < 0 or keys.max() >= self.runner.input_size):
                raise ProtocolError(f"an input key of step {step} is outside 0..{self.runner.input_size - 1}")
            self.counters["spikes_in"] += int(keys.size)
            self._step_keys.append(keys)
            if flags & LAST:
                self._tick(step)

    def _tick(self, step: int) -> None:
        """Run the tick of a step whose input is complete; its outputs go to the outbox."""
        x = np.zeros(self.runner.input_size, dtype=np.int64)
        x[np.concatenate(self._step_keys)] = 1
        self._step_keys = []
        self._next_step += 1
        outputs = self.runner.step(x)
        self.counters["steps"] += 1
        for index, name in enumerate(self.outputs):
            values = outputs[name]
            if self.readout[index]:
                pieces = fragments(step, values, VALUES, index)
            else:
                spikes = np.flatnonzero(values)
                self.counters["spikes_out"] += int(spikes.size)
                pieces = step_records(step, spikes, len(values), index)
            for piece in pieces:
                self.outbox.add(piece)

    def _stats(self, payload: bytes) -> None:
        counters = {**self.counters, **{f"channel_{k}": v for k, v in self.channel.counters.as_dict().items()}}
        self.channel.send(Kind.COUNTERS, json.dumps(counters).encode())

    def _close_network(self) -> None:
        if self.network is not None:
            self.network.close()
            self.network = self.runner = None
        if self._work is not None:
            self._work.cleanup()
            self._work = None
