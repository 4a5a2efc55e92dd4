"""The physical bound the simulator benchmarks print next to each time: the work a run cannot avoid, divided by the
machine's add rate.

Work = synaptic events (each nonzero input counted once per synapse it reaches: fan-out for a dense projection,
the output positions and channels whose window covers it for a convolution) + neuron updates (neurons x steps x
samples). The add rate is measured: a compiled loop adding two float32 rows of 1024 values held in L1, per core,
times the cores (what the vector units sustain; a simulator that did nothing but these adds would run at the bound).
Integer spike products add narrower values without storing each partial sum: `int16_add_rate` measures that loop
(int8 weights into int16 registers), several times the float32 rate, and integer benchmarks state their bound at it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from nmcompile.ir import arraymath
from nmcompile.ir.graph import Graph

PROJECTIONS = ("Linear", "QLinear", "Conv1d", "Conv2d", "QConv", "SparseLinear", "QPlasticLinear")


def add_rate(seconds: float = 0.3) -> tuple[float, int]:
    """(adds per second of one core, cores): the best of a few timed runs of a compiled float32 add loop."""
    import numba

    @numba.njit(nogil=True)
    def adds(acc, row, repeats):
        for _ in range(repeats):
            for j in range(acc.shape[0]):
                acc[j] += row[j]

    acc, row = np.zeros(1024, np.float32), np.full(1024, 1e-3, np.float32)
    adds(acc, row, 10)
    repeats, best = 2000, 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        adds(acc, row, repeats)
        best = max(best, repeats * acc.shape[0] / (time.perf_counter() - start))
    return best, len(os.sched_getaffinity(0))


def int16_add_rate(seconds: float = 0.3) -> tuple[float, int]:
    """(adds per second of one core, cores) of the integer product's inner loop alone: int8 weight rows of an
    L1-resident tile, sign-extended and added into int16 SIMD registers (nmcompile.ir.jit.tile_sum16, no store per
    add), every row active. On AVX2/AVX-512 machines this exceeds the float32 rate of `add_rate`, whose loop loads
    and stores its sums; the integer reference's bound uses this rate."""
    import numba

    from nmcompile.ir import jit

    @numba.njit(nogil=True)
    def adds(weight, active, out, repeats):
        for _ in range(repeats):
            jit.tile_sum16(weight, active, active.shape[0], out, 0)

    weight = np.ones((256, jit.TILE_WIDTH), np.int8)
    active, out = np.arange(256, dtype=np.int32), np.zeros(jit.TILE_WIDTH, np.int64)
    adds(weight, active, out, 10)
    repeats, best = 2000, 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        adds(weight, active, out, repeats)
        best = max(best, repeats * weight.size / (time.perf_counter() - start))
    return best, len(os.sched_getaffinity(0))


@dataclass
class Work:
    synaptic_events: int
    neuron_updates: int

    @property
    def total(self) -> int:
        return self.synaptic_events + self.neuron_updates

    def bound_seconds(self, rate: float, cores: int) -> float:
        return self.total / (rate * cores)


def work(graph: Graph, values: dict[str, np.ndarray]) -> Work:
    """Synaptic events and neuron updates of a run whose node values (`simulate(..., record=True).values`) are given."""
    events = 0
    updates = 0
    shapes = graph.shapes()
    for name, op in graph.nodes.items():
        if op.role == "neuron":
            x = values[name]
            updates += int(x.shape[0] * x.shape[1] * int(np.prod(shapes[name])))
        if op.kind not in PROJECTIONS:
            continue
        src = graph.in_edges(name)[0].src
        active = values[src] != 0
        if op.kind.endswith("Conv") or op.kind.startswith("Conv"):
            weight = op.weight
            ones = np.ones(weight.shape, dtype=np.float32)
            stride, padding, dilation = (op.stride, op.padding, op.dilation)
            if np.ndim(stride) == 0:
                stride, padding, dilation = (stride,), (padding,), (dilation,)
            flat = active.reshape(-1, *active.shape[2:]).astype(np.float32)
            for start in range(0, flat.shape[0], 256):
                events += int(arraymath.conv(flat[start:start + 256], ones, stride, padding, dilation,
                                             op.groups).sum())
        else:
            fan_out = int(shapes[name][0]) if op.kind != "SparseLinear" else None
            if fan_out is None:   # per-input fan-out of a CSR matrix
                per_input = np.bincount(op.indices, minlength=op.in_features)
                events += int((active.reshape(-1, op.in_features) * per_input).sum())
            else:
                events += int(active.sum()) * fan_out
    return Work(events, updates)


def describe(rate: float, cores: int, kind: str = "float32") -> str:
    return f"add rate {rate / 1e9:.1f} G {kind} adds/s per core x {cores} cores"
