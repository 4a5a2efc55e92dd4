"""The host side of the FPGA emulator's UART protocol: commands over a byte stream, each waiting for its answer,
and samples streamed with the input pipelined under credit flow control. The frames themselves are
`nmcompile.protocols.fpga_uart` (docs/formats/fpga-uart.md).

    link = FpgaLink(stream)              # stream: read(n) -> bytes (may return fewer), write(bytes)
    link.info()                          # sizes of the design
    link.program(program_bin)            # the frames of program.bin, one at a time
    link.reset(); link.inject(bitmaps); spikes, cycles = link.run(steps)
    spikes, cycles = link.stream_sample(inputs, in_words, out_len)    # STREAM: INJECT while the board runs
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
    STREAM_DONE,
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

MAX_SKIPPED = 4096          # bytes before a sync byte tolerated per answer (resynchronisation after line noise)
FIXED_LENGTH = {Reply.ERROR: 2, Reply.DONE: 12, Command.INFO | 0x80: 16, Command.WRITE | 0x80: 0,
                Command.RESET | 0x80: 0, Command.INJECT | 0x80: 0}


def _name(code: int) -> str:
    names = {c | 0x80: f"{c.name} answer" for c in Command}
    names.update({Reply.SPIKES: "SPIKES", Reply.DONE: "DONE", Reply.ERROR: "ERROR"})
    return f"0x{code:02x} ({names[code]})" if code in names else f"0x{code:02x}"


class FpgaLink:
    """Commands over a byte stream. Every command waits for its answer; errors raise ProtocolError.

    Every wait has a deadline a board cannot extend: one answer within `timeout` seconds, a whole RUN of S steps
    within `timeout` plus the time its S SPIKES frames take on the line (`line_rate` bytes per second; None: the
    line time is not added). A frame is checked before its payload is awaited: its code must be one the command
    can answer with, and its length the one that code has; at most MAX_SKIPPED stray bytes are skipped."""

    def __init__(self, stream, timeout: float = 30.0, line_rate: float | None = None):
        self.stream = stream
        self.timeout = timeout
        self.line_rate = line_rate
        self._buffer = bytearray()
        self._info: Info | None = None
        self.counters: dict[str, int] = {}

    # -- framing -------------------------------------------------------------------------------------------
    def _fill(self, need: int, deadline: float, waiting: str | None = None) -> None:
        while len(self._buffer) < need:
            if time.monotonic() > deadline:
                what = waiting or f"an answer ({self.timeout:g} s per answer)"
                raise ProtocolError(f"the board did not complete {what} within its deadline (got "
                                    f"{len(self._buffer)} of {need} bytes of a frame)")
            chunk = self.stream.read(max(need - len(self._buffer), 1))
            if chunk:
                self._buffer.extend(chunk)
            elif chunk is None or chunk == b"":
                time.sleep(0.0005)

    def receive(self, deadline: float | None = None, accept: dict[int, int | None] | None = None,
                waiting: str | None = None) -> tuple[int, bytes]:
        """The next frame from the board: (code, payload). `accept`: reply code -> payload length (None: any) this
        answer may have (ERROR is always accepted); a frame of another code or length is a ProtocolError naming
        it, raised before its payload is awaited."""
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        skipped = 0
        while True:
            self._fill(1, deadline, waiting)
            if self._buffer[0] == SYNC_CORE:
                break
            del self._buffer[0]                          # resynchronise on the sync byte
            skipped += 1
            if skipped > MAX_SKIPPED:
                raise ProtocolError(f"the board sent over {MAX_SKIPPED} bytes that are not frames")
        self._fill(4, deadline, waiting)
        code = self._buffer[1]
        length = struct.unpack_from("<H", self._buffer, 2)[0]
        allowed = {**(accept or {}), Reply.ERROR: 2} if accept is not None else None
        want = FIXED_LENGTH.get(code) if allowed is None else allowed.get(code, -1)
        if allowed is not None and code not in allowed:
            del self._buffer[:4]
            expected = ", ".join(_name(c) for c in allowed)
            raise ProtocolError(f"unexpected frame {_name(code)} of {length} bytes from the board (expected "
                                f"{expected})")
        if want is not None and want != -1 and length != want:
            del self._buffer[:4]
            raise ProtocolError(f"frame {_name(code)} from the board has {length} payload bytes; it must have {want}")
        self._fill(6 + length, deadline, waiting)
        body = bytes(self._buffer[1:4 + length])
        crc = struct.unpack_from("<H", self._buffer, 4 + length)[0]
        del self._buffer[:6 + length]
        if crc16(body) != crc:
            raise ProtocolError(f"frame {_name(code)} from the board failed its CRC")
        payload = body[3:]
        if code == Reply.ERROR:
            command, status = payload[0], payload[1]
            raise ProtocolError(f"the board rejected command 0x{command:02x}: {STATUS.get(status, status)}")
        return code, payload

    def transact(self, raw_frame: bytes, length: int | None = None) -> tuple[int, bytes]:
        """Send a command frame and receive its answer (code command | 0x80, payload of `length` bytes, else the
        command's fixed length)."""
        self.stream.write(raw_frame)
        expected = raw_frame[1] | 0x80
        return self.receive(accept={expected: FIXED_LENGTH.get(expected) if length is None else length})

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
            out += self.transact(frame(Command.READ, payload), length=n * size)[1]
        return bytes(out)

    def reset(self) -> None:
        self.transact(frame(Command.RESET))

    def program(self, stream: bytes) -> None:
        for raw in split_frames(stream):
            self.transact(raw)

    def inject(self, bitmaps: bytes) -> None:
        self.transact(frame(Command.INJECT, bitmaps))

    def run(self, steps: int, out_len: int | None = None) -> tuple[list[bytes], int]:
        """Run `steps` steps; returns each step's output bitmap and the engine's clock cycles for the run. With
        `out_len` (output neurons) every SPIKES frame must carry exactly that many spike bits; their step indices
        must count up by one. The whole RUN has one deadline (see the class)."""
        spikes_length = None if out_len is None else 4 + (out_len + 7) // 8
        line = 0.0 if self.line_rate is None else steps * (10 + (spikes_length or 4)) / self.line_rate
        deadline = time.monotonic() + self.timeout + line
        waiting = f"a RUN of {steps} steps ({self.timeout + line:.3g} s for the whole RUN)"
        self.stream.write(frame(Command.RUN, struct.pack("<I", steps)))
        outputs: list[bytes] = []
        first_index = None
        while True:
            code, payload = self.receive(deadline, {Reply.SPIKES: spikes_length, Reply.DONE: 12}, waiting)
            if code == Reply.SPIKES:
                if len(outputs) == steps:
                    raise ProtocolError(f"the board sent a SPIKES frame more than the {steps} steps of the RUN")
                if len(payload) < 4 or (outputs and len(payload) != 4 + len(outputs[0])):
                    raise ProtocolError(f"SPIKES frame {len(outputs)} of the RUN has {len(payload)} payload bytes, "
                                        "unlike the others")
                index = struct.unpack_from("<I", payload)[0]
                first_index = index if first_index is None else first_index
                if index != (first_index + len(outputs)) & 0xFFFFFFFF:
                    raise ProtocolError(f"SPIKES frame {len(outputs)} of the RUN carries step index {index}; expected "
                                        f"{(first_index + len(outputs)) & 0xFFFFFFFF}")
                outputs.append(payload[4:])
            else:
                done_steps, cycles = struct.unpack("<IQ", payload)
                if done_steps != steps or len(outputs) != steps:
                    raise ProtocolError(f"asked for {steps} steps, the board reported {done_steps} "
                                        f"and sent {len(outputs)} spike frames")
                return outputs, cycles

    def stream_sample(self, inputs: np.ndarray, in_words: int, out_len: int) -> tuple[np.ndarray, int]:
        """Stream one sample with STREAM: inputs [T, channels] (0/1) -> output spikes [T, out_len] and engine cycles.

        The input goes in INJECT frames while the board runs, under credit flow control: at most QSTEPS steps are
        injected and not yet answered by their SPIKES frame (a step's SPIKES frame comes after the step took its
        input from the queue, so the queue never holds more than it can), and an INJECT is sent once at least an
        eighth of the queue is free (or the rest of the sample fits), which keeps the framing small. Every frame
        has `timeout` seconds to arrive, the whole stream `timeout` per QSTEPS steps plus its line time.
        `counters` afterwards: the host's INJECT frames, input steps, answers and SPIKES frames, how often it had
        input ready but no credit (`credit_waits`), the most steps it had in flight, and the board's DONE: steps,
        input steps it queued during the stream, its clock cycles for the stream."""
        info = self.info()
        steps = inputs.shape[0]
        bitmaps = pack_inputs(inputs, in_words)
        per_step = 4 * in_words
        credit = info.queue_steps
        most = max(1, min(credit, MAX_PAYLOAD // per_step))
        batch = max(1, credit // 8)
        spikes_length = 4 + (out_len + 7) // 8
        accept = {Reply.SPIKES: spikes_length, Reply.DONE: STREAM_DONE.size, Command.INJECT | 0x80: 0}
        # deadlines a board cannot extend: each frame within `timeout`, the whole stream within what the lock-step
        # RUNs of a queue's worth each would have had (`timeout` per QSTEPS steps plus the line time both ways)
        line = 0.0 if self.line_rate is None else steps * (16 + spikes_length + per_step) / self.line_rate
        budget = self.timeout * max(1, -(-steps // credit)) + line
        end = time.monotonic() + budget
        waiting = f"a frame of a STREAM of {steps} steps ({self.timeout:g} s per frame, {budget:.3g} s in all)"
        counters = dict.fromkeys(("inject_frames", "input_steps", "inject_answers", "spikes_frames", "credit_waits",
                                  "most_in_flight"), 0)
        self.counters = counters
        outputs: list[bytes] = []
        first_index = None
        sent = 0
        pending = frame(Command.STREAM, struct.pack("<I", steps))
        while True:
            while sent < steps:
                free = credit - (sent - len(outputs))
                n = min(free, steps - sent, most)
                if n < min(batch, steps - sent):
                    counters["credit_waits"] += 1
                    break
                pending += frame(Command.INJECT, bitmaps[sent * per_step:(sent + n) * per_step])
                sent += n
                counters["inject_frames"] += 1
                counters["most_in_flight"] = max(counters["most_in_flight"], sent - len(outputs))
            if pending:
                self.stream.write(bytes(pending))
                pending = b""
            code, payload = self.receive(min(time.monotonic() + self.timeout, end), accept, waiting)
            if code == Command.INJECT | 0x80:
                counters["inject_answers"] += 1
                if counters["inject_answers"] > counters["inject_frames"]:
                    raise ProtocolError("the board answered more INJECT frames than the host sent")
            elif code == Reply.SPIKES:
                if len(outputs) == sent:
                    raise ProtocolError(f"the board sent a SPIKES frame for step {len(outputs)} of the STREAM, "
                                        f"whose input was not sent yet")
                index = struct.unpack_from("<I", payload)[0]
                first_index = index if first_index is None else first_index
                if index != (first_index + len(outputs)) & 0xFFFFFFFF:
                    raise ProtocolError(f"SPIKES frame {len(outputs)} of the STREAM carries step index {index}; "
                                        f"expected {(first_index + len(outputs)) & 0xFFFFFFFF}")
                outputs.append(payload[4:])
                counters["spikes_frames"] += 1
            else:
                done_steps, cycles, queued, clocks = STREAM_DONE.unpack(payload)
                counters.update(input_steps=sent, board_steps=done_steps, board_input_steps=queued,
                                board_clock_cycles=clocks)
                if done_steps != steps or len(outputs) != steps or queued != sent:
                    raise ProtocolError(f"a STREAM of {steps} steps: the board reported {done_steps} steps and "
                                        f"{queued} queued input steps, the host sent {sent} and received "
                                        f"{len(outputs)} spike frames")
                if counters["inject_answers"] != counters["inject_frames"]:
                    raise ProtocolError(f"the board answered {counters['inject_answers']} of "
                                        f"{counters['inject_frames']} INJECT frames before DONE")
                return unpack_outputs(outputs, out_len), cycles

    def run_sample(self, inputs: np.ndarray, in_words: int, out_len: int) -> tuple[np.ndarray, int]:
        """Run one sample lock step (INJECT a queue's worth, RUN it, repeat): inputs [T, channels] (0/1) -> output
        spikes [T, out_len] and engine cycles. `stream_sample` does the same with the input pipelined."""
        info = self.info()
        steps = inputs.shape[0]
        bitmaps = pack_inputs(inputs, in_words)
        per_step = 4 * in_words
        chunk = max(1, min(info.queue_steps, MAX_PAYLOAD // per_step))
        outputs, cycles = [], 0
        for first in range(0, steps, chunk):
            n = min(chunk, steps - first)
            self.inject(bitmaps[first * per_step:(first + n) * per_step])
            frames, used = self.run(n, out_len)
            outputs.extend(frames)
            cycles += used
        return unpack_outputs(outputs, out_len), cycles

