"""A byte stream wrapper that injects faults on a UART link (FpgaLink's stream: read(n), write(bytes)), to prove the
host detects them and reports one error line instead of returning wrong spikes.

    stream = FaultyStream(PipeStream(proc), corrupt_read_at=500)   # flip a bit of the 500th byte from the board
    stream = FaultyStream(port, corrupt_write_at=40)               # ... of the 40th byte to the board
    stream.silent_after = 1200                                     # the board "stops answering" after 1200 bytes
"""

from __future__ import annotations


class FaultyStream:
    def __init__(self, stream, corrupt_read_at: int | None = None, corrupt_write_at: int | None = None,
                 silent_after: int | None = None):
        self.stream = stream
        self.corrupt_read_at, self.corrupt_write_at = corrupt_read_at, corrupt_write_at
        self.silent_after = silent_after
        self.read_count = self.written_count = 0

    def write(self, data: bytes) -> None:
        data = _flip(bytes(data), self.corrupt_write_at, self.written_count)
        self.written_count += len(data)
        self.stream.write(data)

    def read(self, n: int) -> bytes:
        if self.silent_after is not None and self.read_count >= self.silent_after:
            return b""
        if self.silent_after is not None:
            n = min(n, self.silent_after - self.read_count)
        data = _flip(self.stream.read(n), self.corrupt_read_at, self.read_count)
        self.read_count += len(data)
        return data


def _flip(data: bytes, at: int | None, start: int) -> bytes:
    """`data` with bit 0 of absolute byte `at` flipped when it falls inside [start, start + len)."""
    if at is None or not start <= at < start + len(data):
        return data
    k = at - start
    return data[:k] + bytes([data[k] ^ 0x01]) + data[k + 1:]
