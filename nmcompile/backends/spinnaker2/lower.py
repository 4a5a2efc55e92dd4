"""Lower a compiled network (its `LoweredNetwork` view, partitioned) to SpiNNaker 2 PE images, placement and
routing tables (docs/formats/spinnaker2.md).

Every core of the mapping is one PE: core k sits on chip k // 152, PE k % 152; chips lie on a grid 8 wide (x =
chip % 8, y = chip // 8) and packets travel x first, then y. A PE's neurons are its tiles' neurons in mapping order.
For every source that reaches a PE (a PE, or a host source carrying 256 units of an input or bias source) the PE's
key table holds one entry and one synapse row per source unit. Target limits are checked by
`nmcompile.lowered.limits` before; what is refused here is this format's own: 256 neurons and 128 accumulator
groups per PE, 67,328 bytes of image and state per PE, router entries per chip, a readout layer that feeds a
projection (readouts output their voltage, they send no spikes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import ResourceError, UnsupportedError
from nmcompile.ir import fixed
from nmcompile.lowered import LoweredNetwork

IMAGE_MAGIC = 0x324D4E53             # "SNM2"
ROUTING_MAGIC = 0x52544E53           # "SNTR"
VERSION = 0x00010000
HEADER_WORDS = 16
NEURON_WORDS = 8
GROUP_WORDS = 4
KEY_WORDS = 4
STATE_WORDS_PER_NEURON = 6           # u, v (int64 each), refractory counter, pending reset
DATA_BYTES = 0x1F000 - 0xE900        # the PE's data region (py-spinnaker2 layout): image + working state
MAX_NEURONS = 256                    # the 8-bit unit / target index
MAX_GROUPS = 128                     # accumulator groups the kernel holds (kernel/snm2.h MAX_GROUPS)
HOST_SOURCE_BASE = 0x8000            # source ids of host sources
UNIT_BITS = 8
CHIP_COLUMNS = 8
PE_WORDS = 5                         # 152 PE bits per routing entry
LINKS = {"east": 0, "north_east": 1, "north": 2, "west": 3, "south_west": 4, "south": 5}

RESET_CODES = {"zero": 0, "subtract": 1, "none": 2}


@dataclass
class Pe:
    """One processing element: where it is, which neurons it holds, its image."""

    core: int
    chip: int
    index: int                                    # PE index on its chip
    source_id: int
    neurons: list[tuple[str, int]] = field(default_factory=list)      # (layer, flat index) per local index
    image: bytes = b""
    state_words: int = 0
    readouts: list[int] = field(default_factory=list)                 # local indices of readout neurons
    groups: list[tuple[str, int]] = field(default_factory=list)       # (projection, delay) per group

    @property
    def xy(self) -> tuple[int, int]:
        return chip_xy(self.chip)

    @property
    def name(self) -> str:
        x, y = self.xy
        return f"pe_{x}_{y}_{self.index}"


@dataclass
class HostSource:
    """256 units of an input or bias source, injected by the host."""

    source_id: int
    source: str                                   # the Input or Constant node
    first_unit: int
    units: int


@dataclass
class Spinnaker2Design:
    pes: list[Pe]
    hosts: list[HostSource]
    tables: dict[tuple[int, int], list[tuple[int, int, int, int]]]   # chip xy -> (key, mask, links, pe bits)
    where: dict[str, tuple[np.ndarray, np.ndarray]]                  # layer -> (PE list index, local index) per neuron
    inputs: dict[str, list[int]]                                      # input/constant -> host source indices
    outputs: dict[str, str]                                           # output -> layer

    @property
    def chips(self) -> list[tuple[int, int]]:
        return sorted(self.tables)


def chip_xy(chip: int) -> tuple[int, int]:
    return (chip % CHIP_COLUMNS, chip // CHIP_COLUMNS)


def lower(view: LoweredNetwork, target) -> Spinnaker2Design:
    if view.mapping is None:
        raise UnsupportedError("the spinnaker2 backend needs a partitioned network (the partition pass)")
    for p in view.projections:
        if p.source in view.layers and not view.layers[p.source].op.spiking:
            raise UnsupportedError(f"layer '{p.source}' is a non-spiking readout and feeds projection '{p.name}'; on "
                                   "spinnaker2 a readout outputs its voltage and sends no spikes")
    pes = _place(view, target)
    where = _where(view, pes)
    hosts, inputs = _host_sources(view)
    key_of = _keys(view, pes, where, hosts, inputs)
    units = {pe.source_id: len(pe.neurons) for pe in pes} | {h.source_id: h.units for h in hosts}
    tables = {name: neuron_table(layer) for name, layer in view.layers.items()}
    for k, pe in enumerate(pes):
        pe.image, pe.state_words = _image(view, pe, k, where, key_of, units, tables)
        used = len(pe.image) + 4 * pe.state_words
        if used > DATA_BYTES:
            layers = sorted({layer for layer, _ in pe.neurons})
            raise ResourceError(f"PE {pe.name} (layer {', '.join(repr(n) for n in layers)}): image and state need "
                                f"{used:,} bytes, more than the {DATA_BYTES:,} of a PE's data memory; compile with a "
                                "smaller neurons_per_core")
    tables = _routing(view, pes, hosts, target)
    outputs = {name: tap.layer for name, tap in view.outputs.items()}
    return Spinnaker2Design(pes, hosts, tables, where, inputs, outputs)


# -- placement ------------------------------------------------------------------------------------------------------
def _place(view: LoweredNetwork, target) -> list[Pe]:
    by_core: dict[int, Pe] = {}
    for tile in view.mapping.tiles:
        pe = by_core.get(tile.core)
        if pe is None:
            pe = by_core[tile.core] = Pe(tile.core, tile.core // target.cores_per_chip,
                                         tile.core % target.cores_per_chip, 0)
        shape = view.layers[tile.layer].shape
        for box in tile.boxes:
            grids = np.ix_(*(np.arange(a, b) for a, b in box))
            flat = np.sort(np.ravel_multi_index(grids, shape).reshape(-1))
            pe.neurons.extend((tile.layer, int(i)) for i in flat)
    pes = [by_core[c] for c in sorted(by_core)]
    if len(pes) >= HOST_SOURCE_BASE:
        raise ResourceError(f"the network needs {len(pes):,} PEs; spinnaker2 keys name at most {HOST_SOURCE_BASE:,} PE "
                            "sources (source ids from 0x8000 are the host's)")
    for k, pe in enumerate(pes):
        pe.source_id = k
        if len(pe.neurons) > MAX_NEURONS:
            raise ResourceError(f"PE {pe.name} holds {len(pe.neurons)} neurons; a spinnaker2 PE addresses "
                                f"{MAX_NEURONS}")
        pe.readouts = [j for j, (layer, _) in enumerate(pe.neurons) if not view.layers[layer].op.spiking]
    return pes


def _where(view: LoweredNetwork, pes: list[Pe]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    where = {name: (np.full(layer.size, -1, dtype=np.int64), np.full(layer.size, -1, dtype=np.int64))
             for name, layer in view.layers.items()}
    for k, pe in enumerate(pes):
        for local, (layer, flat) in enumerate(pe.neurons):
            where[layer][0][flat] = k
            where[layer][1][flat] = local
    for name, (pe_of, _) in where.items():
        if np.any(pe_of < 0):
            raise UnsupportedError(f"layer '{name}': the mapping places no PE for neuron {int(np.argmax(pe_of < 0))}")
    return where


def _host_sources(view: LoweredNetwork) -> tuple[list[HostSource], dict[str, list[int]]]:
    hosts: list[HostSource] = []
    inputs: dict[str, list[int]] = {}
    for source in [*view.inputs.values(), *view.constants.values()]:
        inputs[source.name] = []
        for first in range(0, source.size, 1 << UNIT_BITS):
            inputs[source.name].append(len(hosts))
            hosts.append(HostSource(HOST_SOURCE_BASE + len(hosts), source.name, first,
                                    min(1 << UNIT_BITS, source.size - first)))
    return hosts, inputs


def _keys(view, pes, where, hosts, inputs) -> dict[str, np.ndarray]:
    """Per source node (layer, input, constant): the key of every unit in flat order."""
    keys: dict[str, np.ndarray] = {}
    for name, (pe_of, local) in where.items():
        ids = np.array([pes[k].source_id for k in range(len(pes))], dtype=np.int64)
        keys[name] = (ids[pe_of] << UNIT_BITS) | local
    for name, indices in inputs.items():
        parts = [(hosts[h].source_id << UNIT_BITS) + np.arange(hosts[h].units, dtype=np.int64) for h in indices]
        keys[name] = np.concatenate(parts)
    return keys


# -- one PE's image ---------------------------------------------------------------------------------------------------
def _image(view: LoweredNetwork, pe: Pe, k: int, where, key_of, source_units: dict[int, int],
           tables: dict[str, np.ndarray]) -> tuple[bytes, int]:
    """The PE's image and its state words. Its synapses are cut from each projection's stored form (kernel, CSR or
    matrix) for the destination units this PE holds only (`Projection.effective_synapses`)."""
    n = len(pe.neurons)
    params = np.zeros((n, NEURON_WORDS), dtype=np.int64)
    for layer in {layer for layer, _ in pe.neurons}:
        local = np.array([j for j, (name, _) in enumerate(pe.neurons) if name == layer], dtype=np.int64)
        params[local] = tables[layer][[pe.neurons[j][1] for j in local.tolist()]]
    # synapses (source key, weight, group, target) of every projection into this PE's neurons
    groups: dict[tuple[str, int], int] = {}
    group_rows: list[tuple[int, int, int]] = []       # (delay, exp, ring offset)
    ring = n * STATE_WORDS_PER_NEURON
    keys, words = [], []
    layers_here = sorted({layer for layer, _ in pe.neurons})
    for p in view.projections:
        if p.dest not in layers_here:
            continue
        pe_of, local_of = where[p.dest]
        rows = np.flatnonzero(pe_of == k)                                   # destination units on this PE
        j, i, w = p.effective_synapses(rows)
        if p.delay.ndim:
            d = np.broadcast_to(p.delay, p.weights.shape)[rows[j], i].astype(np.int64)
        else:
            d = np.full(j.size, int(p.delay), dtype=np.int64)
        values, which = np.unique(d, return_inverse=True)
        for value in values.tolist():
            if (p.name, value) not in groups:
                groups[(p.name, value)] = len(group_rows)
                group_rows.append((value, p.weight_exp, ring))
                ring += (value + 1) * n
        g = np.array([groups[(p.name, v)] for v in values.tolist()], dtype=np.int64)[which.reshape(-1)]
        w = w.astype(np.int64)
        keys.append(key_of[p.source][i])
        words.append(((w & 0xFF) << 24) | ((d - 1) << 20) | (g << 8) | local_of[rows[j]])
    pe.groups = sorted(groups, key=groups.get)
    if len(group_rows) > MAX_GROUPS:
        raise ResourceError(f"PE {pe.name} needs {len(group_rows)} accumulator groups (projection x delay); a "
                            f"synapse word addresses {MAX_GROUPS}")
    key_arr = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    word_arr = np.concatenate(words) if words else np.zeros(0, dtype=np.int64)
    order = np.lexsort((word_arr & 0xFFFF, key_arr))                        # by key, then group and target
    key_arr, word_arr = key_arr[order], word_arr[order]
    # key table: per source, aligned power-of-two blocks of its units (a block's mask covers exactly its units, so
    # its row index has one entry per unit it can carry, plus one)
    blocks = [(sid, start, size) for sid in np.unique(key_arr >> UNIT_BITS).tolist()
              for start, size in unit_blocks(source_units[sid])]
    off_neurons = 4 * HEADER_WORDS
    off_groups = off_neurons + 4 * NEURON_WORDS * n
    off_keys = off_groups + 4 * GROUP_WORDS * len(group_rows)
    off_rows = off_keys + 4 * KEY_WORDS * len(blocks)
    body: list[np.ndarray] = []
    table = np.zeros((len(blocks), KEY_WORDS), dtype=np.int64)
    cursor = off_rows
    for e, (sid, start, size) in enumerate(blocks):
        first = (sid << UNIT_BITS) | start                                  # key_arr is sorted: a block is a slice
        a, b = np.searchsorted(key_arr, [first, first + size], side="left")
        units = key_arr[a:b] - first
        index = np.searchsorted(units, np.arange(size + 1), side="left").astype(np.int64)
        table[e] = (first, ~(size - 1) & 0xFFFFFFFF, cursor, cursor + 4 * (size + 1))
        body += [index, word_arr[a:b]]
        cursor += 4 * (size + 1 + int(b - a))
    header = np.zeros(HEADER_WORDS, dtype=np.int64)
    header[:13] = (IMAGE_MAGIC, VERSION, pe.source_id, n, len(group_rows), len(blocks), off_neurons, off_groups,
                   off_keys, off_rows, ring, len(pe.readouts), cursor)
    groups_arr = np.array([(d, e, r, 0) for d, e, r in group_rows], dtype=np.int64).reshape(-1, GROUP_WORDS)
    parts = [header, params.reshape(-1), groups_arr.reshape(-1), table.reshape(-1), *body]
    image = _words(np.concatenate(parts))
    assert len(image) == cursor
    return image, ring


def unit_blocks(units: int) -> list[tuple[int, int]]:
    """[0, units) as aligned power-of-two blocks (start, size), largest first: 40 -> (0, 32), (32, 8)."""
    blocks, start = [], 0
    while start < units:
        size = 1 << (units - start).bit_length() - 1
        while start % size:
            size //= 2
        blocks.append((start, size))
        start += size
    return blocks


def neuron_table(layer) -> np.ndarray:
    """[neurons, NEURON_WORDS] parameter words of every neuron of `layer` (flat order): du, dv, vth << 6, bias
    (mant << exp), flags (reset code | 4 delayed | 8 '>=' | 16 readout | refractory << 8), u_init, v_init,
    start step."""
    op = layer.op
    value = lambda a: np.broadcast_to(np.asarray(a, dtype=np.int64), layer.shape).reshape(-1)  # noqa: E731
    flags = RESET_CODES[op.reset_mode] | (4 if op.reset_timing == "delayed" else 0) | (8 if op.compare == ">=" else 0)
    flags |= (16 if not op.spiking else 0) | (int(op.refractory) << 8)
    bias = np.broadcast_to(fixed.effective_bias(op.bias_mant, op.bias_exp), layer.shape).reshape(-1).astype(np.int64)
    constant = lambda v: np.full(layer.size, v, dtype=np.int64)  # noqa: E731
    return np.stack([value(op.du), value(op.dv), value(op.vth) << fixed.VTH_SHIFT, bias, constant(flags),
                     value(op.u_init), value(op.v_init), constant(int(op.start_step))], axis=1)


def _words(values: np.ndarray) -> bytes:
    """int64 values as little-endian 32-bit words (two's complement for negative values)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < -(1 << 31) or values.max() >= 1 << 32):
        raise ResourceError("a value of the PE image does not fit 32 bits")
    return (values & 0xFFFFFFFF).astype("<u4").tobytes()


# -- routing -----------------------------------------------------------------------------------------------------------
def destinations(pes: list[Pe]) -> dict[int, list[int]]:
    """Source id -> the PEs (list indices) whose key table has an entry for it."""
    result: dict[int, list[int]] = {}
    for k, pe in enumerate(pes):
        header = np.frombuffer(pe.image[: 4 * HEADER_WORDS], dtype="<u4")
        n_keys, off_keys = int(header[5]), int(header[8])
        table = np.frombuffer(pe.image[off_keys: off_keys + 4 * KEY_WORDS * n_keys], dtype="<u4").reshape(-1, 4)
        for key in table[:, 0].tolist():
            result.setdefault(key >> UNIT_BITS, []).append(k)
    return result


def path(src: tuple[int, int], dst: tuple[int, int]) -> list[tuple[tuple[int, int], str]]:
    """Dimension-order route: (chip, outgoing link) hops from src to dst, x first."""
    hops, (x, y) = [], src
    while x != dst[0]:
        step = 1 if dst[0] > x else -1
        hops.append(((x, y), "east" if step > 0 else "west"))
        x += step
    while y != dst[1]:
        step = 1 if dst[1] > y else -1
        hops.append(((x, y), "north" if step > 0 else "south"))
        y += step
    return hops


def _routing(view, pes: list[Pe], hosts: list[HostSource], target) -> dict[tuple[int, int], list]:
    """Per chip: key/mask entries (links, PE bits), consecutive source ids with one route merged where exact."""
    routes: dict[tuple[int, int], dict[int, tuple[int, int]]] = {}
    for sid, dests in destinations(pes).items():
        origin = pes[sid].xy if sid < HOST_SOURCE_BASE else (0, 0)      # the host link is on chip (0, 0)
        for k in dests:
            pe = pes[k]
            for chip, link in path(origin, pe.xy):
                links, bits = routes.setdefault(chip, {}).get(sid, (0, 0))
                routes[chip][sid] = (links | 1 << LINKS[link], bits)
            links, bits = routes.setdefault(pe.xy, {}).get(sid, (0, 0))
            routes[pe.xy][sid] = (links, bits | 1 << pe.index)
    tables = {}
    for chip, entries in sorted(routes.items()):
        tables[chip] = _merge(entries)
        if len(tables[chip]) > target.router_entries:
            raise ResourceError(f"chip {chip} needs {len(tables[chip]):,} routing entries after merging, more than "
                                f"the {target.router_entries:,} of a {target.name} router")
    return tables


def _merge(entries: dict[int, tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """Aligned power-of-two blocks of consecutive source ids that all have the same route become one entry."""
    result = []
    ids = sorted(entries)
    k = 0
    while k < len(ids):
        sid, route = ids[k], entries[ids[k]]
        size = 1
        while (sid % (size * 2) == 0 and all(entries.get(sid + m) == route for m in range(size * 2))):
            size *= 2
        mask = (~((size << UNIT_BITS) - 1)) & 0xFFFFFFFF
        result.append((sid << UNIT_BITS, mask, route[0], route[1]))
        k += size
    return result


def routing_bytes(chip: tuple[int, int], entries: list[tuple[int, int, int, int]]) -> bytes:
    words = [ROUTING_MAGIC, VERSION, chip[0], chip[1], len(entries)]
    for key, mask, links, bits in entries:
        words += [key, mask, links] + [(bits >> (32 * w)) & 0xFFFFFFFF for w in range(PE_WORDS)]
    return np.asarray(words, dtype=np.int64).astype("<u4").tobytes()
