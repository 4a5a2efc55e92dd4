"""The UART protocol of the FPGA emulator (docs/formats/fpga-uart.md): frames, CRC, commands.

    link = FpgaLink(stream)              # stream: read(n) -> bytes (may return fewer), write(bytes)
    link.info()                          # sizes of the design
    link.program(program_bin)            # the frames of program.bin, one at a time
    link.reset(); link.inject(bitmaps); spikes, cycles = link.run(steps)
    link.read(Region.SYN, addr, count)

The same code drives a board on a serial port, the Verilated RTL over pipes, and the RTL over a pseudo-terminal.
"""

from __future__ import annotations

import enum
import struct
import time
from dataclasses import dataclass

import numpy as np

from nmcompile.errors import NmcError

SYNC_HOST, SYNC_CORE = 0xA5, 0x5A
MAX_PAYLOAD = 0xFFFF


class Command(enum.IntEnum):
    INFO = 0x01
    WRITE = 0x02
    READ = 0x03
    RESET = 0x04
    INJECT = 0x05
    RUN = 0x06


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


WORD_BYTES = {Region.SYN: 1, Region.PARAM: 9, Region.INIT: 6, Region.PROJ: 24, Region.CONST: 4, Region.CONFIG: 4,
              Region.STATE: 7, Region.TRACE: 1}
STATUS = {1: "CRC mismatch", 2: "unknown command", 3: "bad length", 4: "bad region or address",
          5: "input queue full"}


class ProtocolError(NmcError):
    """The board answered with an error, garbage or not at all."""


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


def write_frames(region: Region, start: int, data: bytes, chunk_words: int = 2048) -> list[bytes]:
    """WRITE frames for `data` (whole words of the region) from word address `start`."""
    size = WORD_BYTES[region]
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes are not whole {size}-byte words of region {region.name}")
    frames = []
    words = len(data) // size
    for first in range(0, words, chunk_words):
        part = data[first * size:(first + min(chunk_words, words - first)) * size]
        addr = start + first
        frames.append(frame(Command.WRITE, bytes([region]) + addr.to_bytes(3, "little") + part))
    return frames


@dataclass
class Info:
    version: int
    neurons: int
    in_words: int
    syn_depth: int
    projections: int
    trace_depth: int
    queue_steps: int


