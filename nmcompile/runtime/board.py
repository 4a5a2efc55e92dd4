"""Boards: where a network runs. `open_board(url)` returns a `Board` for a URL scheme.

    board = open_board("ref://")          # the reference simulator, in process
    board.load(source)                    # a Graph, an .nmir/.nir file or a compiled artifact directory
    out = board.run(spikes)               # spikes [T, B, N_in] -> [T, B, N_out]
    for chunk_out in board.stream(chunks): ...   # chunks [t, B, N_in], state kept across chunks
    board.close()

Schemes: ref:// (reference simulator), lava:// (Lava 0.10's simulator), verilator:// (the FPGA RTL;
?program=0 skips the UART programming stream, ?blank=1 starts without memory images), serial://DEVICE?baud=N (an
FPGA board or a pty). An unknown scheme is an error listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import numpy as np

from nmcompile.errors import NmcError, ShapeError, UnsupportedError


class Board(Protocol):
    latency: int

    def load(self, source: object) -> None: ...

    def run(self, spikes: np.ndarray) -> np.ndarray: ...

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class RefBoard:
    """The reference simulator as a board. Float graphs run in float64 (or float32), integer graphs and
    compiled artifacts in the integer model, unless `integer` asks to quantize first."""

    def __init__(self, integer: bool = False, precision: str = "float64"):
        self.integer = integer
        self.precision = precision
        self.latency = 0
        self._sim = None

    def load(self, source: object) -> None:
        from nmcompile.api import load_network
        from nmcompile.ir.graph import Graph
        from nmcompile.ir.simulate import Simulator

        graph = source if isinstance(source, Graph) else load_network(Path(str(source)))
        if self.integer and not graph.is_integer:
            raise UnsupportedError(
                "--integer needs a quantized network (an integer IR file or a compiled artifact); "
                "this one is float"
            )
        mode = "integer" if graph.is_integer else self.precision
        self._sim = Simulator(graph, mode)
        self.latency = graph.latency
        outputs = graph.outputs
        if len(outputs) != 1:
            raise UnsupportedError(f"boards run networks with one output; this one has {len(outputs)}")
        self._output = outputs[0]

    def _require(self):
        if self._sim is None:
            raise NmcError("no network loaded; call load() first")
        return self._sim

    def run(self, spikes: np.ndarray) -> np.ndarray:
        sim = self._require()
        spikes = _as_spike_array(spikes)
        out = sim.run(spikes).outputs[self._output]
        return out.reshape(out.shape[0], out.shape[1], -1)

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        sim = self._require()
        started = False
        for chunk in chunks:
            chunk = _as_spike_array(chunk)
            if not started:
                sim.start(chunk.shape[1])
                started = True
            out = sim.feed(chunk)[self._output]
            yield out.reshape(out.shape[0], out.shape[1], -1)

    def close(self) -> None:
        self._sim = None


def _as_spike_array(spikes: np.ndarray) -> np.ndarray:
    spikes = np.asarray(spikes)
    if spikes.ndim < 3:
        raise ShapeError(f"spikes must be [T, B, N], got an array of shape {spikes.shape}")
    return spikes


def _ref(url, options: dict[str, str]) -> RefBoard:
    return RefBoard(integer=options.get("integer") == "1", precision=options.get("precision", "float64"))


def _lava(url, options: dict[str, str]):
    from nmcompile.runtime.lava_board import LavaBoard

    return LavaBoard(states=options.get("states") == "1")


def _verilator(url, options: dict[str, str]):
    from nmcompile.runtime.fpga_board import VerilatorBoard

    return VerilatorBoard(program=options.get("program", "1") != "0", blank=options.get("blank") == "1")


def _serial(url, options: dict[str, str]):
    from nmcompile.runtime.fpga_board import SerialBoard

    if not url.path:
        raise UnsupportedError("serial:// needs a device path, e.g. serial:///dev/ttyUSB0?baud=1000000")
    return SerialBoard(url.path, baud=int(options.get("baud", 1_000_000)), program=options.get("program", "1") != "0")


BOARD_SCHEMES: dict[str, Callable] = {"ref": _ref, "lava": _lava, "verilator": _verilator, "serial": _serial}


def open_board(url: str, **options: str) -> Board:
    """Open the board a URL names, e.g. 'ref://'."""
    parsed = urlparse(url)
    if not parsed.scheme or "://" not in url:
        raise UnsupportedError(f"board {url!r} is not a URL; known schemes: "
                               + ", ".join(f"{s}://" for s in BOARD_SCHEMES))
    factory = BOARD_SCHEMES.get(parsed.scheme)
    if factory is None:
        raise UnsupportedError(f"unknown board scheme '{parsed.scheme}://'; known: "
                               + ", ".join(f"{s}://" for s in BOARD_SCHEMES))
    from urllib.parse import parse_qsl

    merged = {**dict(parse_qsl(parsed.query)), **options}
    return factory(parsed, merged)
