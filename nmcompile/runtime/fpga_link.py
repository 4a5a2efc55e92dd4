"""The host side of the FPGA emulator's UART protocol: commands over a byte stream, each waiting for its answer.
The frames themselves are `nmcompile.protocols.fpga_uart` (docs/formats/fpga-uart.md).

    link = FpgaLink(stream)              # stream: read(n) -> bytes (may return fewer), write(bytes)
    link.info()                          # sizes of the design
    link.program(program_bin)            # the frames of program.bin, one at a time
    link.reset(); link.inject(bitmaps); spikes, cycles = link.run(steps)
    link.read(Region.SYN, addr, count)

The same code drives a board on a serial port, the Verilated RTL over pipes, and the RTL over a pseudo-terminal.
"""

from __future__ import annotations

import struct
import time

import numpy as np

from nmcompile.protocols.fpga_uart import (
    MAX_PAYLOAD,
    STATUS,
    SYNC_CORE,
    WORD_BYTES,
    Command,
    Info,
    ProtocolError,
    Region,
    Reply,
    crc16,
    frame,
    pack_inputs,
    split_frames,
    unpack_outputs,
    write_frames,
)


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
            self._info = Info.unpack(payload)
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

