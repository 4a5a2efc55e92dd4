"""Placing a network's neurons on the engines of the FPGA design (nmcompile/hdl/nmc_engines.v).

Every engine updates its own neurons and delivers the synapses into them, so a step takes about as long as the
busiest engine. Layers are spread over every engine: a layer with channels (C, ...) is cut at channel boundaries
(a convolution into it then stays a convolution, with fewer output channels, on each engine; one out of it, with
fewer input channels), a flat layer into contiguous ranges. A layer stays whole on the least busy engine when it is
the output (engine 0 streams it; its range must be contiguous), when a plastic projection reads or feeds it (its
weights are read back as one block), or when it is smaller than 32 neurons per engine. Busy-ness is neurons plus
synapses into them (every source assumed active), a proxy of the step's cycles.

Engine e holds neuron slots e * N .. e * N + N - 1 (N: the largest engine's neurons, rounded up to 32); the
source index of slot s is 32 * in_words + s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from nmcompile.lowered import LoweredNetwork


@dataclass(frozen=True)
class Piece:
    """A contiguous part of a layer (flat units start .. start + size - 1) on one engine, from its slot `local`."""

    layer: str
    engine: int
    start: int
    size: int
    local: int


def synapses_into(view: LoweredNetwork, layer: str) -> np.ndarray:
    """Per neuron of `layer`: synapses into it (every projection's fan-in, zeros included)."""
    total = np.zeros(view.layers[layer].size, dtype=np.float64)
    for p in view.into(layer):
        w = p.weights
        if p.form == "conv":
            per_output = w.kernel[0].size
            total += per_output
        else:
            total += w.shape[1]
    return total


def place(view: LoweredNetwork, engines: int) -> tuple[dict[str, list[Piece]], int]:
    """The pieces of every layer and N, the neuron slots per engine (a multiple of 32)."""
    output_layers = {tap.layer for tap in view.outputs.values()}
    plastic = {name for p in view.projections if p.plastic is not None for name in (p.source, p.dest)}
    load = np.zeros(engines)
    used = np.zeros(engines, dtype=np.int64)
    pieces: dict[str, list[Piece]] = {}
    for name, layer in view.layers.items():
        cost = 1.0 + synapses_into(view, name)
        size = layer.size
        whole = engines == 1 or name in output_layers or name in plastic or size < 32 * engines
        if whole:
            cuts = [(0, size)]
        else:
            unit = int(np.prod(layer.shape[1:])) if len(layer.shape) >= 2 else 1
            count = size // unit
            parts = min(engines, count)
            bounds = [round(k * count / parts) * unit for k in range(parts + 1)]
            cuts = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        order = np.argsort(load, kind="stable")
        pieces[name] = []
        for k, (a, b) in enumerate(cuts):
            e = int(order[k])
            pieces[name].append(Piece(name, e, a, b - a, int(used[e])))
            used[e] += b - a
            load[e] += float(cost[a:b].sum())
    slots = max(32, -(-int(used.max(initial=0)) // 32) * 32)
    return pieces, slots


def busiest_share(view: LoweredNetwork, pieces: dict[str, list[Piece]], engines: int) -> float:
    """The busiest engine's share of the whole network's neurons + synapses (1 / engines at best)."""
    load = np.zeros(engines)
    for name, parts in pieces.items():
        cost = 1.0 + synapses_into(view, name)
        for piece in parts:
            load[piece.engine] += float(cost[piece.start:piece.start + piece.size].sum())
    return float(load.max() / max(load.sum(), 1.0))
