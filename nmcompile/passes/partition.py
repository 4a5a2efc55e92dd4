"""partition: assign every neuron to a core under all limits of the target; fewest cores first, then the least
inter-core spike traffic.

1. Tile each layer. Dense layers are cut into contiguous ranges; convolution maps into spatial blocks across
   channels (a block's inputs are its receptive field, so square blocks need the fewest source axons). A tile is
   as large as one core allows in neurons, synapse memory (counted in the target's row format), fan-in axons,
   synaptic events per step and, where the target has a compute budget, instructions per step (neuron updates and
   synaptic events at their measured cost); a layer's tiles are then balanced.
2. Pack tiles into cores in dependency order, first fit among the last few open cores, so small layers share
   cores with their neighbours (their spikes then stay inside the core).
3. Fill chips one after another with cores in that order (hierarchical: neighbouring layers share a chip).

Traffic = sum over source neurons of rate x number of other cores holding at least one of its targets (a spike
is sent once per destination core). Rates come from a simulation on calibration inputs, else every neuron
counts 1. The report gives the achieved cores, the lower bound max over resources of ceil(demand / capacity)
and, for comparison, a naive sequential fill (fixed slices per layer in flat order, no packing, as PACMAN-style
per-population slicing does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import ResourceError
from nmcompile.ir.graph import Graph
from nmcompile.lowered import Projection, lower_network
from nmcompile.lowered.boxes import Box, box_volume, distinct, flat_range_to_boxes
from nmcompile.lowered.network import boxes_over, neuron_cores
from nmcompile.passes import PassContext

WINDOW = 8                  # open cores considered when packing
ASSUMED_RATE = 0.1          # spikes per neuron per step when no calibration data exists (events only)
RESOURCES = ("neurons", "memory_bits", "fan_in", "events", "instructions")


@dataclass
class Tile:
    layer: str
    boxes: list[Box]        # boxes over the layer's shape
    use: np.ndarray         # resource vector in RESOURCES order
    core: int = -1
    cap: np.ndarray | None = None  # a stricter per-core limit for this tile's layer, if any


@dataclass
class Mapping:
    """The result stored on the graph: which core holds which part of which layer, and the costs."""

    target: str
    tiles: list[Tile]
    cores: int
    chips_used: int
    core_chip: list[int]
    core_use: np.ndarray                 # [cores, len(RESOURCES)]
    capacity: np.ndarray
    lower_bound: dict[str, int]
    traffic: float
    inter_chip_traffic: float
    fan_out: np.ndarray                  # per core: (source neuron, other core) routes leaving it
    rates_measured: bool
    naive: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "target": self.target, "cores": self.cores, "chips_used": self.chips_used,
            "tiles": [{"layer": t.layer, "core": t.core, "boxes": [list(map(list, b)) for b in t.boxes]}
                      for t in self.tiles],
            "core_use": {r: self.core_use[:, k].tolist() for k, r in enumerate(RESOURCES)},
            "lower_bound": self.lower_bound, "traffic": self.traffic, "inter_chip_traffic": self.inter_chip_traffic,
            "naive": self.naive,
        }

    def lines(self) -> list[str]:
        bound = max(self.lower_bound.values())
        worst = max(self.lower_bound, key=self.lower_bound.get)
        lines = [f"{self.cores} core(s) on {self.chips_used} chip(s); lower bound {bound} ({worst}: "
                 + ", ".join(f"{k} {v}" for k, v in self.lower_bound.items()) + ")",
                 f"inter-core spike traffic {self.traffic:.6g} {'spikes/step' if self.rates_measured else 'routes'}"
                 f" (inter-chip {self.inter_chip_traffic:.6g})"
                 + ("" if self.rates_measured else "; no calibration data: every source neuron counts 1")]
        if self.naive:
            lines.append(f"naive sequential fill: {int(self.naive['cores'])} core(s), traffic "
                         f"{self.naive['traffic']:.6g}, largest fan-out {int(self.naive['max_fan_out'])} routes")
        util = self.core_use / np.maximum(self.capacity, 1)
        for k, r in enumerate(RESOURCES):
            if self.capacity[k] < np.inf and self.cores:
                lines.append(f"  {r:<12} per core: max {100 * util[:, k].max():.1f}%, "
                             f"mean {100 * util[:, k].mean():.1f}% of {_fmt(self.capacity[k])}")
        layer_cores: dict[str, set[int]] = {}
        for t in self.tiles:
            layer_cores.setdefault(t.layer, set()).add(t.core)
        for layer, cores in layer_cores.items():
            lines.append(f"  layer {layer}: cores {_ranges(sorted(cores))}")
        return lines


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:.4g}"


def _ranges(values: list[int]) -> str:
    out, start = [], None
    for k, v in enumerate(values):
        if start is None:
            start = v
        if k + 1 == len(values) or values[k + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)


# ======================================================================================================
# resources
# ======================================================================================================
class Costs:
    """Resource use of tiles of one layer on one core of the target."""

    def __init__(self, layer: str, shape, projs: list[Projection], target, rates: dict[str, np.ndarray]):
        self.layer, self.shape, self.projs, self.target = layer, tuple(shape), projs, target
        self.rates = rates
        fmt = target.synapse_format
        self.word, self.header = fmt.word_bits, fmt.per_row_header_bits
        self.capacity = capacity(target)
        # accumulator rings per neuron: d + 1 slots for every (projection, delay d) into the layer
        self.ring_bits = fmt.ring_bits * sum(int(d) + 1 for p in projs for d in np.unique(p.delay))

    def limit_neurons(self, n: int) -> None:
        """Cap this layer's tiles (used when its neurons would need more output routes than a core has)."""
        self.capacity = self.capacity.copy()
        self.capacity[0] = min(self.capacity[0], max(1, n))

    def _proj_boxes(self, proj: Projection, boxes: list[Box]) -> list[Box]:
        return boxes_over(proj, self.shape, boxes)

    def use(self, boxes: list[Box]) -> np.ndarray:
        neurons = sum(box_volume(b) for b in boxes)
        fmt = self.target.synapse_format
        bits, fan_in, events, packets = 0.0, 0, 0.0, 0.0
        for proj in self.projs:
            pboxes = self._proj_boxes(proj, boxes)
            syn = sum(proj.synapses(b) for b in pboxes)
            rows = _count_sources([proj.sources(b) for b in pboxes])
            per_syn = fmt.per_synapse_bits + (fmt.delay_bits if proj.per_synapse_delays else 0)
            if kernel_stored(proj, fmt):
                bits += proj.weights.kernel.size * fmt.kernels.weight_bits
            elif rows:
                bits += rows * math.ceil((self.header + syn / rows * per_syn) / self.word) * self.word
            fan_in += rows
            rate = self.rates.get(proj.source)
            mean_rate = float(np.mean(rate)) if rate is not None else ASSUMED_RATE
            events += syn * mean_rate
            packets += rows * mean_rate
        if self.target.memory_shared:
            bits += neurons * (self.target.neuron_state_bits + self.ring_bits)
        return np.array([neurons, bits, fan_in, events, instructions(self.target, neurons, events, packets)],
                        dtype=np.float64)

    def fits(self, use: np.ndarray) -> bool:
        return bool(np.all(use <= self.capacity))


