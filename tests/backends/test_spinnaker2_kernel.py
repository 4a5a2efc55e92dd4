"""The SpiNNaker 2 PE program (nmcompile/backends/spinnaker2/kernel) under QEMU against the golden model.

A test-only image builder packs PE data images exactly as docs/formats/spinnaker2.md describes (header, neuron
parameters, groups, key table, row indices, synapse words) from an nmcompile Graph of Inputs, Constants, QLinears and
QNeurons; `nmcompile.ir.simulate` runs the same graph and the kernel's spikes, readout voltages, u and v must equal
it bit for bit.
"""

from __future__ import annotations

import gc
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from nmcompile.backends.spinnaker2 import build
from nmcompile.errors import BoardError, ToolMissingError
from nmcompile.ir import fixed
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.runtime import qemu_pe
from nmcompile.runtime.qemu_pe import PeProcess, profile_pe, run_pe

pytestmark = pytest.mark.skipif(
    not (build.shutil.which(build.CC) and build.shutil.which(qemu_pe.QEMU)),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (make tools)")

MAGIC, VERSION = 0x324D4E53, 0x00010000
HOST = 0x8000
PE_SOURCE_ID = 3
STATE_WORDS_PER_NEURON = 6
RESET_CODE = {"zero": 0, "subtract": 1, "none": 2}


@pytest.fixture(scope="module")
def elf() -> Path:
    return build.build_kernel().elf


# -- the network: host sources and neuron layers of one PE ---------------------------------------------------
@dataclass
class Source:
    name: str
    size: int
    source_id: int           # host sources 0x8000 + k; the PE itself for recurrent projections
    constant: bool = False   # a bias source: a spike every step from step 0


@dataclass
class Projection:
    source: str              # a host source, or a spiking layer of this PE (recurrent)
    op: O.QLinear
    recurrent: bool = False  # from the PE's own neurons: its keys come back next tick, the graph's recurrent edge
                             # adds that step, so the PE's delay is the op's delay + 1


@dataclass
class Layer:
    name: str
    op: O.QNeuron
    projections: list[Projection] = field(default_factory=list)


@dataclass
class Network:
    sources: list[Source]
    layers: list[Layer]

    @property
    def n_neurons(self) -> int:
        return sum(layer.op.size for layer in self.layers)

    def offsets(self) -> dict[str, int]:
        out, at = {}, 0
        for layer in self.layers:
            out[layer.name] = at
            at += layer.op.size
        return out

    def graph(self) -> Graph:
        g = Graph("pe")
        for s in self.sources:
            if s.source_id >= HOST:
                g.add(s.name, O.Constant(shape=(s.size,), value=1) if s.constant else O.Input(shape=(s.size,)))
        for layer in self.layers:
            g.add(layer.name, layer.op)
            g.add(f"{layer.name}_out", O.Output(shape=layer.op.shape))
            g.connect(layer.name, f"{layer.name}_out")
        for layer in self.layers:
            for k, p in enumerate(layer.projections):
                name = f"{layer.name}_p{k}"
                g.add(name, p.op)
                g.connect(p.source, name, recurrent=p.recurrent)
                g.connect(name, layer.name)
        return g


# -- the test-only image builder (docs/formats/spinnaker2.md "PE data image") ----------------------------------
def neuron_words(op: O.QNeuron) -> np.ndarray:
    n = op.size
    b = {k: np.broadcast_to(getattr(op, k), op.shape).reshape(-1).astype(np.int64)
         for k in ("du", "dv", "vth", "bias_mant", "bias_exp", "u_init", "v_init")}
    flags = RESET_CODE[op.reset_mode] if op.spiking else RESET_CODE["none"]
    flags |= (4 if op.reset_timing == "delayed" else 0) | (8 if op.compare == ">=" else 0)
    flags |= (0 if op.spiking else 16) | (op.refractory << 8)
    words = np.zeros((n, 8), dtype=np.int64)
    words[:, 0], words[:, 1] = b["du"], b["dv"]
    words[:, 2] = b["vth"] << fixed.VTH_SHIFT
    words[:, 3] = fixed.effective_bias(b["bias_mant"], b["bias_exp"])
    words[:, 4] = flags
    words[:, 5], words[:, 6] = b["u_init"], b["v_init"]
    words[:, 7] = op.start_step
    return words


def prefix_blocks(size: int, whole: bool) -> list[tuple[int, int]]:
    """(first unit, units) of the key entries of a source: one 256-unit entry, or aligned power-of-two blocks."""
    if whole:
        return [(0, 256)]
    blocks, at = [], 0
    while at < size:
        width = 1
        while at % (width * 2) == 0 and at + width * 2 <= size:
            width *= 2
        blocks.append((at, width))
        at += width
    return blocks


def pack_image(net: Network, rng: np.random.Generator, source_id: int = PE_SOURCE_ID) -> bytes:
    n = net.n_neurons
    offsets = net.offsets()
    groups: list[tuple[int, int]] = []                       # (delay, weight_exp)
    rows: dict[tuple[int, int], list[int]] = {}              # (source id, unit) -> synapse words
    key_sources = {s.name: (s.source_id, 0) for s in net.sources}
    key_sources.update({name: (source_id, at) for name, at in offsets.items()})   # recurrent: the PE's own keys
    senders = list(net.sources)
    for layer in net.layers:
        for p in layer.projections:
            w = p.op.effective_weight()
            assert w.min() >= -128 and w.max() <= 127, "the synapse word holds int8 weights"
            delays = np.broadcast_to(p.op.delay, w.shape) + (1 if p.recurrent else 0)
            src_id, first = key_sources[p.source]
            if p.recurrent and not any(s.source_id == source_id for s in senders):
                senders.append(Source("pe", n, source_id))
            for d in np.unique(delays):
                g = len(groups)
                groups.append((int(d), p.op.weight_exp))
                for j, i in zip(*np.nonzero((delays == d) & (w != 0)), strict=True):
                    word = ((int(w[j, i]) & 0xFF) << 24) | ((int(d) - 1) << 20) | (g << 8) | (offsets[layer.name] + j)
                    rows.setdefault((src_id, first + int(i)), []).append(word)
    for words in rows.values():
        rng.shuffle(words)
    entries = []                                             # (key, mask, [row per unit])
    for s in sorted(senders, key=lambda s: s.source_id):
        for first, units in prefix_blocks(s.size, whole=bool(rng.integers(2))):
            entries.append(((s.source_id << 8) | first, (~(units - 1)) & 0xFFFFFFFF,
                            [rows.get((s.source_id, first + u), []) for u in range(units)]))
    n_groups, n_keys = len(groups), len(entries)
    off_params = 64
    off_groups = off_params + 32 * n
    off_keys = off_groups + 16 * n_groups
    index_words = [len(e[2]) + 1 for e in entries]
    off_index = off_keys + 16 * n_keys
    off_syn = off_index + 4 * sum(index_words)
    ring_at = STATE_WORDS_PER_NEURON * n
    group_words, key_words, index_all, syn_all = [], [], [], []
    for d, e in groups:
        group_words += [d, e, ring_at, 0]
        ring_at += (d + 1) * n
    at_index, at_syn = off_index, off_syn
    for key, mask, entry_rows in entries:
        key_words += [key, mask, at_index, at_syn]
        index = np.concatenate([[0], np.cumsum([len(r) for r in entry_rows])]).astype(np.int64)
        index_all += index.tolist()
        for r in entry_rows:
            syn_all += r
        at_index += 4 * len(index)
        at_syn += 4 * int(index[-1])
    size = at_syn
    readouts = sum(layer.op.size for layer in net.layers if not layer.op.spiking)
    header = [MAGIC, VERSION, source_id, n, n_groups, n_keys, off_params, off_groups, off_keys, off_syn, ring_at,
              readouts, size, 0, 0, 0]
    params = np.concatenate([neuron_words(layer.op) for layer in net.layers])
    words = np.concatenate([np.array(header, dtype=np.int64), params.reshape(-1), np.array(group_words, np.int64),
                            np.array(key_words, np.int64), np.array(index_all, np.int64), np.array(syn_all, np.int64)])
    image = (words & 0xFFFFFFFF).astype("<u4").tobytes()
    assert len(image) == size
    return image


def host_keys(net: Network, x: dict[str, np.ndarray], rng: np.random.Generator, sample: int, steps: int,
              noise: bool = True) -> list[np.ndarray]:
    """The keys arriving in ticks 0..steps-1 of one sample: tick t carries the host's step t-1 (inputs and bias
    spikes), in random order, plus packets no key entry matches (other PEs, units past a source). A graded input
    value k (an integer current) is sent as k copies of the key."""
    ticks = []
    for t in range(steps):
        keys: list[int] = []
        if t >= 1:
            for s in net.sources:
                if s.constant:
                    keys += [(s.source_id << 8) | u for u in range(s.size)]
                elif s.source_id >= HOST:          # a graded input k is k copies of the key
                    counts = x[s.name][t - 1, sample]
                    keys += np.repeat((s.source_id << 8) | np.arange(s.size), counts).tolist()
        if noise:
            keys += [((HOST + 40) << 8) | int(u) for u in rng.integers(0, 256, 2)]
            keys += [((PE_SOURCE_ID + 1) << 8) | int(rng.integers(0, 256))]
            big = max(net.sources, key=lambda s: s.source_id if s.source_id >= HOST else -1)
            if big.size < 256:
                keys += [(big.source_id << 8) | int(rng.integers(big.size, 256))]
        ticks.append(rng.permutation(np.array(keys, dtype=np.int64)).astype(np.uint32))
    return ticks


# -- random networks covering every option ----------------------------------------------------------------------
SPIKING_OPTIONS = [dict(compare=c, reset_mode=r, reset_timing=t) for c in (">", ">=") for r in RESET_CODE
                   for t in ("immediate", "delayed")]


def random_neuron(rng, size: int, *, spiking: bool = True, refractory: int = 0, **options) -> O.QNeuron:
    du = rng.choice([4095, -1, 0, int(rng.integers(0, 4096)), int(rng.integers(0, 4096))], size=size)
    dv = rng.choice([0, 4096, int(rng.integers(0, 4097)), int(rng.integers(0, 600))], size=size)
    return O.QNeuron(shape=(size,), du=du, dv=dv, vth=rng.integers(0, 700, size),
                     bias_mant=rng.integers(-300, 400, size), bias_exp=rng.integers(0, 4, size),
                     u_init=rng.integers(-60000, 60000, size), v_init=rng.integers(-90000, 90000, size),
                     spiking=spiking, refractory=refractory, **options)


def random_projection(rng, source: Source, size: int, *, exp_range=(-5, 3), mixed_delays: bool | None = None,
                      recurrent: bool = False, max_delay: int = 8) -> Projection:
    density = rng.uniform(0.2, 0.7)
    w = rng.integers(-128, 128, (size, source.size)) * (rng.random((size, source.size)) < density)
    top = max_delay - 1 if recurrent else max_delay     # a recurrent edge adds a step
    low = 0 if recurrent else 1
    if mixed_delays is None:
        mixed_delays = bool(rng.integers(2))
    delay = rng.integers(low, top + 1, w.shape) if mixed_delays else int(rng.integers(low, top + 1))
    op = O.QLinear(weight=w, weight_exp=int(rng.integers(*exp_range)), num_weight_bits=9, delay=delay)
    return Projection(source.name, op, recurrent=recurrent)


def state_words(net: Network) -> int:
    """The working state the image asks for: 6 words per neuron and a ring of delay + 1 slots per group."""
    n = net.n_neurons
    rings = sum(int(d) + 1 for layer in net.layers for p in layer.projections
                for d in np.unique(np.asarray(p.op.delay) + (1 if p.recurrent else 0)))
    return STATE_WORDS_PER_NEURON * n + rings * n


def memory_words(net: Network) -> int:
    """Words of image and state, roughly (the key tables and row indices take at most ~2000 words here)."""
    synapses = sum(int(np.count_nonzero(p.op.weight)) for layer in net.layers for p in layer.projections)
    return state_words(net) + synapses + 8 * net.n_neurons + 2000


def random_network(rng, configs: list[dict], *, readout: bool, hot: bool, max_neurons: int = 256,
                   recurrent: bool = False, full: bool = False) -> Network:
    """A PE of random layers (one per configuration; `full`: exactly max_neurons neurons, the last layer spiking),
    drawn again with fewer and shorter delays until its state fits the PE's memory with room for the image."""
    mixed, max_delay = 0.5, 8
    while True:
        net = _random_network(rng, configs, readout, hot, max_neurons, recurrent, mixed, max_delay, full)
        if memory_words(net) <= (0x1F000 - 0xE900) // 4:
            return net
        mixed, max_delay = mixed / 2, max(max_delay - 1, 1)


def _random_network(rng, configs, readout, hot, max_neurons, recurrent, mixed, max_delay, full) -> Network:
    sources = [Source("in0", int(rng.integers(8, 40)), HOST), Source("in1", int(rng.integers(3, 24)), HOST + 1),
               Source("bias", int(rng.integers(1, 4)), HOST + 2, constant=True)]
    layers: list[Layer] = []
    budget = max_neurons - (12 if readout else 0) - (8 if hot else 0)
    if full:
        readout, hot = False, False
        budget = max_neurons
    per_layer = max(2, budget // max(len(configs), 1))
    for k, options in enumerate(configs):
        size = int(rng.integers(2, per_layer + 1))
        if full and k == len(configs) - 1:           # the PE's last neuron is unit 255
            size = budget - sum(layer.op.size for layer in layers)
        layers.append(Layer(f"l{k}", random_neuron(rng, size, **options)))
    if hot:   # big weight exponents: u leaves 24 bits (one wrap is not enough), v clips
        layers.append(Layer("hot", random_neuron(rng, int(rng.integers(2, 9)), reset_mode="subtract")))
    if readout:
        layers.append(Layer("ro", random_neuron(rng, int(rng.integers(1, 13)), spiking=False, reset_mode="none")))
    for layer in layers:
        for k in rng.permutation(len(sources))[: int(rng.integers(1, 4))]:
            s = sources[k]
            exp_range = (10, 13) if layer.name == "hot" else (-5, 3)
            layer.projections.append(random_projection(rng, s, layer.op.size, exp_range=exp_range,
                                                       mixed_delays=bool(rng.random() < mixed), max_delay=max_delay))
        if layer.name != "hot" and rng.random() < 0.3:        # a second projection from the same source
            layer.projections.append(random_projection(rng, sources[0], layer.op.size,
                                                       mixed_delays=bool(rng.random() < mixed), max_delay=max_delay))
    if recurrent:
        spiking = [layer for layer in layers if layer.op.spiking]
        for layer in layers[:3]:
            src = spiking[int(rng.integers(len(spiking)))]
            layer.projections.append(random_projection(rng, Source(src.name, src.op.size, PE_SOURCE_ID),
                                                       layer.op.size, exp_range=(-3, 1), recurrent=True,
                                                       mixed_delays=bool(rng.random() < mixed), max_delay=max_delay))
    return Network(sources, layers)


def random_inputs(rng, net: Network, steps: int, batch: int) -> dict[str, np.ndarray]:
    return {s.name: (rng.random((steps, batch, s.size)) < rng.uniform(0.1, 0.5)).astype(np.int64)
            for s in net.sources if s.source_id >= HOST and not s.constant}


def reference(net: Network, x: dict[str, np.ndarray]):
    result = simulate(net.graph(), x, record=True)
    return result.values, result.states


def check_sample(net: Network, values, states, b: int, spikes, readout, u, v) -> None:
    offsets, at_readout = net.offsets(), 0
    for layer in net.layers:
        sl = slice(offsets[layer.name], offsets[layer.name] + layer.op.size)
        ref_u, ref_v = states[layer.name]["u"][:, b], states[layer.name]["v"][:, b]
        assert np.abs(ref_u).max() < 2**31, "the test network keeps u inside int32 (the kernel records int32)"
        if layer.op.spiking:
            np.testing.assert_array_equal(spikes[:, sl], values[layer.name][:, b], err_msg=f"spikes of {layer.name}")
        else:
            assert not spikes[:, sl].any(), "a readout never fires"
            k = layer.op.size
            np.testing.assert_array_equal(readout[:, at_readout : at_readout + k], values[layer.name][:, b],
                                          err_msg=f"readout v of {layer.name}")
            at_readout += k
        np.testing.assert_array_equal(u[:, sl], ref_u, err_msg=f"u of {layer.name}")
        np.testing.assert_array_equal(v[:, sl], ref_v, err_msg=f"v of {layer.name}")


REFRACTORY_OPTIONS = [dict(compare=c, reset_mode=r, refractory=int(k))
                      for c, r, k in ((">", "zero", 1), (">=", "subtract", 15), (">", "none", 3), (">=", "zero", 7),
                                      (">", "subtract", 9))]
ALL_OPTIONS = SPIKING_OPTIONS + REFRACTORY_OPTIONS       # 12 + 5 layer configurations


SEEDS = range(8)


@pytest.mark.parametrize("seed", SEEDS)
def test_kernel_equals_golden_model(elf, seed):
    rng = np.random.default_rng(1000 + seed)
    configs = [ALL_OPTIONS[(seed * 4 + k) % len(ALL_OPTIONS)] for k in range(4 + seed % 2)]
    net = random_network(rng, configs, readout=seed != 3, hot=seed % 2 == 0, max_neurons=256 if seed == 4 else 80,
                         full=seed == 4)
    steps, batch = 30 + 5 * seed, 3
    x = random_inputs(rng, net, steps, batch)
    values, states = reference(net, x)
    image = pack_image(net, rng)
    ticks = [host_keys(net, x, rng, b, steps) for b in range(batch)]
    samples = run_pe(elf, image, ticks, record=True, name=f"seed{seed}.bin")
    assert len(samples) == batch
    fired = 0
    for b, s in enumerate(samples):
        check_sample(net, values, states, b, s.spikes, s.readout, s.u, s.v)
        fired += int(s.spikes.sum())
    assert fired > 0
    # the same run without recording gives the same spikes and readouts
    plain = run_pe(elf, image, ticks[:1], record=False)
    np.testing.assert_array_equal(plain[0].spikes, samples[0].spikes)
    np.testing.assert_array_equal(plain[0].readout, samples[0].readout)
    assert plain[0].u is None


def test_kernel_edge_cases(elf):
    """Values the random networks rarely hit exactly: v == vth under '>' and '>=' (immediate and as the delayed
    reset's pending flag), u == +M (kept) and u == -M (wrapped to +M), v clipped to M - 1, and a negative exponent
    flooring the sum of a group (-2 >> 2 = -1, not -1 + -1)."""
    m = 1 << 23

    def layer(name, weight, exp=0, **options):
        weight = np.array(weight)
        op = O.QNeuron(shape=(weight.shape[0],), du=4095, dv=options.pop("dv", 4096), vth=10, **options)
        return Layer(name, op, [Projection("in0", O.QLinear(weight=weight, weight_exp=exp, num_weight_bits=9))])

    net = Network([Source("in0", 2, HOST)], [
        layer("ge", [[10, 0], [9, 0]], compare=">="),
        layer("gt", [[10, 0], [11, 0]], compare=">"),
        layer("pending_ge", [[5, 0]], dv=0, compare=">=", reset_timing="delayed", reset_mode="subtract"),
        layer("pending_gt", [[5, 0]], dv=0, compare=">", reset_timing="delayed", reset_mode="subtract"),
        layer("wrap", [[64, 0], [-64, 0], [65, 0]], exp=11, spiking=False, reset_mode="none"),
        layer("floor", [[-1, -1], [1, 1]], exp=-2, spiking=False, reset_mode="none"),
    ])
    steps = 8
    x = {"in0": np.ones((steps, 1, 2), dtype=np.int64)}
    values, states = reference(net, x)
    assert values["ge"][1:, 0].tolist() == [[1, 0]] * (steps - 1)
    assert not values["gt"][1:, 0, 0].any() and values["gt"][1:, 0, 1].all()
    assert values["pending_ge"][:, 0, 0].tolist() != values["pending_gt"][:, 0, 0].tolist()
    assert states["wrap"]["u"][1, 0].tolist() == [m, m, (65 << 17) - 2 * m]
    assert values["wrap"][1, 0].tolist() == [m - 1, m - 1, (65 << 17) - 2 * m]
    assert states["floor"]["u"][1, 0].tolist() == [-64, 0]
    rng = np.random.default_rng(0)
    s = run_pe(elf, pack_image(net, rng), [host_keys(net, x, rng, 0, steps)], record=True)[0]
    check_sample(net, values, states, 0, s.spikes, s.readout, s.u, s.v)


def single_group_net(rng, options: dict, exp: int) -> Network:
    """One layer fed by one projection of one delay: a PE of exactly one group."""
    src = Source("in0", 16, HOST)
    if exp <= 12:
        op = random_neuron(rng, 24, **options)
        proj = random_projection(rng, src, 24, exp_range=(exp, exp + 1), mixed_delays=False)
        return Network([src], [Layer("l", op, [proj])])
    # big exponents: one weight per neuron, the drive (w << exp) << 6 just inside / at / outside int32 and the
    # (-M, M] of the fast path; u = drive (du = 4095), wrapped once, stays recordable in int32 (for exp 24, 25)
    # exp 20: (64 << 20) << 6 = 2^32 wraps an int32 to 0, so a fast path that did not check the drive would see 0
    signs = {24: [1, -1, 2, -2], 25: [1, -1], 20: [64, -64, 63, 65, -63, -65, 127, -128]}[exp]
    weight = np.zeros((8, src.size), dtype=np.int64)
    for j in range(8):
        weight[j, j % 4] = signs[j % len(signs)]
    op = random_neuron(rng, 8, **options)
    op = O.QNeuron(**{**{k: getattr(op, k) for k in ("shape", "dv", "vth", "bias_mant", "bias_exp", "u_init",
                                                     "v_init", "spiking", "refractory", "compare", "reset_mode",
                                                     "reset_timing")},
                      "du": [4095, 4000, 2000, 0] * 2 if exp == 20 else 4095})
    proj = Projection("in0", O.QLinear(weight=weight, weight_exp=exp, num_weight_bits=9, delay=1))
    return Network([src], [Layer("l", op, [proj])])


READOUT_OPTIONS = dict(spiking=False, reset_mode="none")


@pytest.mark.parametrize("exp", [0, 3, -3, 20, 24, 25])
def test_kernel_single_group(elf, exp):
    """A PE with one group: the neuron loops read its ring slot themselves for 0 <= weight_exp <= 24 (the drive
    (slot << weight_exp) << 6 checked to fit an int32) and take the int64 sum otherwise. Every option set. With
    exp 20, u leaves int32 (the record holds its low 32 bits); spikes, readouts and v stay exact."""
    for k, options in enumerate([*ALL_OPTIONS, READOUT_OPTIONS]):
        rng = np.random.default_rng(3000 + 100 * k + exp)
        net = single_group_net(rng, options, exp)
        steps = 12
        x = random_inputs(rng, net, steps, 1)
        x["in0"][:4] = 1                 # every weight arrives early on
        values, states = reference(net, x)
        s = run_pe(elf, pack_image(net, rng), [host_keys(net, x, rng, 0, steps)], record=True)[0]
        if exp != 20:
            check_sample(net, values, states, 0, s.spikes, s.readout, s.u, s.v)
            continue
        ref_u, ref_v = states["l"]["u"][:, 0], states["l"]["v"][:, 0]
        assert np.abs(ref_u).max() >= 2**31
        np.testing.assert_array_equal(s.u, ref_u.astype(np.uint64).astype(np.uint32).astype(np.int32))
        np.testing.assert_array_equal(s.v, ref_v)
        if net.layers[0].op.spiking:
            np.testing.assert_array_equal(s.spikes, values["l"][:, 0])
        else:
            np.testing.assert_array_equal(s.readout, values["l"][:, 0])


@pytest.mark.parametrize("compare", [">", ">="])
def test_kernel_fast_path_parameter_bounds(elf, compare):
    """Parameters at the bounds of the fast path: |bias| = 2^30 (fast) and 3 * 2^29 (general path), thresholds
    around M (the '>' threshold is clamped to [-M, M] for a clipped v) and 0, in one group and in several."""
    src = Source("in0", 4, HOST)
    n = 8
    op = O.QNeuron(shape=(n,), du=[4095, 0, 100, 4095, 4095, 0, 4095, 2000], dv=[0, 4096, 10, 0, 200, 0, 4096, 0],
                   vth=[2**17 - 1, 2**17, 2**17 + 1, 0, 2**17, 2**17 - 1, 0, 5],
                   bias_mant=[1, 3, -1, -3, 1, 0, -1, 3], bias_exp=[30, 29, 30, 29, 30, 0, 30, 29],
                   compare=compare, reset_mode="subtract")
    weight = np.array([[1, 0, -1, 0]] * n)
    for projections in (1, 2):
        proj = [Projection("in0", O.QLinear(weight=weight, weight_exp=0, num_weight_bits=9, delay=1 + k))
                for k in range(projections)]
        for timing in ("immediate", "delayed"):
            layer_op = O.QNeuron(**{**{k: getattr(op, k) for k in ("shape", "du", "dv", "vth", "bias_mant",
                                                                   "bias_exp", "compare", "reset_mode")},
                                    "reset_timing": timing})
            net = Network([src], [Layer("l", layer_op, proj)])
            rng = np.random.default_rng(7)
            steps = 10
            x = random_inputs(rng, net, steps, 1)
            values, states = reference(net, x)
            s = run_pe(elf, pack_image(net, rng), [host_keys(net, x, rng, 0, steps)], record=True)[0]
            check_sample(net, values, states, 0, s.spikes, s.readout, s.u, s.v)
            assert s.spikes.any()


def test_many_keys_per_tick(elf):
    """Ticks of up to ~3000 packets (the kernel reads them in chunks of 1024), duplicate keys (a graded input k is k
    packets), a 256-unit host source (unit 255) and a layer fed by two projections from it."""
    rng = np.random.default_rng(11)
    src = Source("in0", 256, HOST)
    a = Layer("a", random_neuron(rng, 20, compare=">=", reset_mode="subtract"))
    b = Layer("b", random_neuron(rng, 6, spiking=False, reset_mode="none"))
    a.projections += [random_projection(rng, src, 20, exp_range=(-7, -5), mixed_delays=True),
                      random_projection(rng, src, 20, exp_range=(-7, -5), mixed_delays=False)]
    b.projections.append(random_projection(rng, src, 6, exp_range=(-8, -6), mixed_delays=True))
    net = Network([src], [a, b])
    steps = 12
    x = {"in0": rng.integers(0, 40, (steps, 2, 256)) * (rng.random((steps, 2, 256)) < 0.5)}
    values, states = reference(net, x)
    ticks = [host_keys(net, x, rng, k, steps) for k in range(2)]
    assert max(len(t) for t in ticks[0]) > 2 * 1024
    samples = run_pe(elf, pack_image(net, rng), ticks, record=True)
    for k, s in enumerate(samples):
        check_sample(net, values, states, k, s.spikes, s.readout, s.u, s.v)
    assert samples[0].spikes.any()


def test_coverage_of_the_random_networks():
    """The seeds above exercise every option (a check on the generator, so that coverage cannot silently drop)."""
    seen = set()
    for seed in SEEDS:
        for k in range(4 + seed % 2):
            o = ALL_OPTIONS[(seed * 4 + k) % len(ALL_OPTIONS)]
            seen.add((o["compare"], o["reset_mode"], o.get("reset_timing", "immediate"), o.get("refractory", 0) > 0))
    expected = {(c, r, t, False) for c in (">", ">=") for r in RESET_CODE for t in ("immediate", "delayed")}
    assert expected <= seen
    assert any(refractory for *_, refractory in seen)


def test_fifo_tick_by_tick_with_recurrence(elf):
    """A PE whose own spikes come back to it (recurrent projections): the host feeds every tick the keys of the
    previous tick's spikes through the FIFOs, across two samples, and the result equals the golden model."""
    rng = np.random.default_rng(77)
    configs = [SPIKING_OPTIONS[1], SPIKING_OPTIONS[4], REFRACTORY_OPTIONS[1]]
    net = random_network(rng, configs, readout=True, hot=False, max_neurons=40, recurrent=True)
    steps, batch = 25, 2
    x = random_inputs(rng, net, steps, batch)
    values, states = reference(net, x)
    image = pack_image(net, rng)
    with PeProcess(elf, image, record=True, name="pe_0_3.bin") as pe:
        workdir = Path(pe._dir)
        assert (workdir / "input.fifo").exists()
        for b in range(batch):
            if b:
                pe.new_sample()
            ticks = host_keys(net, x, rng, b, steps)
            n = net.n_neurons
            spikes = np.zeros((steps, n), dtype=np.uint8)
            readout = np.zeros((steps, pe.info.n_readouts), dtype=np.int32)
            u = np.zeros((steps, n), dtype=np.int32)
            v = np.zeros((steps, n), dtype=np.int32)
            own = np.zeros(0, dtype=np.uint32)
            for t in range(steps):
                out = pe.tick(np.concatenate([ticks[t], own]))
                spikes[t, out.fired] = 1
                readout[t], u[t], v[t] = out.readout, out.u, out.v
                own = pe.keys_of(out.fired)
            check_sample(net, values, states, b, spikes, readout, u, v)
            assert spikes.sum() > 0
        proc = pe._procs[0]
        assert pe.close() == 0
    assert proc.poll() == 0
    assert not workdir.exists()
    pe.close()                                      # closing twice is harmless
    with pytest.raises(BoardError, match="closed"):
        pe.tick([])


def test_fifo_kernel_error_and_stuck_tick(elf):
    image = bytearray(pack_image(tiny_network(), np.random.default_rng(0)))
    image[0] ^= 0xFF
    pe = PeProcess(elf, bytes(image), name="pe_bad.bin")
    workdir = Path(pe._dir)
    with pytest.raises(BoardError, match=r"pe_bad\.bin: the PE kernel exited with status 2: .*bad magic"):
        pe.tick([])
    pe.close()
    assert not workdir.exists()

    # a tick record whose keys never come: the kernel waits on its INPUT FIFO past the deadline
    with PeProcess(elf, pack_image(tiny_network(), np.random.default_rng(0)), name="pe_stuck.bin",
                   tick_timeout=0.5) as pe:
        assert pe.tick([]).fired.size == 0
        pe._write(struct.pack("<II", 3, HOST << 8), pe._deadline())
        with pytest.raises(BoardError, match=r"pe_stuck\.bin: the PE kernel did not finish tick 1 within 0.5 s"):
            pe.tick([])
        proc = pe._procs[0]
    assert proc.poll() is not None                 # killed by close()


# -- image validation -------------------------------------------------------------------------------------------
def tiny_network() -> Network:
    rng = np.random.default_rng(5)
    src = Source("in0", 4, HOST)
    layer = Layer("l0", O.QNeuron(shape=(3,), vth=10))
    layer.projections.append(Projection("in0", O.QLinear(weight=rng.integers(-5, 6, (3, 4)), num_weight_bits=9,
                                                         delay=np.array([[1, 2, 3, 1]] * 3))))
    return Network([src], [layer])


def patched(image: bytes, word: int, value: int) -> bytes:
    out = bytearray(image)
    struct.pack_into("<I", out, 4 * word, value & 0xFFFFFFFF)
    return bytes(out)


def corruptions(image: bytes):
    h = struct.unpack_from("<16I", image)
    size, off_groups, off_keys = h[12], h[7], h[8]
    yield "magic", patched(image, 0, 0x12345678), "bad magic 0x12345678"
    yield "version", patched(image, 1, 0x00020000), "unsupported version"
    yield "size", patched(image, 12, size + 4), "header says"
    yield "short", image[:40], "shorter than the 64-byte header"
    yield "n_neurons", patched(image, 3, 0), "n_neurons 0 outside 1..256"
    yield "params", patched(image, 6, size - 8), "neuron parameters"
    yield "keys", patched(image, 8, size), "key table"
    yield "state", patched(image, 10, 20000), "past the PE's memory"
    yield "state small", patched(image, 10, 17), "smaller than the neuron state"
    yield "readouts", patched(image, 11, 1), "n_readouts 1"
    yield "delay", patched(image, off_groups // 4, 9), "group 0: delay 9"
    yield "ring", patched(image, off_groups // 4 + 2, 0), "ring words"
    yield "overlap", patched(image, off_groups // 4 + 6, 20), "overlaps"      # group 1's ring into group 0's
    yield "mask", patched(image, off_keys // 4 + 1, 0xFFFF0F00), "not a prefix mask"
    yield "index", patched(image, off_keys // 4 + 2, size - 8), "row index"
    syn_word = h[9] // 4
    bad_group = struct.unpack_from("<I", image, 4 * syn_word)[0] | (0x7F << 8)
    yield "synapse", patched(image, syn_word, bad_group), "synapse word 0"
    yield "large", image + bytes(70000), "larger than the PE data region"


def test_image_validation(elf):
    image = pack_image(tiny_network(), np.random.default_rng(1))
    assert run_pe(elf, image, [[[], []]])[0].spikes.shape == (2, 3)
    for what, bad, message in corruptions(image):
        with pytest.raises(BoardError) as err:
            run_pe(elf, bad, [[[]]], name=f"pe_{what}.bin")
        text = str(err.value)
        assert text.startswith(f"pe_{what}.bin: the PE kernel exited with status 2: kernel: image.bin: "), text
        assert message in text, (what, text)


def test_run_errors(elf, monkeypatch):
    image = pack_image(tiny_network(), np.random.default_rng(1))
    with pytest.raises(BoardError, match=r"pe_slow\.bin: the PE kernel did not finish its 1 ticks within"):
        run_pe(elf, image, [[[]]], name="pe_slow.bin", timeout=0.001)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissingError, match="apt-get install --no-install-recommends qemu-system-arm"):
        run_pe(elf, image, [[[]]])
    with pytest.raises(ToolMissingError, match="qemu-system-arm"):
        PeProcess(elf, image)
    with pytest.raises(ToolMissingError, match="gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        build.build_kernel()
    monkeypatch.undo()
    monkeypatch.setattr(build, "NEWLIB_FILES", ("libc_nano.a", "libnot_installed.a"))   # a compiler without newlib
    with pytest.raises(ToolMissingError, match=r"newlib .*libnot_installed\.a.*`apt-get install "
                                               "--no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        build.build_kernel()


def test_pe_process_cleans_up_when_collected(elf):
    pe = PeProcess(elf, pack_image(tiny_network(), np.random.default_rng(0)))
    assert pe.tick([HOST << 8]).fired.size == 0
    proc, workdir = pe._procs[0], Path(pe._dir)
    del pe
    gc.collect()
    assert proc.poll() == 0 and not workdir.exists()


# -- the build cache --------------------------------------------------------------------------------------------
def test_build_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NMC_CACHE", str(tmp_path))
    first = build.build_kernel()
    assert not first.cached and first.elf.is_file()
    assert first.elf.parent.parent == tmp_path / "spinnaker2"
    assert 0 < first.sizes.code <= build.CODE_BYTES and 0 < first.sizes.data <= build.KERNEL_DATA_BYTES
    assert first.sizes == build.kernel_sizes(first.elf)
    second = build.build_kernel()
    assert second.cached and second.elf == first.elf and second.key == first.key
    content = first.elf.read_bytes()
    first.elf.write_bytes(content[: len(content) // 2])       # a truncated cached ELF is rebuilt
    third = build.build_kernel()
    assert not third.cached and third.elf.read_bytes() == content
    first.elf.write_bytes(b"")                                 # so is an empty one
    assert not build.build_kernel().cached
    assert [p.name for p in (tmp_path / "spinnaker2").iterdir()] == [first.key]   # no temporary leftovers
    assert "kernel.elf: code" in first.sizes.describe()


def test_kernel_sources_are_package_data():
    sources = build.kernel_sources()
    assert set(sources) == {*build.C_SOURCES, *build.HEADERS, build.LINKER_SCRIPT}
    assert b"0xE900" in sources["pe.ld"] and b"ASSERT" in sources["pe.ld"]


# -- instruction counts (-icount) ------------------------------------------------------------------------------
def test_profile_counts(elf):
    """Instructions per neuron update and per synaptic event, from two runs that differ only in the inputs."""
    rng = np.random.default_rng(3)
    src = Source("in0", 64, HOST)
    layer = Layer("l0", O.QNeuron(shape=(128,), du=100, dv=200, vth=100000))
    layer.projections.append(Projection("in0", O.QLinear(weight=rng.integers(1, 100, (128, 64)), num_weight_bits=9)))
    net = Network([src], [layer])
    image = pack_image(net, rng)
    steps = 50
    quiet = profile_pe(elf, image, [[[] for _ in range(steps)]])
    busy = profile_pe(elf, image, [[[(HOST << 8) | u for u in range(64)] for _ in range(steps)]])
    assert quiet.ticks == busy.ticks == steps and quiet.neuron_updates == 128 * steps
    assert busy.packets == busy.packets_matched == 64 * steps and busy.synapses == 64 * 128 * steps
    per_update = quiet.instructions_neurons / quiet.neuron_updates
    per_event = (busy.instructions_synapses - quiet.instructions_synapses) / busy.synapses
    assert 10 < per_update < 200 and 3 < per_event < 30, (per_update, per_event)
    if os.environ.get("NMC_PRINT_PROFILE"):
        print(f"\ninstructions per neuron update {per_update:.1f}, per synaptic event {per_event:.2f}, per packet "
              f"{(busy.instructions_synapses - quiet.instructions_synapses - 0) / busy.packets:.1f}")
