"""A UDP proxy that injects faults between a host and a board, to prove the protocol recovers or reports them.

    with FaultyProxy(("127.0.0.1", board_port), Faults(drop=0.1, duplicate=0.1, reorder=0.1, corrupt=0.05)) as proxy:
        open_board(f"udp://127.0.0.1:{proxy.port}")      # the host talks to the proxy as to the board
        proxy.silent = True                               # from now on the board seems to stop answering
        proxy.injected                                    # how many datagrams were dropped, duplicated, ...

Each datagram passing either way is, with the given probabilities (seeded, so a failing run repeats): dropped;
corrupted (one byte flipped, which the CRC catches); held back and sent after the next one (reordered); or sent
twice. The first host that sends to the proxy is the host; everything from the board goes to it.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
from dataclasses import dataclass


@dataclass
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    seed: int = 0


class FaultyProxy:
    def __init__(self, board: tuple[str, int], faults: Faults, host: str = "127.0.0.1"):
        self.board, self.faults = board, faults
        self.rng = random.Random(faults.seed)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind((host, 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind((host, 0))
        self.port = self.front.getsockname()[1]
        self.client: tuple[str, int] | None = None
        self.silent = False
        self.injected = {"dropped": 0, "duplicated": 0, "reordered": 0, "corrupted": 0, "forwarded": 0}
        self._held: dict[int, tuple[bytes, tuple[str, int]] | None] = {0: None, 1: None}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.front.close()
        self.back.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.front, self.back], [], [], 0.05)
            for sock in ready:
                try:
                    data, addr = sock.recvfrom(65536)
                except OSError:
                    continue
                if sock is self.front:
                    self.client = self.client or addr
                    self._pass(0, data, self.back, self.board)
                elif self.client is not None and not self.silent:
                    self._pass(1, data, self.front, self.client)

    def _pass(self, direction: int, data: bytes, out: socket.socket, to: tuple[str, int]) -> None:
        f, rng = self.faults, self.rng
        if rng.random() < f.drop:
            self.injected["dropped"] += 1
            return
        if rng.random() < f.corrupt:
            self.injected["corrupted"] += 1
            k = rng.randrange(len(data))
            data = data[:k] + bytes([data[k] ^ (1 << rng.randrange(8))]) + data[k + 1:]
        held = self._held[direction]
        if held is None and rng.random() < f.reorder:
            self.injected["reordered"] += 1
            self._held[direction] = (data, to)
            return
        self._send(out, data, to)
        if rng.random() < f.duplicate:
            self.injected["duplicated"] += 1
            self._send(out, data, to)
        if held is not None:
            self._held[direction] = None
            self._send(out, *held)

    def _send(self, out: socket.socket, data: bytes, to: tuple[str, int]) -> None:
        self.injected["forwarded"] += 1
        with contextlib.suppress(OSError):
            out.sendto(data, to)
