"""The UART frame format of the FPGA emulator (docs/formats/fpga-uart.md): frames, CRC, commands, memory regions,
spike bitmaps.

    frame(Command.RUN, struct.pack("<I", steps))      # sync, command, length, payload, CRC
    split_frames(program_bin)                        # the validated frames of a byte stream
    write_frames(Region.SYN, 0, data)                # WRITE frames loading a memory region

The compiler writes program.bin with these functions (nmcompile.backends.fpga.emit); the host runtime
(nmcompile.runtime.fpga_link) sends and parses the same frames over a serial port, a pty or pipes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import numpy as np

from nmcompile.errors import BoardError

SYNC_HOST, SYNC_CORE = 0xA5, 0x5A
MAX_PAYLOAD = 0xFFFF
VERSION = 3                 # INFO's version: 3 accepts INJECT during a STREAM; 2 buffers a WRITE until its CRC checks
WRITE_MAX_BYTES = 1024      # data bytes of one WRITE frame (the host interface's buffer, nmc_host.v WRITE_BYTES)


class Command(enum.IntEnum):
    INFO = 0x01
    WRITE = 0x02
    READ = 0x03
    RESET = 0x04
    INJECT = 0x05
    RUN = 0x06
    STREAM = 0x07


class Reply(enum.IntEnum):
    SPIKES = 0x86
    DONE = 0x87
    ERROR = 0xFF


class Region(enum.IntEnum):
    SYN = 0
    PARAM = 1
    INIT = 2
    PROJ = 3
    CONST = 4
    CONFIG = 5
    STATE = 6
    TRACE = 7


WORD_BYTES = {Region.SYN: 1, Region.PARAM: 13, Region.INIT: 6, Region.PROJ: 24, Region.CONST: 4, Region.CONFIG: 4,
              Region.STATE: 7, Region.TRACE: 1}
STATUS = {1: "CRC mismatch", 2: "unknown command", 3: "bad length", 4: "bad region or address",
          5: "input queue full", 6: "not accepted while a stream runs"}
STREAM_DONE = struct.Struct("<IQIQ")   # DONE of a STREAM: steps, engine cycles, input steps queued, clock cycles


class ProtocolError(BoardError):
    """A byte stream is not valid frames, or the board answered with an error, garbage or not at all."""


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def frame(command: int, payload: bytes = b"", sync: int = SYNC_HOST) -> bytes:
    """A frame: sync, command, length (2 bytes LE), payload, CRC of command + length + payload (2 bytes LE)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes([command]) + struct.pack("<H", len(payload)) + payload
    return bytes([sync]) + body + struct.pack("<H", crc16(body))


def split_frames(stream: bytes, sync: int = SYNC_HOST) -> list[bytes]:
    """The frames of a byte stream such as program.bin (validated)."""
    frames, k = [], 0
    while k < len(stream):
        if stream[k] != sync or k + 4 > len(stream):
            raise ProtocolError(f"byte {k}: not the start of a frame")
        length = struct.unpack_from("<H", stream, k + 2)[0]
        end = k + 4 + length + 2
        if end > len(stream):
            raise ProtocolError(f"byte {k}: frame of {length} payload bytes is truncated")
        body = stream[k + 1:end - 2]
        if crc16(body) != struct.unpack_from("<H", stream, end - 2)[0]:
            raise ProtocolError(f"byte {k}: CRC mismatch")
        frames.append(stream[k:end])
        k = end
    return frames


def write_frames(region: Region, start: int, data: bytes, chunk_words: int | None = None) -> list[bytes]:
    """WRITE frames for `data` (whole words of the region) from word address `start`, each with at most
    WRITE_MAX_BYTES data bytes (default: as many whole words as fit)."""
    size = WORD_BYTES[region]
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes are not whole {size}-byte words of region {region.name}")
    chunk_words = WRITE_MAX_BYTES // size if chunk_words is None else chunk_words
    if not 1 <= chunk_words * size <= WRITE_MAX_BYTES:
        raise ValueError(f"{chunk_words} words of {size} bytes exceed a WRITE frame's {WRITE_MAX_BYTES} data bytes")
    frames = []
    words = len(data) // size
    for first in range(0, words, chunk_words):
        part = data[first * size:(first + min(chunk_words, words - first)) * size]
        addr = start + first
        frames.append(frame(Command.WRITE, bytes([region]) + addr.to_bytes(3, "little") + part))
    return frames


@dataclass
class Info:
    """The payload of the answer to INFO: the sizes of the built design."""

    version: int
    neurons: int
    in_words: int
    syn_depth: int
    projections: int
    trace_depth: int
    queue_steps: int

    FORMAT = "<BxHHIHHH"

    @classmethod
    def unpack(cls, payload: bytes) -> Info:
        if len(payload) != struct.calcsize(cls.FORMAT):
            raise ProtocolError(f"INFO answer of {len(payload)} bytes (expected {struct.calcsize(cls.FORMAT)})")
        return cls(*struct.unpack(cls.FORMAT, payload))


def pack_inputs(inputs: np.ndarray, in_words: int) -> bytes:
    """[T, channels] 0/1 -> T bitmaps of 4 * in_words bytes (channel c: byte c // 8, bit c % 8)."""
    steps, channels = inputs.shape
    bits = np.zeros((steps, 32 * in_words), dtype=np.uint8)
    bits[:, :channels] = inputs != 0
    return np.packbits(bits, axis=1, bitorder="little").tobytes()


def unpack_outputs(frames: list[bytes], out_len: int) -> np.ndarray:
    """The output bitmaps of SPIKES frames (one per step) -> [T, out_len] 0/1."""
    if not frames:
        return np.zeros((0, out_len), dtype=np.int64)
    data = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), -1)
    return np.unpackbits(data, axis=1, bitorder="little")[:, :out_len].astype(np.int64)