class FpgaLink:
    """Commands over a byte stream. Every command waits for its answer; errors raise ProtocolError."""

    def __init__(self, stream, timeout: float = 30.0):
        self.stream = stream
        self.timeout = timeout
        self._buffer = bytearray()
        self._info: Info | None = None

    # -- framing -------------------------------------------------------------------------------------------
    def _fill(self, need: int, deadline: float) -> None:
        while len(self._buffer) < need:
            if time.monotonic() > deadline:
                raise ProtocolError(f"no answer from the board within {self.timeout:.0f} s "
                                    f"(got {len(self._buffer)} of {need} bytes)")
            chunk = self.stream.read(max(need - len(self._buffer), 1))
            if chunk:
                self._buffer.extend(chunk)
            elif chunk is None or chunk == b"":
                time.sleep(0.0005)

    def receive(self) -> tuple[int, bytes]:
        """The next frame from the board: (code, payload)."""
        deadline = time.monotonic() + self.timeout
        while True:
            self._fill(1, deadline)
            if self._buffer[0] == SYNC_CORE:
                break
            del self._buffer[0]                          # resynchronise on the sync byte
        self._fill(4, deadline)
        length = struct.unpack_from("<H", self._buffer, 2)[0]
        self._fill(6 + length, deadline)
        body = bytes(self._buffer[1:4 + length])
        crc = struct.unpack_from("<H", self._buffer, 4 + length)[0]
        del self._buffer[:6 + length]
        if crc16(body) != crc:
            raise ProtocolError("a frame from the board failed its CRC")
        code, payload = body[0], body[3:]
        if code == Reply.ERROR:
            command, status = payload[0], payload[1]
            raise ProtocolError(f"the board rejected command 0x{command:02x}: {STATUS.get(status, status)}")
        return code, payload

    def transact(self, raw_frame: bytes) -> tuple[int, bytes]:
        self.stream.write(raw_frame)
        code, payload = self.receive()
        expected = raw_frame[1] | 0x80
        if code != expected and raw_frame[1] != Command.RUN:
            raise ProtocolError(f"expected answer 0x{expected:02x}, got 0x{code:02x}")
        return code, payload

    # -- commands ------------------------------------------------------------------------------------------
    def info(self) -> Info:
        if self._info is None:
            _, payload = self.transact(frame(Command.INFO))
            fields = struct.unpack("<BxHHIHHH", payload)
            self._info = Info(*fields)
        return self._info

    def write(self, region: Region, start: int, data: bytes) -> None:
        for raw in write_frames(region, start, data):
            self.transact(raw)

    def read(self, region: Region, start: int, count: int) -> bytes:
        size = WORD_BYTES[region]
        out = bytearray()
        step = MAX_PAYLOAD // size
        for first in range(0, count, step):
            n = min(step, count - first)
            payload = bytes([region]) + (start + first).to_bytes(3, "little") + n.to_bytes(2, "little")
            out += self.transact(frame(Command.READ, payload))[1]
        return bytes(out)

    def reset(self) -> None:
        self.transact(frame(Command.RESET))

    def program(self, stream: bytes) -> None:
        for raw in split_frames(stream):
            self.transact(raw)

    def inject(self, bitmaps: bytes) -> None:
        self.transact(frame(Command.INJECT, bitmaps))

    def run(self, steps: int) -> tuple[list[bytes], int]:
        """Run `steps` steps; returns each step's output bitmap and the engine's clock cycles for the run."""
        self.stream.write(frame(Command.RUN, struct.pack("<I", steps)))
        outputs = []
        while True:
            code, payload = self.receive()
            if code == Reply.SPIKES:
                outputs.append(payload[4:])
            elif code == Reply.DONE:
                done_steps, cycles = struct.unpack("<IQ", payload)
                if done_steps != steps or len(outputs) != steps:
                    raise ProtocolError(f"asked for {steps} steps, the board reported {done_steps} "
                                        f"and sent {len(outputs)} spike frames")
                return outputs, cycles
            else:
                raise ProtocolError(f"unexpected frame 0x{code:02x} during RUN")

    def run_sample(self, inputs: np.ndarray, in_words: int, out_len: int) -> tuple[np.ndarray, int]:
        """Stream one sample: inputs [T, channels] (0/1) -> output spikes [T, out_len] and engine cycles."""
        info = self.info()
        steps = inputs.shape[0]
        bitmaps = pack_inputs(inputs, in_words)
        per_step = 4 * in_words
        chunk = max(1, min(info.queue_steps, MAX_PAYLOAD // per_step))
        outputs, cycles = [], 0
        for first in range(0, steps, chunk):
            n = min(chunk, steps - first)
            self.inject(bitmaps[first * per_step:(first + n) * per_step])
            frames, used = self.run(n)
            outputs.extend(frames)
            cycles += used
        return unpack_outputs(outputs, out_len), cycles


def pack_inputs(inputs: np.ndarray, in_words: int) -> bytes:
    """[T, channels] 0/1 -> T bitmaps of 4 * in_words bytes (channel c: byte c // 8, bit c % 8)."""
    steps, channels = inputs.shape
    bits = np.zeros((steps, 32 * in_words), dtype=np.uint8)
    bits[:, :channels] = inputs != 0
    return np.packbits(bits, axis=1, bitorder="little").tobytes()


def unpack_outputs(frames: list[bytes], out_len: int) -> np.ndarray:
    if not frames:
        return np.zeros((0, out_len), dtype=np.int64)
    data = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), -1)
    return np.unpackbits(data, axis=1, bitorder="little")[:, :out_len].astype(np.int64)