def kernel_stored(proj: Projection, fmt) -> bool:
    """A convolution the target's cores store as its kernel (shared weights), not as synapses."""
    w = proj.weights
    return proj.form == "conv" and fmt.kernels is not None and not fmt.kernels.stores(
        w.kernel.shape, w.stride, w.padding, w.dilation, w.groups, w.in_shape, w.out_shape)


def instructions(target, neurons: float, events: float, packets: float = 0.0) -> float:
    """A core's per-tick compute: neuron updates, synaptic events and arriving packets (spikes of distinct source
    neurons) at the target's measured instruction costs (0 where the target has no compute budget)."""
    if target.instructions_per_tick is None:
        return 0.0
    return (neurons * target.instructions_per_neuron_update + events * target.instructions_per_synaptic_event
            + packets * target.instructions_per_packet)


def capacity(target) -> np.ndarray:
    return np.array([target.neurons_per_core, target.synapse_memory_bits,
                     target.fan_in_axons if target.fan_in_axons else np.inf,
                     target.events_per_tick if target.events_per_tick else np.inf,
                     target.instructions_per_tick if target.instructions_per_tick else np.inf], dtype=np.float64)


def _count_sources(parts: list) -> int:
    """Distinct source neurons of several boxes / index arrays (exact for index arrays, box union by marking)."""
    if not parts:
        return 0
    if len(parts) == 1:
        p = parts[0]
        return int(p.size) if isinstance(p, np.ndarray) else box_volume(p)
    if all(isinstance(p, np.ndarray) for p in parts):
        return int(distinct(np.concatenate(parts)).size)
    boxes = [p for p in parts if not isinstance(p, np.ndarray)]
    if len(boxes) == len(parts):
        lo = [min(b[d][0] for b in boxes) for d in range(len(boxes[0]))]
        hi = [max(b[d][1] for b in boxes) for d in range(len(boxes[0]))]
        mask = np.zeros([h - lo_ for lo_, h in zip(lo, hi, strict=True)], dtype=bool)
        for b in boxes:
            mask[tuple(slice(a - o, c - o) for (a, c), o in zip(b, lo, strict=True))] = True
        return int(mask.sum())
    return sum(p.size if isinstance(p, np.ndarray) else box_volume(p) for p in parts)


