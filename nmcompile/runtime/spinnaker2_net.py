"""A SpiNNaker 2 network on the host: PEs stepped tick by tick, spikes routed between them through the emitted
routing tables (docs/formats/spinnaker2.md).

    net = Spinnaker2Network(artifact_dir, make_pe)       # make_pe(name, image) -> a PE (ModelPe or a QEMU process)
    net.check_routes()                                    # every key reaches exactly the PEs that listen to it
    outputs = net.run(spikes)                             # {output name: [T, B, *shape]}

`ModelPe` executes a PE image in numpy with the kernel's own rules; the `qemu://` board gives each PE a QEMU
process running the kernel instead. Both see the same input records and answer with the same output records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmcompile.errors import BoardError, InputFileError
from nmcompile.ir import fixed

IMAGE_MAGIC, ROUTING_MAGIC, VERSION = 0x324D4E53, 0x52544E53, 0x00010000
LINK_STEPS = {0: (1, 0), 1: (1, 1), 2: (0, 1), 3: (-1, 0), 4: (-1, -1), 5: (0, -1)}


@dataclass
class Image:
    """A parsed PE image."""

    source_id: int
    params: np.ndarray            # [n, 8] int64
    groups: np.ndarray            # [g, 4] int64: delay, exp, ring offset, 0
    keys: np.ndarray              # [k, 4] int64: key, mask, index offset, words offset
    words: np.ndarray             # the image as int64 words (unsigned)
    state_words: int
    n_readouts: int

    @property
    def n(self) -> int:
        return int(self.params.shape[0])


def parse_image(data: bytes, name: str) -> Image:
    """Check and read an image (one-line InputFileError naming the PE for anything malformed)."""
    if len(data) < 64 or len(data) % 4:
        raise InputFileError(f"{name}: not a spinnaker2 PE image ({len(data)} bytes)")
    words = np.frombuffer(data, dtype="<u4").astype(np.int64)
    magic, version, sid, n, n_groups, n_keys, off_n, off_g, off_k, off_r, state, n_readouts, size = words[:13]
    if magic != IMAGE_MAGIC or version != VERSION:
        raise InputFileError(f"{name}: bad magic or version ({int(magic):#x}, {int(version):#x})")
    if size != len(data) or not (0 < n <= 256) or not off_n <= off_g <= off_k <= off_r <= size:
        raise InputFileError(f"{name}: inconsistent header (size {int(size)}, {int(n)} neurons)")
    signed = words.astype(np.uint32).view(np.int32).astype(np.int64)
    try:
        params = signed[off_n // 4: off_n // 4 + 8 * n].reshape(n, 8)
        groups = signed[off_g // 4: off_g // 4 + 4 * n_groups].reshape(-1, 4)
        keys = words[off_k // 4: off_k // 4 + 4 * n_keys].reshape(-1, 4)
    except ValueError:
        raise InputFileError(f"{name}: its regions do not fit the image (corrupt header)") from None
    if groups.shape[0] != n_groups or keys.shape[0] != n_keys:
        raise InputFileError(f"{name}: its regions do not fit the image (corrupt header)")
    return Image(int(sid), params, groups, keys, words, int(state), int(n_readouts))


def synapses_of(image: Image, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each key the first matching entry of the image's key table selects a run of synapse words: (index of
    the key in `keys`, group, target, weight) per synapse, only those a PE's rings can hold."""
    table, words = image.keys, image.words
    empty = np.zeros(0, dtype=np.int64)
    if keys.size == 0 or table.shape[0] == 0:
        return empty, empty, empty, empty
    hit = (keys[:, None] & table[None, :, 1]) == table[None, :, 0]
    found = np.flatnonzero(hit.any(axis=1))
    entry = table[hit.argmax(axis=1)[found]]
    unit = keys[found] & ~entry[:, 1] & 0xFFFFFFFF
    first = words[entry[:, 2] // 4 + unit]
    lengths = words[entry[:, 2] // 4 + unit + 1] - first
    starts = entry[:, 3] // 4 + first
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    row = words[offsets + np.arange(int(lengths.sum()))]
    weight = ((row >> 24) & 0xFF).astype(np.int64)
    weight = np.where(weight >= 128, weight - 256, weight)
    group, target = (row >> 8) & 0xFF, row & 0xFF
    keep = (group < image.groups.shape[0]) & (target < image.n)       # what ModelPe's rings can hold
    return np.repeat(found, lengths)[keep], group[keep], target[keep], weight[keep]


class ModelPe:
    """The PE kernel's rules in numpy: event-driven accumulation into (group, arrival step) rings, then the integer
    neuron update of docs/semantics.md for every neuron."""

    def __init__(self, image: Image):
        self.image = image
        p = image.params
        self.du, self.dv, self.vth, self.bias, flags = p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4]
        self.reset_mode = flags & 3
        self.delayed = (flags & 4) != 0
        self.ge = (flags & 8) != 0
        self.readout = (flags & 16) != 0
        self.refractory = (flags >> 8) & 0xFF
        self.u_init, self.v_init, self.start_step = p[:, 5], p[:, 6], p[:, 7]
        self.readouts = np.flatnonzero(self.readout)
        # the masks of the update, fixed per neuron
        spiking = ~self.readout
        self._spiking = spiking
        self._cleared = self.du + 1 == fixed.DECAY_UNITY
        self._subtract_pending = self.delayed & spiking & (self.reset_mode == 1)
        self._zero_pending = self.delayed & spiking & (self.reset_mode == 0)
        self._subtract_now = ~self.delayed & (self.reset_mode == 1)
        self._zero_now = ~self.delayed & (self.reset_mode == 0)
        self.reset()

    def reset(self) -> None:
        n, groups = self.image.n, self.image.groups
        self.u, self.v = self.u_init.copy(), self.v_init.copy()
        self.rc = np.zeros(n, dtype=np.int64)
        self.tick_count = 0
        self.rings = [np.zeros((int(d) + 1, n), dtype=np.int64) for d in groups[:, 0]]

    def _fire(self, v: np.ndarray) -> np.ndarray:
        return np.where(self.ge, v >= self.vth, v > self.vth)

    def receive(self, keys: np.ndarray) -> None:
        """Spikes emitted in the previous tick: add each synapse's weight to its group's slot of arrival."""
        image, t = self.image, self.tick_count - 1
        _, group, target, weight = synapses_of(image, np.asarray(keys, dtype=np.int64))
        n = image.n
        for g in np.flatnonzero(np.bincount(group)).tolist():
            sel = group == g
            delay = int(image.groups[g, 0])
            # integer sums through float64 bincount: exact, |sum| <= 128 * synapses < 2**53
            self.rings[g][(t + delay) % (delay + 1)] += np.bincount(target[sel], weights=weight[sel],
                                                                     minlength=n)[:n].astype(np.int64)

    def arrived(self) -> np.ndarray:
        """The input of this tick: every group's slot, scaled by its exponent and summed per neuron; the slots are
        cleared."""
        t = self.tick_count
        a = np.zeros(self.image.n, dtype=np.int64)
        for g, (delay, exp, _, _) in enumerate(self.image.groups.tolist()):
            slot = self.rings[g][t % (delay + 1)]
            a += fixed.floor_shift(slot, exp)
            slot[:] = 0
        return a

    def update(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One tick: (fired local indices, readout voltages, u, v). A neuron before its start step keeps its state
        and drops its input (the slots are cleared all the same)."""
        t = self.tick_count
        a = self.arrived()
        u_before, v_before, rc_before = self.u, self.v, self.rc
        drive = np.left_shift(a, fixed.ACT_SHIFT)
        u = np.where(self._cleared, drive, fixed.decay(self.u, self.du + 1) + drive)
        self.u = fixed.wrap_current(u)
        v = fixed.decay(self.v, self.dv) + self.u + self.bias
        pending = self._fire(self.v)                  # fired last tick: a delayed reset applies now
        v = np.where(pending & self._subtract_pending, v - self.vth, v)
        v = np.where(pending & self._zero_pending, 0, v)
        v = fixed.clip_voltage(v)
        held = self.rc > 0
        v = np.where(held & self._spiking, 0, v)
        fired = self._fire(v) & self._spiking & ~held
        self.rc = np.where(fired, self.refractory, np.maximum(self.rc - 1, 0))
        v = np.where(fired & self._zero_now, 0, v)
        v = np.where(fired & self._subtract_now, v - self.vth, v)
        waiting = t < self.start_step
        if waiting.any():
            fired &= ~waiting
            self.u, v = np.where(waiting, u_before, self.u), np.where(waiting, v_before, v)
            self.rc = np.where(waiting, rc_before, self.rc)
        self.v = v
        self.tick_count += 1
        readout = np.where(waiting, 0, self.v)[self.readouts]          # a held readout reports 0
        return np.flatnonzero(fired), readout, self.u.copy(), self.v.copy()

    def tick(self, keys: np.ndarray):
        self.receive(keys)
        return self.update()

    def close(self) -> None:
        pass


class Spinnaker2Network:
    """The PEs of an artifact and its routing tables; `run` steps them together."""

    def __init__(self, path: Path, make_pe: Callable[[str, bytes], object]):
        self.path = Path(path)
        root = self.path / "spinnaker2"
        try:
            self.placement = json.loads((root / "placement.json").read_text())
        except (OSError, ValueError) as err:
            raise InputFileError(f"{root / 'placement.json'}: missing or not JSON ({err})") from None
        self.pe_names = [pe["name"] for pe in self.placement["pes"]]
        self.pe_chip = [tuple(pe["chip"]) for pe in self.placement["pes"]]
        self.pe_index = [int(pe["pe"]) for pe in self.placement["pes"]]
        self.images = {}
        for name in self.pe_names:
            file = root / f"{name}.bin"
            if not file.is_file():
                raise InputFileError(f"{file}: PE image missing")
            self.images[name] = file.read_bytes()
        self.parsed = {name: parse_image(data, str(root / f"{name}.bin")) for name, data in self.images.items()}
        self.tables = {}
        for chip in self.placement["chips"]:
            file = root / f"routing_{chip[0]}_{chip[1]}.bin"
            self.tables[tuple(chip)] = _parse_routing(file)
        self.make_pe = make_pe
        self.pes: list = []
        self._by_chip = {(c, p): k for k, (c, p) in enumerate(zip(self.pe_chip, self.pe_index, strict=True))}

    # -- routing -------------------------------------------------------------------------------------------------
    def route(self, key: int, origin: tuple[int, int]) -> set[int]:
        """The PEs (indices) a packet with `key` reaches from chip `origin`, following the tables."""
        by_chip = self._by_chip
        reached, seen, frontier = set(), set(), [origin]
        while frontier:
            chip = frontier.pop()
            if chip in seen:
                raise BoardError(f"key {key:#x} loops through chip {chip}")
            seen.add(chip)
            entry = next((e for e in self.tables.get(chip, []) if (key & e[1]) == e[0]), None)
            if entry is None:
                raise BoardError(f"key {key:#x} reaches chip {chip}, whose routing table has no entry for it")
            _, _, links, bits = entry
            for pe in range(152):
                if bits >> pe & 1:
                    if (chip, pe) not in by_chip:
                        raise BoardError(f"key {key:#x}: chip {chip} routes it to PE {pe}, which holds no image")
                    reached.add(by_chip[(chip, pe)])
            for link, (dx, dy) in LINK_STEPS.items():
                if links >> link & 1:
                    frontier.append((chip[0] + dx, chip[1] + dy))
        return reached

    def check_routes(self) -> None:
        """Route every source's key through the tables: it must reach exactly the PEs whose key table has it."""
        listeners = self._listeners()
        for sid, origin in self._sources().items():
            expected = listeners.get(sid, set())
            if not expected:
                continue
            got = self.route(sid << 8, origin)
            if got != expected:
                raise BoardError(f"routing: source {sid:#x} reaches PEs {sorted(got)} but {sorted(expected)} listen "
                                 "to it")

    # -- running --------------------------------------------------------------------------------------------------
    def run(self, spikes: np.ndarray, record: bool = False) -> dict[str, np.ndarray]:
        """spikes [T, B, *input_shape] -> every output [T, B, *shape] (and per layer u, v with `record`)."""
        spikes = np.asarray(spikes)
        steps, batch = spikes.shape[:2]
        placement = self.placement
        layer_pe = {name: (np.asarray(v["pe"]), np.asarray(v["local"])) for name, v in placement["layers"].items()}
        outputs = {name: np.zeros((steps, batch, *placement["layers"][o["layer"]]["shape"]), dtype=np.int64)
                   for name, o in placement["outputs"].items()}
        states = {name: {var: np.zeros((steps, batch, *v["shape"]), dtype=np.int64) for var in ("u", "v")}
                  for name, v in placement["layers"].items()} if record else {}
        host_keys = self._host_keys(spikes)
        dests = self._destinations()
        if not self.pes:
            try:
                for name in self.pe_names:
                    self.pes.append(self.make_pe(name, self.images[name]))
            except BaseException:
                self.close()
                raise
        try:
            return self._run(spikes, steps, batch, record, layer_pe, outputs, states, host_keys, dests)
        except BaseException:
            self.close()              # a PE stopped mid-tick has a stale record in its pipe: start afresh next run
            raise

    def _run(self, spikes, steps, batch, record, layer_pe, outputs, states, host_keys, dests):
        placement = self.placement
        for b in range(batch):
            for pe in self.pes:
                pe.reset()
            emitted = np.zeros(0, dtype=np.int64)
            for t in range(steps):
                inbox: list[list[int]] = [[] for _ in self.pes]
                for key in emitted.tolist():
                    for k in dests.get(key >> 8, ()):
                        inbox[k].append(key)
                fired_keys = []
                results = []
                for k, pe in enumerate(self.pes):
                    fired, readout, u, v = pe.tick(np.asarray(inbox[k], dtype=np.int64))
                    results.append((fired, readout, u, v))
                    sid = self.parsed[self.pe_names[k]].source_id
                    fired_keys.append((sid << 8) | np.asarray(fired, dtype=np.int64))
                emitted = np.concatenate([*fired_keys, host_keys(t, b)])
                for name, o in placement["outputs"].items():
                    layer = o["layer"]
                    pe_of, local = layer_pe[layer]
                    flat = outputs[name][t, b].reshape(-1)
                    for k in np.unique(pe_of).tolist():
                        sel = pe_of == k
                        fired, readout, _, v = results[k]
                        if placement["layers"][layer]["readout"]:
                            flat[sel] = _readout_of(self, k, readout, local[sel])
                        else:
                            flat[sel] = np.isin(local[sel], fired)
                for name in states:
                    pe_of, local = layer_pe[name]
                    for var, col in (("u", 2), ("v", 3)):
                        flat = states[name][var][t, b].reshape(-1)
                        for k in np.unique(pe_of).tolist():
                            sel = pe_of == k
                            flat[sel] = results[k][col][local[sel]]
        result = dict(outputs)
        for name, values in states.items():
            result[f"{name}.u"], result[f"{name}.v"] = values["u"], values["v"]
        return result

    def _sources(self) -> dict[int, tuple[int, int]]:
        """Source id -> the chip its packets start from (PEs: their chip; host sources: chip (0, 0))."""
        sources = {int(pe["source_id"]): tuple(pe["chip"]) for pe in self.placement["pes"]}
        sources.update({int(host["source_id"]): (0, 0) for host in self.placement["hosts"]})
        return sources

    def _listeners(self) -> dict[int, set[int]]:
        """Source id -> the PEs whose key table has an entry for it."""
        listeners: dict[int, set[int]] = {}
        for k, name in enumerate(self.pe_names):
            for key in self.parsed[name].keys[:, 0].tolist():
                listeners.setdefault(key >> 8, set()).add(k)
        return listeners

    def _destinations(self) -> dict[int, list[int]]:
        """Source id -> PEs, by routing each key through the tables from its chip (sources nobody listens to, e.g.
        the output layer's PEs, send nothing: their spikes are read from the PEs' output records)."""
        listeners = self._listeners()
        return {sid: sorted(self.route(sid << 8, origin)) for sid, origin in self._sources().items()
                if sid in listeners}

    def _host_keys(self, spikes: np.ndarray) -> Callable[[int, int], np.ndarray]:
        """The keys the host emits in tick t for sample b: input spikes x[t] and every bias source's units."""
        flat = spikes.reshape(spikes.shape[0], spikes.shape[1], -1)
        per_source = {}
        for host in self.placement["hosts"]:
            per_source.setdefault(host["source"], []).append(host)

        def keys(t: int, b: int) -> np.ndarray:
            parts = []
            for hosts in per_source.values():
                for host in hosts:
                    units = np.arange(host["units"], dtype=np.int64)
                    if host["kind"] == "input":
                        units = units[flat[t, b, host["first_unit"] + units] != 0]
                    parts.append((int(host["source_id"]) << 8) | units)
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

        return keys

    def close(self) -> None:
        for pe in self.pes:
            pe.close()
        self.pes = []


def _parse_routing(file: Path) -> list[tuple[int, int, int, int]]:
    if not file.is_file():
        raise InputFileError(f"{file}: routing table missing")
    words = np.frombuffer(file.read_bytes(), dtype="<u4").astype(np.int64)
    if words.size < 5 or words[0] != ROUTING_MAGIC or words[1] != VERSION or words.size != 5 + 8 * words[4]:
        raise InputFileError(f"{file}: not a spinnaker2 routing table")
    entries = []
    for e in words[5:].reshape(-1, 8).tolist():
        bits = sum(w << (32 * i) for i, w in enumerate(e[3:]))
        entries.append((e[0], e[1], e[2], bits))
    return entries


# -- PEs distributed over an executor --------------------------------------------------------------------------------
@dataclass
class PeGroup:
    """A job: PEs that must run in lock step (a cycle of PEs feeding each other), or one PE on its own, with every
    key arriving from outside the group already known for every sample and tick."""

    elf: bytes
    images: dict[int, bytes]                      # PE index -> image
    names: dict[int, str]
    dests: dict[int, list[int]]                   # source id -> member PEs it reaches (inside the group)
    source_ids: dict[int, int]                    # member -> its source id
    inbox: dict[int, list[list[np.ndarray]]]      # member -> [sample][tick] keys arriving from outside
    steps: int
    record: bool
    timeout: float


def run_group(group: PeGroup) -> dict[int, tuple[list[list[np.ndarray]], np.ndarray, np.ndarray, np.ndarray]]:
    """Run one group of PEs under QEMU for every sample: per member (fired [sample][tick], readout [B, T, r],
    u [B, T, n], v [B, T, n]). A lone PE that does not feed itself runs all its ticks in one QEMU run; a group
    with a cycle runs tick by tick on FIFOs, its members' spikes routed between them."""
    import tempfile

    from nmcompile.runtime.qemu_pe import PeProcess, run_pe

    members = sorted(group.images)
    batch = len(next(iter(group.inbox.values())))
    with tempfile.TemporaryDirectory(prefix="nmc-pes-") as tmp:
        elf = Path(tmp) / "kernel.elf"
        elf.write_bytes(group.elf)
        results = {}
        lone = len(members) == 1 and group.source_ids[members[0]] not in group.dests
        if lone:
            m = members[0]
            samples = run_pe(elf, group.images[m], group.inbox[m], record=group.record, name=group.names[m],
                             timeout=20.0 + group.timeout * group.steps * batch)
            fired = [[np.flatnonzero(s.spikes[t]) for t in range(group.steps)] for s in samples]
            readout = np.stack([s.readout for s in samples]).astype(np.int64)
            n = samples[0].spikes.shape[1]
            zeros = np.zeros((batch, group.steps, n), dtype=np.int64)
            u = np.stack([s.u for s in samples]).astype(np.int64) if group.record else zeros
            v = np.stack([s.v for s in samples]).astype(np.int64) if group.record else zeros
            return {m: (fired, readout, u, v)}
        pes: dict[int, PeProcess] = {}
        try:
            for m in members:
                pes[m] = PeProcess(elf, group.images[m], record=group.record, name=group.names[m],
                                   tick_timeout=group.timeout)
            out = {m: ([], [], [], []) for m in members}
            for b in range(batch):
                for m in members:
                    pes[m].new_sample()
                internal: dict[int, list[int]] = {m: [] for m in members}
                per_sample = {m: ([], [], [], []) for m in members}
                for t in range(group.steps):
                    ticks = {m: pes[m].tick(np.concatenate([group.inbox[m][b][t],
                                                            np.asarray(internal[m], dtype=np.int64)]))
                             for m in members}
                    internal = {m: [] for m in members}
                    for m, tick in ticks.items():
                        keys = (group.source_ids[m] << 8) | tick.fired.astype(np.int64)
                        for j in group.dests.get(group.source_ids[m], ()):
                            internal[j].extend(keys.tolist())
                        fired, readout, u, v = per_sample[m]
                        fired.append(tick.fired.astype(np.int64))
                        readout.append(tick.readout.astype(np.int64))
                        n = group_n(group.images[m])
                        u.append(tick.u.astype(np.int64) if tick.u is not None else np.zeros(n, dtype=np.int64))
                        v.append(tick.v.astype(np.int64) if tick.v is not None else np.zeros(n, dtype=np.int64))
                for m in members:
                    for store, values in zip(out[m], per_sample[m], strict=True):
                        store.append(values)
            for m in members:
                fired, readout, u, v = out[m]
                results[m] = (fired, np.asarray(readout, dtype=np.int64), np.asarray(u, dtype=np.int64),
                              np.asarray(v, dtype=np.int64))
        finally:
            for pe in pes.values():
                pe.close()
        return results


def group_n(image: bytes) -> int:
    return int(np.frombuffer(image[12:16], dtype="<u4")[0])


def run_distributed(net: Spinnaker2Network, spikes: np.ndarray, executor, record: bool = False,
                    timeout: float = 30.0, progress=None) -> dict[str, np.ndarray]:
    """`net.run` with the PEs as jobs of `executor`: the PE graph's strongly connected groups in dependency order,
    every generation of independent groups in parallel. Each group sees every key from outside it precomputed (a
    projection delivers after at least one step, so a group's inputs depend only on groups before it)."""
    import networkx as nx

    spikes = np.asarray(spikes)
    steps, batch = spikes.shape[:2]
    placement = net.placement
    sid_of = {k: int(pe["source_id"]) for k, pe in enumerate(placement["pes"])}
    dests = net._destinations()
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(net.pe_names)))
    for k, sid in sid_of.items():
        graph.add_edges_from((k, j) for j in dests.get(sid, ()))
    condensed = nx.condensation(graph)
    host_keys = net._host_keys(spikes)
    host_by_pe: dict[int, list[list[list[int]]]] = {k: [[[] for _ in range(steps)] for _ in range(batch)]
                                                   for k in graph}
    for b in range(batch):
        for t in range(steps - 1):
            for key in host_keys(t, b).tolist():
                for j in dests.get(key >> 8, ()):
                    host_by_pe[j][b][t + 1].append(key)
    elf = (net.path / "spinnaker2" / "kernel.elf").read_bytes()
    results: dict[int, tuple] = {}
    for generation in nx.topological_generations(condensed):
        jobs = []
        for c in generation:
            members = sorted(condensed.nodes[c]["members"])
            inside = set(members)
            inbox = {m: [[list(host_by_pe[m][b][t]) for t in range(steps)] for b in range(batch)] for m in members}
            for k, (fired, *_rest) in results.items():
                for j in dests.get(sid_of[k], ()):
                    if j in inside:
                        for b in range(batch):
                            for t in range(steps - 1):
                                inbox[j][b][t + 1].extend(((sid_of[k] << 8) | fired[b][t]).tolist())
            jobs.append(PeGroup(elf, {m: net.images[net.pe_names[m]] for m in members},
                                {m: net.pe_names[m] for m in members},
                                {sid_of[m]: [j for j in dests.get(sid_of[m], ()) if j in inside] for m in members
                                 if any(j in inside for j in dests.get(sid_of[m], ()))},
                                {m: sid_of[m] for m in members},
                                {m: [[np.asarray(sorted(keys), dtype=np.int64) for keys in sample]
                                     for sample in inbox[m]] for m in members},
                                steps, record, timeout))
        if progress is not None:
            progress(f"qemu://: {len(jobs)} PE group(s) ({sum(len(j.images) for j in jobs)} PEs) on "
                     f"{executor.workers} worker(s)")
        for done in executor.map(run_group, jobs, labels=[f"PEs {', '.join(j.names.values())}" for j in jobs]):
            results.update(done)
    return _assemble(net, results, steps, batch, record)


