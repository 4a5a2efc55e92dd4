"""The SpiNNaker 2 board's UDP datagram format (docs/formats/spinnaker2-udp.md): header, CRC, message types and
their payloads. Both ends (nmcompile.runtime.udp_channel on the host and in the emulated board) use these
functions.

    raw = pack(Kind.SPIKES, session, seq, ack, spikes_payload(step, keys, LAST))
    datagram = unpack(raw)                 # ProtocolError for a wrong magic, version, length or CRC
    packer = RecordPacker(send)            # spike records of many steps into as few datagrams as they fit
    for record in step_records(step, keys, width): packer.add(record)
    for step, output, flags, keys in parse_records(datagram.payload): ...

Every datagram: a 22-byte header (magic, version, kind, session, seq, ack, payload length, CRC-32) and a payload of
at most MAX_PAYLOAD bytes, so a datagram fits one Ethernet frame (1500-byte MTU - 20 IP - 8 UDP = 1472 bytes).
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from nmcompile.errors import BoardError

MAGIC = 0x5332                      # "2S" little endian: SpiNNaker 2
VERSION = 2                         # 2: several spike records per datagram, bitmap records
HEADER = struct.Struct("<HBBIIIHI")
MAX_DATAGRAM = 1472
MAX_PAYLOAD = MAX_DATAGRAM - HEADER.size
SPIKE_HEADER = struct.Struct("<IBBH")       # step, output index, flags, count
MAX_KEYS = (MAX_PAYLOAD - SPIKE_HEADER.size) // 4
LAST = 0x01                                  # flags: the last fragment of a step
VALUES = 0x02                                # flags: signed 32-bit values per neuron, not spike indices
BITMAP = 0x04                                # flags: count bytes of a bitmap (key k: byte k // 8, bit k % 8), not keys
LOAD_HEADER = struct.Struct("<II")           # offset, total size
SACK_WORDS = 1                               # ACK payload: a 32-bit bitmap of seqs ack+1..ack+32 received


class Kind(enum.IntEnum):
    """Message kinds; the reliable ones take a sequence number, ACK and NACK do not."""

    HELLO = 0x01          # host -> board: start a session (payload: window u16); answered by INFO
    LOAD = 0x02           # host -> board: a piece of the network blob (offset, total, bytes)
    LOAD_END = 0x03       # host -> board: the blob is complete (payload: its sha256); answered by LOADED
    RESET = 0x04          # host -> board: start a sample from the initial state
    SPIKES = 0x05         # host -> board: input spikes of one step (keys = input channels)
    STATS = 0x06          # host -> board: ask for the board's counters; answered by COUNTERS
    ACK = 0x80            # either way: `ack` = every seq below it received; payload: SACK bitmap
    NACK = 0x81           # either way: re-request the listed seqs (u32 each)
    INFO = 0x82           # board -> host: boot id u32, window u16, max keys u16
    LOADED = 0x83         # board -> host: PEs u16, chips u16, input size u32
    OUTPUT = 0x85         # board -> host: output spikes (or readout values) of one step
    COUNTERS = 0x86       # board -> host: JSON object of counters
    ERROR = 0xFF          # board -> host: a UTF-8 line


UNSEQUENCED = frozenset({Kind.ACK, Kind.NACK})


class ProtocolError(BoardError):
    """A datagram is malformed or corrupt, or a board broke the protocol or stopped answering."""


class VersionMismatch(ProtocolError):
    """A datagram with this protocol's magic but another version byte (magic and version keep their place in every
    version). `intact`: its CRC checks under this version's header layout, so it is not a corrupted datagram of this
    version (a flipped version byte fails the CRC)."""

    def __init__(self, version: int, session: int | None, intact: bool):
        super().__init__(f"a datagram of protocol version {version}; this end speaks version {VERSION}")
        self.version, self.session, self.intact = version, session, intact


@dataclass(frozen=True)
class Datagram:
    kind: int
    session: int
    seq: int
    ack: int
    payload: bytes


def pack(kind: int, session: int, seq: int, ack: int, payload: bytes = b"") -> bytes:
    """A datagram; the CRC-32 (zlib's, IEEE 802.3) covers the header with a zero CRC field and the payload."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    header = HEADER.pack(MAGIC, VERSION, kind, session, seq, ack, len(payload), 0)
    crc = zlib.crc32(payload, zlib.crc32(header))
    return header[:-4] + struct.pack("<I", crc) + payload


def _crc_checks(raw: bytes) -> bool:
    zeroed = raw[:HEADER.size - 4] + b"\0\0\0\0"
    return zlib.crc32(raw[HEADER.size:], zlib.crc32(zeroed)) == struct.unpack_from("<I", raw, HEADER.size - 4)[0]


def unpack(raw: bytes) -> Datagram:
    """The datagram in `raw`; ProtocolError when it is short, foreign, of a wrong length or fails its CRC,
    VersionMismatch (a ProtocolError) when it has this protocol's magic and another version."""
    if len(raw) >= 3 and struct.unpack_from("<H", raw)[0] == MAGIC and raw[2] != VERSION:
        whole = len(raw) >= HEADER.size
        raise VersionMismatch(raw[2], struct.unpack_from("<I", raw, 4)[0] if len(raw) >= 8 else None,
                              whole and _crc_checks(raw))
    if len(raw) < HEADER.size:
        raise ProtocolError(f"a datagram of {len(raw)} bytes is shorter than the header")
    magic, _, kind, session, seq, ack, length, _ = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise ProtocolError(f"not a SpiNNaker 2 datagram (magic {magic:#06x})")
    if length != len(raw) - HEADER.size:
        raise ProtocolError(f"a datagram says {length} payload bytes but holds {len(raw) - HEADER.size}")
    if not _crc_checks(raw):
        raise ProtocolError("a datagram failed its CRC")
    return Datagram(kind, session, seq, ack, bytes(raw[HEADER.size:]))


def spikes_payload(step: int, keys: np.ndarray, flags: int, output: int = 0) -> bytes:
    """SPIKES/OUTPUT payload: step u32, output index u8, flags u8, count u16, then count u32 keys (or i32 values)."""
    keys = np.asarray(keys)
    dtype = "<i4" if flags & VALUES else "<u4"
    return SPIKE_HEADER.pack(step, output, flags, len(keys)) + keys.astype(dtype).tobytes()


def parse_spikes(payload: bytes) -> tuple[int, int, int, np.ndarray]:
    """(step, output index, flags, keys or values as int64) of a payload holding exactly one record."""
    records = parse_records(payload)
    if len(records) != 1:
        raise ProtocolError(f"a spike payload holds {len(records)} records, expected one")
    return records[0]


def parse_records(payload: bytes) -> list[tuple[int, int, int, np.ndarray]]:
    """Every spike record of a SPIKES/OUTPUT payload, in order: (step, output index, flags, keys as int64; a
    bitmap record's set bits as keys, a VALUES record's signed values)."""
    records, offset = [], 0
    while offset < len(payload) or not records:
        if len(payload) - offset < SPIKE_HEADER.size:
            raise ProtocolError(f"a spike record of {len(payload) - offset} bytes is shorter than its header")
        step, output, flags, count = SPIKE_HEADER.unpack_from(payload, offset)
        start = offset + SPIKE_HEADER.size
        size = count if flags & BITMAP else 4 * count
        if start + size > len(payload):
            raise ProtocolError(f"a spike record says {count} {'bitmap bytes' if flags & BITMAP else 'keys'} but "
                                f"{len(payload) - start} bytes are left")
        if flags & BITMAP:
            bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8, count=count, offset=start), bitorder="little")
            keys = np.flatnonzero(bits).astype(np.int64)
        else:
            dtype = "<i4" if flags & VALUES else "<u4"
            keys = np.frombuffer(payload, dtype=dtype, count=count, offset=start).astype(np.int64)
        records.append((step, output, flags, keys))
        offset = start + size
    return records


