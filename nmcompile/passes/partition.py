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

A network of convolution layers on a target whose cores hold several layers is first given a stacked layout
(nmcompile.passes.partition_stack: one tile of each layer per core, over the same region of the image); steps 1-2
run when no stack within STACK_REACH of the lower bound fits.

Traffic = sum over source neurons of rate x number of other cores holding at least one of its targets (a spike
is sent once per destination core). Rates come from a simulation on calibration inputs, else every neuron
counts 1. The report gives the achieved cores, the lower bound max over resources of ceil(demand / capacity)
and, for comparison, a naive sequential fill (fixed slices per layer in flat order, no packing, as PACMAN-style
per-population slicing does).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from nmcompile.errors import ResourceError
from nmcompile.ir.graph import Graph
from nmcompile.lowered import Projection, lower_network
from nmcompile.lowered.boxes import Box, box_flat_indices, box_volume, distinct, flat_range_to_boxes
from nmcompile.lowered.limits import more_chips_advice
from nmcompile.lowered.network import boxes_over, neuron_cores
from nmcompile.passes import PassContext
from nmcompile.passes.partition_bound import kernel_stored, lower_bound
from nmcompile.passes.partition_index import index_bits
from nmcompile.passes.partition_mapping import FAN_OUT, RESOURCES, Mapping, Tile, _fmt
from nmcompile.passes.partition_stack import stacked_layout

WINDOW = 512                # open cores considered when packing
ASSUMED_RATE = 0.1          # spikes per neuron per step when no calibration data exists (events only)
HEADROOMS = (0.0, 0.1, 0.2, 0.3)   # memory left free in tiles of a core that layers may share (tried in turn)
SPLIT_DEPTH = 4                    # a tile is split in at most 2^4 pieces to fill room left by other layers
SEARCH_TILES = 1_000               # the headroom search runs while a layout has at most this many tiles
STACK_REACH = 1.2                  # a stacked layout (partition_stack) up to this x the lower bound is taken as is


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
        self.reserved = 0.0
        # accumulator rings per neuron: d + 1 slots for every (projection, delay d) into the layer
        self.ring_bits = fmt.ring_bits * sum(int(d) + 1 for p in projs for d in np.unique(p.delay))
        # per neuron (flat): the cores already holding its targets, i.e. the routes it needs (set before tiling)
        self.routes = np.zeros(int(np.prod(self.shape)), dtype=np.int64)
        self.has_routes = False

    def limit_neurons(self, n: int) -> None:
        """Cap this layer's tiles (used when its neurons would need more output routes than a core has)."""
        self.capacity = self.capacity.copy()
        self.capacity[0] = min(self.capacity[0], max(1, n))

    def reserve_memory(self, bits: float) -> None:
        """Keep `bits` of every core holding this layer free (for a row index counted after placement)."""
        self.reserved = max(self.reserved, bits)
        self.capacity = self.capacity.copy()
        self.capacity[1] = self.target.synapse_memory_bits - self.reserved

    def _proj_boxes(self, proj: Projection, boxes: list[Box]) -> list[Box]:
        return boxes_over(proj, self.shape, boxes)

    def use(self, boxes: list[Box], routes: bool = True) -> np.ndarray:
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
            elif rows and self.header % self.word == 0 and per_syn % self.word == 0:
                bits += rows * self.header + syn * per_syn          # whole-word rows: no padding, exact
            elif rows:
                bits += rows * math.ceil((self.header + syn / rows * per_syn) / self.word) * self.word
            fan_in += rows
            rate = self.rates.get(proj.source)
            mean_rate = float(np.mean(rate)) if rate is not None else ASSUMED_RATE
            events += syn * mean_rate
            packets += rows * mean_rate
        if self.target.memory_shared:
            bits += neurons * (self.target.neuron_state_bits + self.ring_bits)
        out = (sum(int(self.routes[box_flat_indices(b, self.shape)].sum()) for b in boxes)
               if routes and self.has_routes else 0)
        return np.array([neurons, bits, fan_in, out, events, instructions(self.target, neurons, events, packets)],
                        dtype=np.float64)

    def fits(self, use: np.ndarray, headroom: float = 0.0) -> bool:
        """Within one core's limits; with `headroom`, leaving that share of every limit free (for tiles of other
        layers on the same core)."""
        return bool(np.all(use <= self.capacity * (1.0 - headroom)))


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
                     target.fan_out_axons if target.fan_out_axons else np.inf,
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