# ======================================================================================================
# tiling
# ======================================================================================================
def _overflow(costs: Costs, use: np.ndarray) -> str:
    k = int(np.argmax(use / np.maximum(costs.capacity, 1e-12)))
    return f"{RESOURCES[k].replace('_', ' ')} {_fmt(use[k])} > {_fmt(costs.capacity[k])} per core"


def tile_layer(costs: Costs) -> list[Tile]:
    shape = costs.shape
    n = int(np.prod(shape))
    if len(shape) == 1 or not any(p.form == "conv" for p in costs.projs):
        tiles = _tile_ranges(costs, n)
    else:
        tiles = _tile_blocks(costs)
    for t in tiles:
        t.cap = costs.capacity
    return tiles


def _tile_ranges(costs: Costs, n: int) -> list[Tile]:
    """Greedy maximal contiguous ranges (binary search on the end), then equal-size rebalancing."""
    shape = costs.shape
    ends, start = [], 0
    while start < n:
        single = costs.use(flat_range_to_boxes(start, start + 1, shape))
        if not costs.fits(single):
            raise ResourceError(f"layer '{costs.layer}': a single neuron does not fit a core of "
                                f"{costs.target.name}: {_overflow(costs, single)}")
        lo, step = start + 1, 1  # gallop: 1, 2, 4, ... neurons until a range no longer fits
        while lo < n and costs.fits(costs.use(flat_range_to_boxes(start, min(start + 2 * step, n), shape))):
            lo, step = min(start + 2 * step, n), step * 2
        hi = min(start + 2 * step, n) - 1 if lo < n else n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if costs.fits(costs.use(flat_range_to_boxes(start, mid, shape))):
                lo = mid
            else:
                hi = mid - 1
        ends.append(lo)
        start = lo
    k = len(ends)
    size = math.ceil(n / k)
    bounds = [(i * size, min((i + 1) * size, n)) for i in range(k) if i * size < n]
    balanced = [(a, b, costs.use(flat_range_to_boxes(a, b, shape))) for a, b in bounds]
    if len(balanced) == k and all(costs.fits(u) for _, _, u in balanced):
        return [Tile(costs.layer, flat_range_to_boxes(a, b, shape), u) for a, b, u in balanced]
    starts = [0, *ends[:-1]]
    return [Tile(costs.layer, flat_range_to_boxes(a, b, shape), costs.use(flat_range_to_boxes(a, b, shape)))
            for a, b in zip(starts, ends, strict=True)]


def _halvings(n: int) -> list[int]:
    values, v = [], n
    while v >= 1:
        values.append(v)
        v = v // 2 if v > 1 else 0
    return values


