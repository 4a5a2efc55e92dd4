"""Reliable, ordered messages over UDP datagrams (docs/formats/spinnaker2-udp.md), the same code on the host
(`udp://` board) and in the emulated board (`nmcompile emulate`).

    channel = Channel(sock, peer=("127.0.0.1", 17893), session=0x1234)
    channel.send(Kind.SPIKES, payload)     # numbered; blocks while `window` datagrams are unacknowledged
    datagram = channel.receive()           # the peer's next message in order (ProtocolError after `timeout` s quiet)

Sender: every message gets the next sequence number and stays in `unacked` until the peer's cumulative `ack` (in
every datagram it sends) or its selective-ack bitmap covers it; it is sent again when the peer re-requests it (NACK)
or after a retransmission timeout that doubles per attempt (0.2 s up to 2 s). Flow control: at most `window`
messages are unacknowledged, and a receiver accepts at most `buffer` (default `window`) messages not yet consumed by
its program (re-requesting the dropped ones with a NACK as soon as its program has made room),
dropping (and counting) the rest, which the sender retransmits; a host, which consumes what it asked for, may hold
more (`buffer`).
Receiver: a corrupt datagram (CRC) is dropped and counted; a duplicate (seq below `expected`) is dropped, counted
and acknowledged again; one ahead of `expected` is held and the gap re-requested with a NACK at once; messages are
handed to the program strictly in sequence order. Every counter is in `counters`, so a test or a user can prove that
nothing was lost or delivered twice.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections import deque
from dataclasses import asdict, dataclass

from nmcompile.protocols.spinnaker2_udp import (
    MAX_DATAGRAM,
    UNSEQUENCED,
    VERSION,
    Datagram,
    Kind,
    ProtocolError,
    VersionMismatch,
    pack,
    unpack,
)

RTO_MIN, RTO_MAX = 0.2, 2.0
NACK_LIMIT = 64                 # seqs re-requested per NACK
OTHER_VERSION_LIMIT = 3         # datagrams of another protocol version in a row (none of this version between) that
                                # prove the peer speaks it, when their CRC cannot tell (a corrupted version byte
                                # is one datagram, recovered like any corrupt one)


@dataclass
class Counters:
    """What a channel saw; `retransmitted`, `duplicates`, `corrupt`, `out_of_order` and `overrun` count recovered
    faults, never lost messages."""

    sent: int = 0
    delivered: int = 0
    retransmitted: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    corrupt: int = 0
    other_version: int = 0
    foreign: int = 0
    overrun: int = 0
    nacks_sent: int = 0
    nacks_received: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Channel:
    """One side of a session: `send` numbered messages, `receive` the peer's in order."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int] | None, session: int, window: int = 64,
                 timeout: float = 10.0, describe: str = "the peer", buffer: int | None = None):
        self.sock, self.peer, self.session = sock, peer, session
        self.window, self.timeout, self.describe = window, timeout, describe
        self.buffer = buffer or window             # received messages held for the program at most
        self.counters = Counters()
        self.restart(session, peer)

    def restart(self, session: int, peer: tuple[str, int] | None) -> None:
        """A new session: numbering from 0 both ways, nothing held or pending."""
        self.session, self.peer = session, peer
        self.next_seq = 0
        self.unacked: dict[int, list] = {}          # seq -> [raw, sent at, timeout]
        self.expected = 0
        self.held: dict[int, Datagram] = {}
        self.inbox: deque[Datagram] = deque()
        self.errors: deque[Datagram] = deque()
        self.heard = time.monotonic()
        self._ack_due = False
        self._dropped_upto = -1                     # the highest seq dropped for want of room
        self._room_nack = (-1, 0.0)                 # (expected, time) of the last re-request for dropped seqs
        self._nacked: set[int] = set()
        self._other_versions = 0                    # datagrams of another version in a row from the peer

    # -- sending ---------------------------------------------------------------------------------------------
    def _transmit(self, raw: bytes) -> None:
        try:
            self.sock.sendto(raw, self.peer)
        except (BlockingIOError, InterruptedError):
            pass                                    # a full socket buffer is a lost datagram: retransmitted later
        except OSError as err:
            raise ProtocolError(f"cannot send to {self.describe}: {err.strerror or err}") from None

    def send(self, kind: int, payload: bytes = b"") -> None:
        """Send a numbered message, first waiting (and receiving) while the window is full."""
        deadline_start = time.monotonic()
        while len(self.unacked) >= self.window:
            self.poll(0.01)
            self._check_alive(deadline_start)
        seq = self.next_seq
        self.next_seq += 1
        raw = pack(kind, self.session, seq, self.expected, payload)
        self.unacked[seq] = [raw, time.monotonic(), RTO_MIN]
        self.counters.sent += 1
        self._ack_due = False                       # the datagram carries the ack
        self._transmit(raw)

    def send_unsequenced(self, kind: int, payload: bytes = b"", peer: tuple[str, int] | None = None,
                         session: int | None = None) -> None:
        raw = pack(kind, self.session if session is None else session, 0, self.expected, payload)
        if peer is None:
            self._transmit(raw)
        else:
            with contextlib.suppress(OSError):
                self.sock.sendto(raw, peer)

    def flush(self) -> None:
        """Wait until every sent message is acknowledged."""
        start = time.monotonic()
        while self.unacked:
            self.poll(0.01)
            self._check_alive(start)

    # -- receiving -------------------------------------------------------------------------------------------
    def receive(self, timeout: float | None = None) -> Datagram:
        """The peer's next message in order; ProtocolError when nothing comes within `timeout` (default: the
        channel's) or the peer reports an error."""
        start = time.monotonic()
        limit = self.timeout if timeout is None else timeout
        while not self.inbox:
            self.poll(0.02)
            if time.monotonic() - max(start, self.heard) > limit:
                raise ProtocolError(f"{self.describe} stopped answering (nothing for {limit:g} s; "
                                    f"{len(self.unacked)} message(s) unacknowledged)")
        return self.inbox.popleft()

    def poll(self, wait: float) -> None:
        """Wait up to `wait` seconds for a datagram, read every one that is there, then acknowledge and retransmit
        as due."""
        ready, _, _ = select.select([self.sock], [], [], wait)
        if ready:
            for _ in range(4 * self.buffer):
                try:
                    raw, addr = self.sock.recvfrom(MAX_DATAGRAM + 64)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionRefusedError:
                    break                               # ICMP port unreachable: the peer is gone; the deadline tells
                self._incoming(raw, addr)
        self._after_poll()

    def _incoming(self, raw: bytes, addr) -> None:
        try:
            datagram = unpack(raw)
        except VersionMismatch as mismatch:
            self.counters.other_version += 1
            self.other_version(mismatch, addr)
            return
        except ProtocolError:
            self.counters.corrupt += 1
            return
        self._other_versions = 0
        if not self.accept_from(datagram, addr):
            self.counters.foreign += 1
            return
        self.heard = time.monotonic()
        self._acknowledged(datagram)
        if datagram.kind == Kind.ERROR:
            self.errors.append(datagram)
            raise ProtocolError(f"{self.describe}: {datagram.payload.decode(errors='replace')}")
        if datagram.kind == Kind.NACK:
            self.counters.nacks_received += 1
            count = len(datagram.payload) // 4
            for seq in struct.unpack(f"<{count}I", datagram.payload[:4 * count]):
                self._retransmit(seq)
            return
        if datagram.kind in UNSEQUENCED:
            return
        self._ack_due = True
        seq = datagram.seq
        if seq < self.expected or seq in self.held:
            self.counters.duplicates += 1
            return
        if seq >= self.expected + self.buffer or len(self.inbox) + len(self.held) >= self.buffer:
            self.counters.overrun += 1              # beyond what this side buffers: re-requested once there is room
            self._dropped_upto = max(self._dropped_upto, seq)
            return
        if seq > self.expected:
            self.counters.out_of_order += 1
            self.held[seq] = datagram
            missing = [s for s in range(self.expected, seq) if s not in self.held and s not in self._nacked]
            if missing:
                self._nack(missing[:NACK_LIMIT])
            return
        self._deliver(datagram)
        while self.expected in self.held:
            self._deliver(self.held.pop(self.expected))

    def other_version(self, mismatch: VersionMismatch, addr) -> None:
        """A datagram of another protocol version arrived: from the peer, once its CRC checks or after
        OTHER_VERSION_LIMIT in a row, that is the peer's version and a one-line error; else it counts as corrupt."""
        if self.peer is not None and addr != self.peer:
            return
        self._other_versions += 1
        if mismatch.intact or self._other_versions >= OTHER_VERSION_LIMIT:
            raise ProtocolError(f"{self.describe} speaks version {mismatch.version} of the SpiNNaker 2 UDP protocol "
                                f"and this nmcompile version {VERSION}: run the same nmcompile release on both ends")

    def accept_from(self, datagram: Datagram, addr) -> bool:
        """Whether a datagram belongs to this session; a channel without a peer adopts the first sender (the board
        side overrides this to start sessions)."""
        if datagram.session != self.session:
            return False
        if self.peer is None:
            self.peer = addr
        return addr == self.peer

    def _deliver(self, datagram: Datagram) -> None:
        self.expected += 1
        self._nacked.discard(datagram.seq)
        self.counters.delivered += 1
        self.inbox.append(datagram)

    def _nack(self, seqs: list[int]) -> None:
        self._nacked.update(seqs)
        self.counters.nacks_sent += 1
        self.send_unsequenced(Kind.NACK, struct.pack(f"<{len(seqs)}I", *seqs))

    def _acknowledged(self, datagram: Datagram) -> None:
        for seq in [s for s in self.unacked if s < datagram.ack]:
            del self.unacked[seq]
        if datagram.kind == Kind.ACK and len(datagram.payload) >= 4:
            (bits,) = struct.unpack_from("<I", datagram.payload)
            for k in range(32):
                if bits >> k & 1:
                    self.unacked.pop(datagram.ack + 1 + k, None)

    def _retransmit(self, seq: int) -> None:
        entry = self.unacked.get(seq)
        if entry is None:
            return
        self.counters.retransmitted += 1
        entry[1] = time.monotonic()
        entry[2] = min(entry[2] * 2, RTO_MAX)
        self._transmit(entry[0])

    def _after_poll(self) -> None:
        room = self.buffer - len(self.inbox) - len(self.held)
        now = time.monotonic()
        if self.expected <= self._dropped_upto and room > 0 and (
                self._room_nack[0] != self.expected or now - self._room_nack[1] > RTO_MIN):
            self._room_nack = (self.expected, now)
            last = min(self.expected + room, self._dropped_upto + 1)
            missing = [s for s in range(self.expected, last) if s not in self.held]
            if missing:
                self._nack(missing[:NACK_LIMIT])
        if self._ack_due:
            bits = sum(1 << k for k in range(32) if self.expected + 1 + k in self.held)
            self.send_unsequenced(Kind.ACK, struct.pack("<I", bits))
            self._ack_due = False
        for seq, (_, sent, rto) in list(self.unacked.items()):
            if now - sent > rto:
                self._retransmit(seq)
        if self._nacked and not self.held:
            self._nacked.clear()

    def _check_alive(self, start: float) -> None:
        if time.monotonic() - max(start, self.heard) > self.timeout:
            raise ProtocolError(f"{self.describe} stopped answering (no acknowledgement for {self.timeout:g} s; "
                                f"{len(self.unacked)} message(s) unacknowledged)")