def _assemble(net: Spinnaker2Network, results, steps: int, batch: int, record: bool) -> dict[str, np.ndarray]:
    placement = net.placement
    out: dict[str, np.ndarray] = {}
    for name, o in placement["outputs"].items():
        layer = placement["layers"][o["layer"]]
        pe_of, local = np.asarray(layer["pe"]), np.asarray(layer["local"])
        values = np.zeros((steps, batch, len(pe_of)), dtype=np.int64)
        for k in np.unique(pe_of).tolist():
            sel = pe_of == k
            fired, readout, _, _ = results[k]
            for b in range(batch):
                for t in range(steps):
                    if layer["readout"]:
                        values[t, b, sel] = _readout_of(net, k, readout[b, t], local[sel])
                    else:
                        values[t, b, sel] = np.isin(local[sel], fired[b][t])
        out[name] = values.reshape(steps, batch, *layer["shape"])
    if record:
        for name, layer in placement["layers"].items():
            pe_of, local = np.asarray(layer["pe"]), np.asarray(layer["local"])
            for var, col in (("u", 2), ("v", 3)):
                values = np.zeros((steps, batch, len(pe_of)), dtype=np.int64)
                for k in np.unique(pe_of).tolist():
                    sel = pe_of == k
                    values[:, :, sel] = results[k][col][:, :, local[sel]].transpose(1, 0, 2)
                out[f"{name}.{var}"] = values.reshape(steps, batch, *layer["shape"])
    return out


def _readout_of(net: Spinnaker2Network, k: int, readout: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Readout voltages come in neuron order of the PE's readout neurons."""
    flags = net.parsed[net.pe_names[k]].params[:, 4]
    order = {int(j): i for i, j in enumerate(np.flatnonzero(flags & 16))}
    return readout[[order[int(j)] for j in local]]