def _tile_blocks(costs: Costs) -> list[Tile]:
    """Spatial blocks across channels; the largest block shape whose every tile fits, the most compact on ties.
    A candidate is measured at the centre of the layer (a full receptive field: a padded border needs less), then
    every tile of the chosen shape is checked (channel blocks differ in their kernels)."""
    shape = costs.shape
    c, spatial = shape[0], shape[1:]
    ranked = []
    for cb in _halvings(c):
        for dims in _block_candidates(spatial):
            box = ((0, cb), *(((s - d) // 2, (s - d) // 2 + d) for s, d in zip(spatial, dims, strict=True)))
            use = costs.use([box])
            if costs.fits(use):
                volume = cb * int(np.prod(dims))
                ranked.append(((volume, -use[2] / volume), (cb, dims)))
    for _, (cb, dims) in sorted(ranked, key=lambda item: item[0], reverse=True):
        tiles = []
        for c0 in range(0, c, cb):
            for origin in np.ndindex(*[math.ceil(s / d) for s, d in zip(spatial, dims, strict=True)]):
                box = ((c0, min(c0 + cb, c)),
                       *((o * d, min((o + 1) * d, s)) for o, d, s in zip(origin, dims, spatial, strict=True)))
                tiles.append(Tile(costs.layer, [box], costs.use([box])))
        if all(costs.fits(t.use) for t in tiles):
            return tiles
    single = costs.use([((0, 1), *((0, 1) for _ in spatial))])
    raise ResourceError(f"layer '{costs.layer}': a single neuron does not fit a core of {costs.target.name}: "
                        f"{_overflow(costs, single)}")


def _block_candidates(spatial: tuple[int, ...]) -> list[tuple[int, ...]]:
    axes = [_halvings(s) for s in spatial]
    cands = set()
    for combo in np.ndindex(*[len(a) for a in axes]):
        cands.add(tuple(axes[k][i] for k, i in enumerate(combo)))
    return sorted(cands, key=lambda d: -int(np.prod(d)))


# ======================================================================================================
# packing, chips, traffic
# ======================================================================================================
def pack(tiles: list[Tile], cap: np.ndarray, window: int = WINDOW, share_layers: bool = True) -> int:
    """First fit among the last `window` open cores; returns the number of cores. Without `share_layers` a core
    holds tiles of one layer only (a target whose per-neuron costs depend on the projections into the layer, e.g.
    spinnaker2's accumulator rings, which span every neuron of a PE)."""
    loads: list[np.ndarray] = []
    limits: list[np.ndarray] = []
    layers: list[str] = []
    for tile in tiles:
        own = cap if tile.cap is None else np.minimum(cap, tile.cap)
        placed = False
        for core in range(max(0, len(loads) - window), len(loads)):
            if not share_layers and layers[core] != tile.layer:
                continue
            limit = np.minimum(limits[core], own)
            if np.all(loads[core] + tile.use <= limit):
                loads[core] = loads[core] + tile.use
                limits[core] = limit
                tile.core = core
                placed = True
                break
        if not placed:
            loads.append(tile.use.copy())
            limits.append(own)
            layers.append(tile.layer)
            tile.core = len(loads) - 1
    return len(loads)


def traffic(tiles: list[Tile], projs: dict[str, list[Projection]], costs: dict[str, Costs],
            where: dict[str, np.ndarray],
            rates: dict[str, np.ndarray], core_chip: list[int], n_cores: int):
    """(inter-core traffic, inter-chip traffic, per-core fan-out routes, (source core, destination core) links)."""
    by_core: dict[int, list[Tile]] = {}
    for t in tiles:
        by_core.setdefault(t.core, []).append(t)
    chip_of = np.asarray(core_chip, dtype=np.int64)
    total = chips = 0.0
    fan_out = np.zeros(n_cores, dtype=np.float64)
    links: set[tuple[int, int]] = set()
    for core, core_tiles in by_core.items():
        sources: dict[str, list[np.ndarray]] = {}
        for t in core_tiles:
            for proj in projs.get(t.layer, []):
                for b in costs[t.layer]._proj_boxes(proj, t.boxes):
                    sources.setdefault(proj.source, []).append(proj.flat_sources(b))
        for source, parts in sources.items():
            idx = parts[0] if len(parts) == 1 else distinct(np.concatenate(parts))
            rate = rates.get(source)
            weight = np.ones(idx.size) if rate is None else np.asarray(rate)[idx]
            src_core = where.get(source)
            if src_core is None:          # input or constant: every receiving core gets its spikes from outside
                total += float(weight.sum())
                continue
            cores_of = src_core[idx]
            remote = cores_of != core
            total += float(weight[remote].sum())
            chips += float(weight[remote & (chip_of[cores_of] != chip_of[core])].sum())
            np.add.at(fan_out, cores_of[remote], 1.0)
            links.update((int(c), core) for c in np.unique(cores_of[remote]))
    return total, chips, fan_out, links


def routing_entries(links: set[tuple[int, int]], core_chip: list[int]) -> dict[int, int]:
    """Routing entries per chip: one key/mask entry per source core whose spikes enter the chip, plus one per
    core of the chip that sends off-chip (its outgoing route)."""
    entries: dict[int, set[tuple[str, int]]] = {}
    for src, dst in links:
        a, b = core_chip[src], core_chip[dst]
        entries.setdefault(b, set()).add(("in", src))
        if a != b:
            entries.setdefault(a, set()).add(("out", src))
    return {chip: len(v) for chip, v in entries.items()}


# ======================================================================================================
# the pass
# ======================================================================================================
def measured_rates(g: Graph, ctx: PassContext) -> dict[str, np.ndarray]:
    """Mean spikes per step of every neuron (and input) on the calibration data; {} without it."""
    if ctx.calibration is None:
        return {}
    from nmcompile.ir.simulate import simulate

    x = np.asarray(ctx.calibration)
    result = simulate(g, x.astype(np.int64) if g.is_integer else x.astype(np.float64), record=True)
    rates = {}
    for name, op in g.nodes.items():
        if op.role == "neuron" and op.spiking:
            rates[name] = (result.values[name] != 0).mean(axis=(0, 1)).reshape(-1)
        elif op.kind == "Input":
            rates[name] = (x != 0).mean(axis=(0, 1)).reshape(-1)
        elif op.kind == "Constant":
            rates[name] = np.ones(int(np.prod(op.shape)))
    return rates


def layer_costs(g: Graph, target, rates) -> tuple[dict[str, Costs], dict[str, list[Projection]]]:
    view = lower_network(g)
    projs = {name: view.into(name) for name in view.layers}
    costs = {}
    for name in g.order():
        op = g.node(name)
        if op.role == "neuron":
            costs[name] = Costs(name, op.shape, projs.get(name, []), target, rates)
    return costs, projs


def lower_bound(costs: dict[str, Costs], target) -> dict[str, int]:
    cap = capacity(target)
    neurons = sum(int(np.prod(c.shape)) for c in costs.values())
    bits = 0.0
    events = 0.0
    for c in costs.values():
        full = ((0, d) for d in c.shape)
        box = tuple(full)
        for proj in c.projs:
            syn = sum(proj.synapses(b) for b in c._proj_boxes(proj, [box]))
            fmt = target.synapse_format
            bits += (proj.weights.kernel.size * fmt.kernels.weight_bits if kernel_stored(proj, fmt)
                     else syn * fmt.per_synapse_bits)
            rate = c.rates.get(proj.source)
            events += syn * (float(np.mean(rate)) if rate is not None else ASSUMED_RATE)
        if target.memory_shared:
            bits += int(np.prod(c.shape)) * (target.neuron_state_bits + c.ring_bits)
    bound = {"neurons": math.ceil(neurons / cap[0]), "memory": math.ceil(bits / cap[1])}
    if np.isfinite(cap[3]):
        bound["events"] = math.ceil(events / cap[3])
    if np.isfinite(cap[4]):
        bound["instructions"] = math.ceil(instructions(target, neurons, events) / cap[4])
    return bound


def naive_fill(costs: dict[str, Costs], projs, rates, target) -> tuple[int, float, float]:
    """PACMAN-style: each layer cut in flat order into equal slices of the largest size that fits, no sharing."""
    tiles: list[Tile] = []
    core = 0
    for name, c in costs.items():
        n = int(np.prod(c.shape))
        size = n
        while size > 1 and not all(c.fits(c.use(flat_range_to_boxes(a, min(a + size, n), c.shape)))
                                   for a in range(0, n, size)):
            size = math.ceil(size / 2) if size > 64 else size - 1
        for a in range(0, n, size):
            boxes = flat_range_to_boxes(a, min(a + size, n), c.shape)
            tiles.append(Tile(name, boxes, np.zeros(len(RESOURCES)), core))
            core += 1
    shapes = {name: c.shape for name, c in costs.items()}
    where = neuron_cores(tiles, shapes)
    chips = [k // target.cores_per_chip for k in range(core)]
    t, _, fan_out, _ = traffic(tiles, projs, costs, where, rates, chips, core)
    return core, t, float(fan_out.max()) if core else 0.0


def run(graph: Graph, ctx: PassContext) -> Graph:
    target = ctx.require_target("partition")
    g = graph.copy()
    rates = measured_rates(g, ctx)
    costs, projs = layer_costs(g, target, rates)
    cap = capacity(target)
    for _ in range(6):
        tiles, n_cores, where, core_chip, total, chips, fan_out, links = _place(costs, projs, rates, target, cap)
        if not target.fan_out_axons or not n_cores or fan_out.max() <= target.fan_out_axons:
            break
        _limit_fan_out(tiles, costs, where, fan_out, target)
    if target.fan_out_axons and n_cores and fan_out.max() > target.fan_out_axons:
        worst = int(np.argmax(fan_out))
        layers = sorted({t.layer for t in tiles if t.core == worst})
        raise ResourceError(f"layer '{layers[0]}': core {worst} would send {int(fan_out[worst])} routes, more than "
                            f"the {target.fan_out_axons} output axons of a {target.name} core")
    if target.router_entries:
        entries = routing_entries(links, core_chip)
        if entries and max(entries.values()) > target.router_entries:
            chip = max(entries, key=entries.get)
            raise ResourceError(f"chip {chip} needs {entries[chip]} routing entries, more than the "
                                f"{target.router_entries} of a {target.name} router")
    core_use = np.zeros((n_cores, len(RESOURCES)))
    for t in tiles:
        core_use[t.core] += t.use
    mapping = Mapping(target.name, tiles, n_cores, (core_chip[-1] + 1) if core_chip else 0, core_chip, core_use, cap,
                      lower_bound(costs, target), total, chips, fan_out, bool(rates))
    if ctx.options.get("naive", True):
        cores, naive_traffic, naive_fan_out = naive_fill(costs, projs, rates, target)
        mapping.naive = {"cores": cores, "traffic": naive_traffic, "max_fan_out": naive_fan_out}
    g.mapping = mapping
    ctx.reports["partition"] = mapping
    return g


def _place(costs, projs, rates, target, cap):
    tiles: list[Tile] = []
    for c in costs.values():
        tiles.extend(tile_layer(c))
    n_cores = pack(tiles, cap, share_layers=not target.synapse_format.ring_bits)
    if n_cores > target.total_cores:
        used = 0
        for t in tiles:
            used = max(used, t.core + 1)
            if used > target.total_cores:
                neurons = sum(int(np.prod(c.shape)) for c in costs.values())
                layer = int(np.prod(costs[t.layer].shape))
                raise ResourceError(
                    f"layer '{t.layer}' ({layer:,} neurons) does not fit: the network ({neurons:,} neurons) needs "
                    f"{n_cores} cores but {target.name} has {target.total_cores} ({target.cores_per_chip} per chip x "
                    f"{target.chips} chip(s), {target.neurons_per_core:,} neurons per core); cores run out at this "
                    "layer")
    core_chip = [k // target.cores_per_chip for k in range(n_cores)]
    where = neuron_cores(tiles, {name: c.shape for name, c in costs.items()})
    total, chips, fan_out, links = traffic(tiles, projs, costs, where, rates, core_chip, n_cores)
    return tiles, n_cores, where, core_chip, total, chips, fan_out, links


def _limit_fan_out(tiles: list[Tile], costs: dict[str, Costs], where, fan_out: np.ndarray, target) -> None:
    """Shrink the tiles of layers on over-subscribed cores so their neurons' routes fit."""
    for core in np.flatnonzero(fan_out > target.fan_out_axons):
        for layer in {t.layer for t in tiles if t.core == core}:
            neurons = int(np.sum(where[layer] == core))
            if neurons:
                per_neuron = fan_out[core] / neurons
                costs[layer].limit_neurons(int(target.fan_out_axons // max(per_neuron, 1.0)))
