"""A misbehaving FPGA board behind a pseudo-terminal: it answers INFO, WRITE, READ, RESET and INJECT like the RTL
(docs/formats/fpga-uart.md) and misbehaves in one chosen way, mostly on RUN and STREAM (whose steps it answers as
their INJECT frames arrive).

    with FakeBoard(layout, "chatty") as board:
        nmcompile verify ART --board serial://{board.device}?timeout=2

Behaviours (BEHAVIOURS): every one must end in one `ProtocolError`/`BoardError` line on the host, within the
host's deadline, never a hang or a traceback.
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
import threading
import time
import tty

from nmcompile.protocols.fpga_uart import SYNC_CORE, SYNC_HOST, WORD_BYTES, Command, Region, Reply, frame

BEHAVIOURS = {
    "chatty": "keeps sending valid SPIKES frames after the steps asked for, never DONE",
    "slow_chatty": "sends a valid SPIKES frame every 0.3 s forever (each within the per-answer timeout)",
    "garbage": "answers RUN with an endless stream of bytes that hold no sync byte",
    "silent": "never answers RUN",
    "short_spikes": "SPIKES frames with a 2-byte payload",
    "long_spikes": "SPIKES frames one byte longer than the output needs",
    "bad_done": "a DONE frame of 5 bytes",
    "done_steps": "DONE reports one step more than asked",
    "wrong_index": "SPIKES step indices jump by two",
    "bad_crc": "SPIKES frames with a wrong CRC",
    "short_error": "answers RUN with an ERROR frame of 1 byte",
    "huge_frame": "answers RUN with a header announcing 65535 payload bytes, then stops",
    "wrong_code": "answers RESET with a READ answer",
    "info_short": "an INFO answer of 10 bytes",
    "version1": "reports host-interface version 1 (writes before the CRC check)",
    "version2": "reports host-interface version 2 (no STREAM)",
    "design": "reports a design of other sizes than the artifact's",
    "reject_write": "answers every WRITE with a CRC-mismatch ERROR",
}


IMMEDIATE = ("silent", "chatty", "slow_chatty", "garbage", "short_error", "huge_frame")   # at the start of a run


def _frame(code: int, payload: bytes = b"", crc_ok: bool = True) -> bytes:
    raw = bytearray(frame(code, payload, sync=SYNC_CORE))
    if not crc_ok:
        raw[-1] ^= 0xFF
    return bytes(raw)


class FakeBoard(threading.Thread):
    """Serves the master side of a pty; `device` is the path the host opens. Stops when closed."""

    def __init__(self, layout: dict, behaviour: str):
        super().__init__(daemon=True)
        if behaviour not in BEHAVIOURS:
            raise ValueError(behaviour)
        self.design, self.out_len = layout["design"], layout["output"]["size"]
        self.behaviour = behaviour
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.device = os.ttyname(slave)
        self._slave = slave
        self._halt = threading.Event()
        self._step = 0
        self._stream_left = self._stream_done = 0

    def __enter__(self) -> FakeBoard:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _send(self, data: bytes) -> bool:
        try:
            os.write(self.master, data)
            return True
        except OSError:
            return False

    def _frames(self):
        buffer = bytearray()
        while not self._halt.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    buffer += os.read(self.master, 65536)
                except OSError:
                    return
            while True:
                start = buffer.find(bytes([SYNC_HOST]))
                if start < 0 or len(buffer) < start + 4:
                    break
                length = struct.unpack_from("<H", buffer, start + 2)[0]
                end = start + 6 + length
                if len(buffer) < end:
                    break
                command, payload = buffer[start + 1], bytes(buffer[start + 4:end - 2])
                del buffer[:end]
                yield command, payload

    def run(self) -> None:
        for command, payload in self._frames():
            if not self._answer(command, payload):
                return

    def _answer(self, command: int, payload: bytes) -> bool:
        b = self.behaviour
        if command == Command.INFO:
            d = self.design
            version = {"version1": 1, "version2": 2}.get(b, 3)
            neurons = d["neurons"] + (32 if b == "design" else 0)
            info = struct.pack("<BxHHIHHH", version, neurons, d["in_words"], d["syn_depth"], d["projections"],
                               d["trace_depth"], d["queue_steps"])
            return self._send(_frame(0x81, info[:10] if b == "info_short" else info))
        if command == Command.WRITE:
            if b == "reject_write":
                return self._send(_frame(Reply.ERROR, bytes([Command.WRITE, 1])))
            return self._send(_frame(0x82))
        if command == Command.READ:
            region, count = Region(payload[0]), struct.unpack_from("<H", payload, 4)[0]
            return self._send(_frame(0x83, bytes(count * WORD_BYTES[region])))
        if command == Command.RESET:
            self._step = 0
            return self._send(_frame(0x83 if b == "wrong_code" else 0x84, bytes(3) if b == "wrong_code" else b""))
        if command == Command.INJECT:
            if not self._send(_frame(0x85)):
                return False
            return self._stream_steps(len(payload) // (4 * self.design["in_words"])) if self._stream_left else True
        if command == Command.RUN:
            return self._run(struct.unpack("<I", payload)[0])
        if command == Command.STREAM:
            self._stream_left, self._stream_done = struct.unpack("<I", payload)[0], 0
            if b in IMMEDIATE:
                self._stream_left = 0
                return self._run(0)
            return self._stream_steps(0)
        return self._send(_frame(Reply.ERROR, bytes([command, 2])))

    def _spikes(self, index: int, extra: int = 0, crc_ok: bool = True) -> bytes:
        return _frame(Reply.SPIKES, struct.pack("<I", index) + bytes((self.out_len + 7) // 8 + extra), crc_ok)

    def _stream_steps(self, injected: int) -> bool:
        """A STREAM's SPIKES frames for `injected` more input steps, DONE after the last one."""
        b = self.behaviour
        for _ in range(min(injected, self._stream_left)):
            n = self._stream_done
            if b == "short_spikes":
                data = _frame(Reply.SPIKES, b"\x00\x00")
            else:
                index = self._step + (2 * n if b == "wrong_index" else n)
                data = self._spikes(index, 1 if b == "long_spikes" else 0, crc_ok=b != "bad_crc")
            if not self._send(data):
                return False
            self._stream_done += 1
            self._stream_left -= 1
        if self._stream_left:
            return True
        steps = self._stream_done
        self._step += steps
        done = struct.pack("<IQIQ", steps + (1 if b == "done_steps" else 0), 1000, steps, 2000)
        return self._send(_frame(Reply.DONE, done[:5] if b == "bad_done" else done))

    def _run(self, steps: int) -> bool:
        b = self.behaviour
        if b == "silent":
            return True
        if b in ("chatty", "slow_chatty"):
            while not self._halt.is_set():
                if not self._send(self._spikes(self._step)):
                    return False
                self._step += 1
                time.sleep(0.3 if b == "slow_chatty" else 0.001)
            return False
        if b == "garbage":
            while not self._halt.is_set():
                if not self._send(bytes(range(0x60, 0xE0))):
                    return False
                time.sleep(0.001)
            return False
        if b == "short_error":
            return self._send(_frame(Reply.ERROR, b"\x06"))
        if b == "huge_frame":
            return self._send(bytes([SYNC_CORE, Reply.SPIKES, 0xFF, 0xFF]) + bytes(100))
        for k in range(steps):
            if b == "short_spikes":
                data = _frame(Reply.SPIKES, b"\x00\x00")
            else:
                index = self._step + (2 * k if b == "wrong_index" else k)
                data = self._spikes(index, 1 if b == "long_spikes" else 0, crc_ok=b != "bad_crc")
            if not self._send(data):
                return False
        self._step += steps
        done = struct.pack("<IQ", steps + (1 if b == "done_steps" else 0), 1000)
        return self._send(_frame(Reply.DONE, done[:5] if b == "bad_done" else done))