def tile_layer(costs: Costs, headroom: float = 0.0) -> list[Tile]:
    shape = costs.shape
    n = int(np.prod(shape))
    if len(shape) == 1 or not any(p.form == "conv" for p in costs.projs):
        tiles = _tile_ranges(costs, n, headroom)
    else:
        tiles = _tile_blocks(costs, headroom)
    for t in tiles:
        t.cap = costs.capacity
    return tiles


def _tile_ranges(costs: Costs, n: int, headroom: float) -> list[Tile]:
    """Greedy maximal contiguous ranges (binary search on the end), then equal-size rebalancing."""
    shape = costs.shape
    fits = lambda a, b: costs.fits(costs.use(flat_range_to_boxes(a, b, shape)), headroom)  # noqa: E731
    ends, start = [], 0
    while start < n:
        single = costs.use(flat_range_to_boxes(start, start + 1, shape))
        if not costs.fits(single, headroom):
            if headroom and costs.fits(single):
                return _tile_ranges(costs, n, 0.0)
            raise ResourceError(f"layer '{costs.layer}': a single neuron does not fit a core of "
                                f"{costs.target.name}: {_overflow(costs, single)}")
        lo, step = start + 1, 1  # gallop: 1, 2, 4, ... neurons until a range no longer fits
        while lo < n and fits(start, min(start + 2 * step, n)):
            lo, step = min(start + 2 * step, n), step * 2
        hi = min(start + 2 * step, n) - 1 if lo < n else n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(start, mid):
                lo = mid
            else:
                hi = mid - 1
        ends.append(lo)
        start = lo
    k = len(ends)
    size = math.ceil(n / k)
    bounds = [(i * size, min((i + 1) * size, n)) for i in range(k) if i * size < n]
    balanced = [(a, b, costs.use(flat_range_to_boxes(a, b, shape))) for a, b in bounds]
    if len(balanced) == k and all(costs.fits(u, headroom) for _, _, u in balanced):
        return [Tile(costs.layer, flat_range_to_boxes(a, b, shape), u) for a, b, u in balanced]
    starts = [0, *ends[:-1]]
    return [Tile(costs.layer, flat_range_to_boxes(a, b, shape), costs.use(flat_range_to_boxes(a, b, shape)))
            for a, b in zip(starts, ends, strict=True)]


def block_sizes(n: int) -> list[int]:
    """Block lengths worth trying along an axis of length n: ceil(n / k) for every count k of blocks (each gives
    k nearly equal blocks; about 2 sqrt(n) distinct values), largest first."""
    return sorted({math.ceil(n / k) for k in range(1, n + 1)}, reverse=True)


def _block_tiles(costs: Costs, cb: int, dims: tuple[int, ...]) -> list[Tile]:
    c, spatial = costs.shape[0], costs.shape[1:]
    tiles = []
    for c0 in range(0, c, cb):
        for origin in np.ndindex(*[math.ceil(s / d) for s, d in zip(spatial, dims, strict=True)]):
            box = ((c0, min(c0 + cb, c)),
                   *((o * d, min((o + 1) * d, s)) for o, d, s in zip(origin, dims, spatial, strict=True)))
            tiles.append(Tile(costs.layer, [box], costs.use([box])))
    return tiles