def fragments(step: int, keys: np.ndarray, flags: int = 0, output: int = 0) -> list[bytes]:
    """The records carrying one step's keys: MAX_KEYS per record, LAST on the final one (always at least one,
    so an empty step is sent and acknowledged too)."""
    keys = np.asarray(keys)
    pieces = [keys[k:k + MAX_KEYS] for k in range(0, len(keys), MAX_KEYS)] or [keys]
    return [spikes_payload(step, piece, flags | (LAST if k == len(pieces) - 1 else 0), output)
            for k, piece in enumerate(pieces)]


def step_records(step: int, keys: np.ndarray, width: int, output: int = 0) -> list[bytes]:
    """One step's spike records for keys below `width`: one bitmap record of ceil(width / 8) bytes when that is
    smaller than 4 bytes per key and fits a datagram, else the key records of `fragments`."""
    keys = np.asarray(keys, dtype=np.int64)
    size = (width + 7) // 8
    if size < 4 * len(keys) and SPIKE_HEADER.size + size <= MAX_PAYLOAD:
        bits = np.zeros(8 * size, dtype=np.uint8)
        bits[keys] = 1
        return [SPIKE_HEADER.pack(step, output, LAST | BITMAP, size) + np.packbits(bits, bitorder="little").tobytes()]
    return fragments(step, keys, 0, output)


class RecordPacker:
    """Spike records appended to a payload while it stays within MAX_PAYLOAD; a full payload (or `flush`) goes to
    `send(payload)`. Records never straddle datagrams."""

    def __init__(self, send):
        self.send = send
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, record: bytes) -> None:
        if self.size + len(record) > MAX_PAYLOAD:
            self.flush()
        self.parts.append(record)
        self.size += len(record)

    def flush(self) -> None:
        if self.parts:
            payload = b"".join(self.parts)
            self.parts, self.size = [], 0
            self.send(payload)


def pack_files(files: dict[str, bytes]) -> bytes:
    """The network blob LOAD carries: per file, name length u16, UTF-8 name, size u32, bytes."""
    out = bytearray()
    for name, data in sorted(files.items()):
        encoded = name.encode()
        out += struct.pack("<H", len(encoded)) + encoded + struct.pack("<I", len(data)) + data
    return bytes(out)


def unpack_files(blob: bytes) -> dict[str, bytes]:
    files, k = {}, 0
    while k < len(blob):
        if k + 2 > len(blob):
            raise ProtocolError("the network blob is truncated")
        (n,) = struct.unpack_from("<H", blob, k)
        name = blob[k + 2:k + 2 + n].decode(errors="replace")
        k += 2 + n
        if k + 4 > len(blob):
            raise ProtocolError("the network blob is truncated")
        (size,) = struct.unpack_from("<I", blob, k)
        if "/" in name or name.startswith(".") or k + 4 + size > len(blob):
            raise ProtocolError(f"the network blob holds a bad entry {name!r}")
        files[name] = blob[k + 4:k + 4 + size]
        k += 4 + size
    return files
