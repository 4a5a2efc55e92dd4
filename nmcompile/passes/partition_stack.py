"""Stacked layout for networks of convolution layers: every core holds one tile of each layer, the tiles of a core
covering the same region of the image. A neuron-bound layer (few synapses per neuron) and a memory-bound one (many)
then share every core in the proportion of their sizes, which first-fit packing of per-layer maximal tiles does not
reach, and a spike mostly meets its targets in its own core (receptive fields overlap their own region).

A grid of k_c channel slices and g_1 x ... x g_d cells gives k_c prod(g) cores; along an axis of extent n (a layer's
channels or one of its spatial axes) slice i spans [round(i n / g), round((i + 1) n / g)), so every layer is cut at
the same relative positions. Grids are tried by increasing core count, from `lowest` up to one below the count to
beat: first a quick necessary test (neurons per core exactly, memory from each layer's fewest synapses per neuron),
then every tile measured by the partitioner's cost model, routes (fan-out) counted once all tiles are placed.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from nmcompile.lowered.boxes import distinct
from nmcompile.passes.partition_bound import layer_floor
from nmcompile.passes.partition_mapping import FAN_OUT, Tile

MEASURED = 12              # grids measured tile by tile at most (each passed the quick test)


def stacked_layout(costs: dict, projs: dict, lowest: int, beat: int) -> tuple[list[Tile], int] | None:
    """Tiles (core = grid cell) of the fewest-core grid below `beat` cores whose every core fits, else None. Only
    for networks whose every layer is fed by a convolution and has the same number of spatial axes."""
    layers = list(costs.values())
    if len(layers) < 2 or len({len(c.shape) for c in layers}) != 1 or len(layers[0].shape) < 2:
        return None
    if not all(any(p.form == "conv" for p in c.projs) for c in layers):
        return None
    cap = np.min([c.capacity for c in layers], axis=0)
    per_neuron = [_floor_bits(c) for c in layers]
    extents = [max(c.shape[a] for c in layers) for a in range(len(layers[0].shape))]
    measured = 0
    for grid in _grids(extents, lowest, beat):
        cuts = [[_cuts(c.shape[a], g) for a, g in enumerate(grid)] for c in layers]
        neurons = sum(_outer([np.diff(x) for x in cut]) for cut in cuts)
        if neurons.max() > cap[0]:
            continue
        memory = sum(bits * _outer([np.diff(x) for x in cut]) for bits, cut in zip(per_neuron, cuts, strict=True))
        if memory.max() > cap[1]:
            continue
        measured += 1
        placed = _measure(layers, cuts, grid, cap)
        if placed is not None:
            return placed
        if measured >= MEASURED:
            return None
    return None


def _floor_bits(costs) -> float:
    """Memory every neuron of the layer needs at least: its fewest synapses, and its state where it shares memory."""
    fmt, target = costs.target.synapse_format, costs.target
    state = (target.neuron_state_bits + costs.ring_bits) if target.memory_shared else 0
    return layer_floor(costs)["s"] * fmt.per_synapse_bits + state


def _grids(extents: list[int], lowest: int, beat: int):
    """(k_c, g_1, ...) with lowest <= product < beat, by product, then the most even cells."""
    found = []
    for combo in itertools.product(*(range(1, n + 1) for n in extents[:-1])):
        head = math.prod(combo)
        if head >= beat:
            continue
        for last in range(max(1, math.ceil(lowest / head)), min(extents[-1], math.ceil(beat / head) - 1) + 1):
            grid = (*combo, last)
            cells = [n / g for n, g in zip(extents[1:], grid[1:], strict=True)]
            found.append((head * last, max(cells) / min(cells), grid))
    return [grid for _, _, grid in sorted(found)]


def _cuts(n: int, g: int) -> np.ndarray:
    return np.rint(np.arange(g + 1) * n / g).astype(np.int64)


def _outer(sizes: list[np.ndarray]) -> np.ndarray:
    out = sizes[0]
    for s in sizes[1:]:
        out = np.multiply.outer(out, s)
    return out


def _measure(layers: list, cuts: list, grid: tuple[int, ...], cap: np.ndarray) -> tuple[list[Tile], int] | None:
    tiles: list[Tile] = []
    cores = 0
    for cell in np.ndindex(*grid):
        here = []
        for c, cut in zip(layers, cuts, strict=True):
            box = tuple((int(x[i]), int(x[i + 1])) for x, i in zip(cut, cell, strict=True))
            if all(b > a for a, b in box):
                here.append(Tile(c.layer, [box], c.use([box], routes=False), cores, c.capacity))
        if not here:
            continue
        total = sum(t.use for t in here)
        if np.any(np.delete(total > cap, FAN_OUT)):
            return None
        tiles.extend(here)
        cores += 1
    if not cores:
        return None
    _count_routes(layers, tiles)
    per_core = np.zeros(cores)
    for t in tiles:
        per_core[t.core] += t.use[FAN_OUT]
    if per_core.max() > cap[FAN_OUT]:
        return None
    return tiles, cores


def _count_routes(layers: list, tiles: list[Tile]) -> None:
    """Per neuron, the cores holding its targets (a route each, as the partitioner counts them); into each tile's
    fan-out use."""
    costs = {c.layer: c for c in layers}
    pending: dict[str, dict[int, list[np.ndarray]]] = {}
    for t in tiles:
        for proj in costs[t.layer].projs:
            if proj.source in costs:
                for b in costs[t.layer]._proj_boxes(proj, t.boxes):
                    pending.setdefault(proj.source, {}).setdefault(t.core, []).append(proj.flat_sources(b))
    for c in layers:
        c.routes = np.zeros(int(np.prod(c.shape)), dtype=np.int64)
        for parts in pending.get(c.layer, {}).values():
            c.routes[distinct(np.concatenate(parts))] += 1
        c.has_routes = bool(c.routes.any())
    for t in tiles:
        t.use = costs[t.layer].use(t.boxes)