def _tile_blocks(costs: Costs, headroom: float) -> list[Tile]:
    """Spatial blocks across channels: the block shape giving the fewest tiles whose every tile fits, the fewest
    source axons per neuron (the most compact block) on ties. Block lengths are ceil(length / k) along every axis,
    so the blocks of a shape are nearly equal. A candidate is first measured at the centre of the layer (a full
    receptive field: a padded border needs less), then every tile of it is checked (channel blocks differ in their
    kernels, and border neurons in their routes)."""
    shape = costs.shape
    c, spatial = shape[0], shape[1:]
    axes = [block_sizes(c), *(block_sizes(s) for s in spatial)]
    by_count: dict[int, list[tuple[int, ...]]] = {}
    for combo in itertools.product(*axes):
        count = int(np.prod([math.ceil(n / d) for n, d in zip(shape, combo, strict=True)]))
        by_count.setdefault(count, []).append(combo)
    for count in sorted(by_count):
        ranked = []
        for cb, *dims in by_count[count]:
            if cb * int(np.prod(dims)) > costs.capacity[0] * (1.0 - headroom):
                continue                      # more neurons than a core holds: no need to measure it
            box = ((0, cb), *(((s - d) // 2, (s - d) // 2 + d) for s, d in zip(spatial, dims, strict=True)))
            use = costs.use([box])
            if costs.fits(use, headroom):
                ranked.append(((use[2] / box_volume(box), -box_volume(box)), (cb, tuple(dims))))
        for _, (cb, dims) in sorted(ranked):
            tiles = _block_tiles(costs, cb, dims)
            if all(costs.fits(t.use, headroom) for t in tiles):
                return tiles
    if headroom:
        return _tile_blocks(costs, 0.0)
    single = costs.use([((0, 1), *((0, 1) for _ in spatial))])
    raise ResourceError(f"layer '{costs.layer}': a single neuron does not fit a core of {costs.target.name}: "
                        f"{_overflow(costs, single)}")


# ======================================================================================================
# packing, chips, traffic
# ======================================================================================================
class Cores:
    """Cores being filled: first fit among the last `window` open cores (all of them for most networks). Without
    `share_layers` a core holds tiles of one layer only (a target whose per-neuron costs depend on the projections
    into the layer, e.g. spinnaker2's accumulator rings, which span every neuron of a PE)."""

    def __init__(self, cap: np.ndarray, window: int = WINDOW, share_layers: bool = True):
        self.cap, self.window, self.share_layers = cap, window, share_layers
        self.loads = np.zeros((64, len(cap)))
        self.limits = np.zeros((64, len(cap)))
        self.layers: list[str] = []

    @property
    def count(self) -> int:
        return len(self.layers)

    def may_take_pieces(self, tile: Tile, pieces: int) -> bool:
        """A quick test before splitting a tile into the open cores of the window: their room, summed, holds the
        tile, and one of them holds a piece of 1/`pieces` of it."""
        lo = max(0, self.count - self.window)
        room = np.maximum(self.limits[lo:self.count] - self.loads[lo:self.count], 0)
        return bool(np.all(room.sum(axis=0) >= tile.use) and np.any(np.all(room >= tile.use / pieces, axis=1)))

    def fit(self, tile: Tile) -> int | None:
        """The first open core in the window that takes `tile`, else None."""
        own = self.cap if tile.cap is None else np.minimum(self.cap, tile.cap)
        n = self.count
        lo = max(0, n - self.window)
        if n == lo:
            return None
        fits = np.all(self.loads[lo:n] + tile.use <= np.minimum(self.limits[lo:n], own), axis=1)
        if not self.share_layers:
            fits &= np.array([layer == tile.layer for layer in self.layers[lo:n]])
        hit = np.flatnonzero(fits)
        return lo + int(hit[0]) if hit.size else None

    def put(self, tile: Tile, core: int) -> None:
        own = self.cap if tile.cap is None else np.minimum(self.cap, tile.cap)
        tile.core = core
        self.loads[core] += tile.use
        self.limits[core] = np.minimum(self.limits[core], own)

    def place(self, tile: Tile) -> None:
        core = self.fit(tile)
        if core is not None:
            self.put(tile, core)
            return
        n = self.count
        if n == len(self.loads):
            self.loads = np.concatenate([self.loads, np.zeros_like(self.loads)])
            self.limits = np.concatenate([self.limits, np.zeros_like(self.limits)])
        self.loads[n] = 0
        self.limits[n] = self.cap
        self.layers.append(tile.layer)
        self.put(tile, n)

    def fill(self, tile: Tile, costs: Costs, depth: int = SPLIT_DEPTH) -> list[Tile]:
        """Place `tile` whole in an open core, else split it in halves (along its longest axis, `depth` times at
        most) to fill the room other layers left in open cores, else open a core for it. Returns the placed
        tiles."""
        if self.share_layers and self.fit(tile) is None and self.may_take_pieces(tile, 1 << depth):
            trial = Cores(self.cap, self.window, self.share_layers)
            trial.loads, trial.limits, trial.layers = self.loads.copy(), self.limits.copy(), list(self.layers)
            pieces = trial._split_into(tile, costs, depth)
            if pieces is not None:
                self.loads, self.limits, self.layers = trial.loads, trial.limits, trial.layers
                return pieces
        self.place(tile)
        return [tile]

    def _split_into(self, tile: Tile, costs: Costs, depth: int) -> list[Tile] | None:
        core = self.fit(tile)
        if core is not None:
            self.put(tile, core)
            return [tile]
        if depth == 0 or len(tile.boxes) != 1:
            return None
        box = tile.boxes[0]
        axis = max(range(len(box)), key=lambda k: box[k][1] - box[k][0])
        a, b = box[axis]
        if b - a < 2:
            return None
        placed = []
        for lo, hi in ((a, (a + b) // 2), ((a + b) // 2, b)):
            half = tuple((lo, hi) if k == axis else r for k, r in enumerate(box))
            part = Tile(tile.layer, [half], costs.use([half]), cap=tile.cap)
            got = self._split_into(part, costs, depth - 1)
            if got is None:
                return None
            placed.extend(got)
        return placed


def pack(tiles: list[Tile], cap: np.ndarray, window: int = WINDOW, share_layers: bool = True) -> int:
    """Place `tiles` in order on fresh cores (`Cores`); returns the number of cores."""
    cores = Cores(cap, window, share_layers)
    for tile in tiles:
        cores.place(tile)
    return cores.count


def layout(costs: dict[str, Costs], projs: dict[str, list[Projection]], cap: np.ndarray, share_layers: bool,
           headroom: float = 0.0) -> tuple[list[Tile], int]:
    """Tile and place the layers from the last to the first, so that when a layer is tiled the cores holding
    the targets of each of its neurons are known: a neuron needs one route per such core, and a tile's routes
    (`fan_out`) are a resource like the others. Cores are numbered from the first layer's side at the end."""
    cores = Cores(cap, share_layers=share_layers)
    pending: dict[str, dict[int, list[np.ndarray]]] = {}   # source layer -> core -> its neurons feeding the core
    tiles: list[Tile] = []
    for name in reversed(list(costs)):
        c = costs[name]
        c.routes = np.zeros(int(np.prod(c.shape)), dtype=np.int64)
        for parts in pending.pop(name, {}).values():
            c.routes[distinct(np.concatenate(parts))] += 1
        c.has_routes = bool(c.routes.any())
        layer_tiles = [piece for t in tile_layer(c, headroom) for piece in cores.fill(t, c)]
        for t in layer_tiles:
            for proj in projs.get(name, []):
                if proj.source in costs:
                    for b in c._proj_boxes(proj, t.boxes):
                        pending.setdefault(proj.source, {}).setdefault(t.core, []).append(proj.flat_sources(b))
        tiles.extend(layer_tiles)
    n_cores = cores.count
    tiles.reverse()
    for t in tiles:
        t.core = n_cores - 1 - t.core
    return tiles, n_cores


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


def bound(costs: dict[str, Costs], target, cap: np.ndarray) -> dict[str, int]:
    """The lower bound on cores (nmcompile.passes.partition_bound), with this module's event and compute model."""
    def events_of(c: Costs) -> float:
        total = 0.0
        for proj in c.projs:
            rate = c.rates.get(proj.source)
            per = float(np.mean(rate)) if rate is not None else ASSUMED_RATE
            total += per * sum(proj.synapses(b) for b in c._proj_boxes(proj, [tuple((0, d) for d in c.shape)]))
        return total

    return lower_bound(costs, target, cap, events_of, lambda n, e: instructions(target, n, e),
                       share_layers=not target.synapse_format.ring_bits)


def _fits_ignoring_routes(c: Costs, use: np.ndarray) -> bool:
    return bool(np.all(np.delete(use, FAN_OUT) <= np.delete(c.capacity, FAN_OUT)))


def naive_fill(costs: dict[str, Costs], projs, rates, target) -> tuple[int, float, float]:
    """PACMAN-style: each layer cut in flat order into equal slices of the largest size that fits, no sharing."""
    tiles: list[Tile] = []
    core = 0
    for name, c in costs.items():
        n = int(np.prod(c.shape))
        size = n
        while size > 1 and not all(
                _fits_ignoring_routes(c, c.use(flat_range_to_boxes(a, min(a + size, n), c.shape), routes=False))
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
        core_use = np.zeros((n_cores, len(RESOURCES)))
        for t in tiles:
            core_use[t.core] += t.use
        extra = index_bits(tiles, costs, projs, where, target, n_cores)
        core_use[:, 1] += extra
        routes_over = bool(target.fan_out_axons and n_cores and fan_out.max() > target.fan_out_axons)
        memory_over = np.flatnonzero(core_use[:, 1] > cap[1])
        if not routes_over and not memory_over.size:
            break
        if routes_over:
            _limit_fan_out(tiles, costs, where, fan_out, target)
        for core in memory_over:             # reserve the index's room in the tiles of the layers on that core
            for layer in {t.layer for t in tiles if t.core == core}:
                costs[layer].reserve_memory(extra[core])
    if memory_over.size:
        worst = int(memory_over[0])
        layers = sorted({t.layer for t in tiles if t.core == worst})
        raise ResourceError(f"layer '{layers[0]}': core {worst} would need {int(core_use[worst, 1]):,} bits of "
                            f"memory with its row index, more than the {int(cap[1]):,} of a {target.name} core")
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
    mapping = Mapping(target.name, tiles, n_cores, (core_chip[-1] + 1) if core_chip else 0, core_chip, core_use, cap,
                      bound(costs, target, cap), total, chips, fan_out, bool(rates))
    if ctx.options.get("naive", True):
        cores, naive_traffic, naive_fan_out = naive_fill(costs, projs, rates, target)
        mapping.naive = {"cores": cores, "traffic": naive_traffic, "max_fan_out": naive_fan_out}
    g.mapping = mapping
    ctx.reports["partition"] = mapping
    return g


def _place(costs, projs, rates, target, cap):
    share = not target.synapse_format.ring_bits
    # a network of convolution layers: one tile of each layer per core, over the same region (partition_stack);
    # a stack within STACK_REACH of the lower bound is kept without trying the first-fit layouts
    stacked = None
    if share:
        lowest = max(bound(costs, target, cap).values())
        stacked = stacked_layout(costs, projs, lowest, math.floor(STACK_REACH * lowest) + 1)
    if stacked is not None:
        tiles, n_cores = stacked
    else:
        tiles, n_cores = layout(costs, projs, cap, share)
    # where layers share cores, tiles that leave part of a core free can take tiles of the neighbouring layers (e.g.
    # a memory-bound conv layer next to a fan-out-bound one): try a few headrooms, keep the fewest cores
    for headroom in HEADROOMS[1:] if share and stacked is None and len(tiles) <= SEARCH_TILES else ():
        other, count = layout(costs, projs, cap, share, headroom)
        if count < n_cores:
            tiles, n_cores = other, count
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
                    f"layer; {more_chips_advice(target, n_cores)}")
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
