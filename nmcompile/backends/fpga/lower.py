"""Lower a compiled network (its `LoweredNetwork` view) to the FPGA emulator's memories (docs/formats/fpga.md).

Neuron layers are placed on the design's engines (`engines.place`: one engine keeps them one after another);
the network's input channels come first in the source space, followed by the units of every constant source
(biases: a channel per unit, spiking every step), padded to a multiple of 32; neuron slot s is source
32 * in_words + s. Every projection (QLinear, QSparseLinear, QPlasticLinear, QConv) becomes one table entry per
(piece of its destination, piece of its source, distinct delay): a source range into a neuron range of one engine,
with one delay and one weight exponent; its int8 weights are stored in that engine's synapse memory from `w_base`
in the form `storage` picks: a convolution as its kernel (two table entries; a piece cut at channel boundaries
keeps its channels' slice of the kernel), anything else as a dense block (one row per source) or as CSR rows,
whichever is smaller. Per-synapse delays are exact as one entry per delay: the reference shifts each delay's sum by
the exponent on its own (QLinear), as the design does per entry. Target limits (delays, weight and exponent ranges,
neuron options) are checked by `nmcompile.lowered.limits` before; what is left here is the design's own layout:
one input stream, one output, channel, slot, table and memory sizes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from nmcompile.backends.fpga.engines import Piece, place
from nmcompile.backends.fpga.storage import ConvGeometry, CsrRows, csr_form, kernel_geometry
from nmcompile.errors import ResourceError, UnsupportedError
from nmcompile.ir import arraymath, fixed
from nmcompile.lowered import LoweredNetwork
from nmcompile.lowered import Projection as LoweredProjection
from nmcompile.targets import FPGA_TABLE_ENTRIES

MAX_PROJECTIONS = FPGA_TABLE_ENTRIES   # entries of the projection table (nmcompile/hdl/nmc_core.v)
MAX_SOURCES = 1 << 16           # 16-bit source indices: input channels (padded) + neurons
U_INPUT_LIMIT = 1 << 24          # |a << 6| per step: keeps u within (-2^23, 2^23] (nmcompile/hdl/nmc_neuron.v)
QSTEPS = 64                      # input queue depth of the generated design, in steps
QSTEPS_ENGINES = 16              # ... with several engines (each keeps a copy of the queue)


@dataclass
class Layer:
    name: str
    base: int                     # neuron slot of its first unit (the layer is contiguous when on one engine)
    size: int
    shape: tuple[int, ...]
    pieces: list[Piece] = field(default_factory=list)


@dataclass
class Projection:
    name: str
    src: str                      # source node (Input, Constant or QNeuron)
    dst: str                      # neuron layer
    src_base: int                 # source index
    src_len: int
    dst_base: int                 # neuron index
    dst_len: int
    delay: int
    exp: int
    stored: np.ndarray            # the bytes as stored: dense [src_len, dst_len] (row = source), the kernel, or
                                  # the CSR image (row pointers and pairs)
    geometry: ConvGeometry | None = None   # a convolution stored as its kernel
    csr: np.ndarray | None = None  # stored as CSR rows: the block [src_len, dst_len] they hold
    w_base: int = 0               # in its engine's synapse memory
    plastic: object | None = None  # QPlasticLinear
    trace_base: int = 0
    engine: int = 0
    dst_start: int = 0            # first unit of the destination layer it feeds
    chained: bool = False         # its partial sums continue in the next entry (exponent < 0, one more source piece)

    @property
    def form(self) -> str:
        return "conv" if self.geometry is not None else "csr" if self.csr is not None else "dense"

    @property
    def entries(self) -> int:
        """Projection table entries: a conv projection's geometry takes a second one."""
        return 2 if self.geometry is not None else 1

    def input_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per destination: the sums of the positive and of the negative weights (every source active)."""
        if self.geometry is None:
            block = self.csr if self.csr is not None else self.stored
            return np.clip(block, 0, None).sum(axis=0), np.clip(block, None, 0).sum(axis=0)
        g = self.geometry
        ones = np.ones((1, g.in_c, g.in_h, g.in_w), dtype=np.int64)
        kernel = self.stored.reshape(g.out_c, g.in_c, g.k_h, g.k_w)
        sums = [arraymath.int_conv(ones, part, (g.stride_y, g.stride_x), (g.pad_y, g.pad_x), (1, 1), 1).reshape(-1)
                for part in (np.clip(kernel, 0, None), np.clip(kernel, None, 0))]
        return sums[0], sums[1]


@dataclass
class FpgaConfig:
    name: str
    input_name: str
    input_shape: tuple[int, ...]
    input_channels: int
    constants: dict[str, int]                     # constant source -> its first channel (one per unit)
    in_words: int
    layers: dict[str, Layer]
    projections: list[Projection]
    params: np.ndarray                            # [neurons] 88-bit words as Python ints (object array)
    inits: np.ndarray                             # [neurons] 48-bit words
    output_name: str
    output_layer: str
    syn_words: int
    trace_words: int
    channels: int = 0                             # input channels + constant-source units (before padding)
    engines: int = 1
    slots: int = 0                                # neuron slots per engine (engines > 1: a multiple of 32)
    engine_neurons: list[int] = field(default_factory=list)     # neurons in use per engine
    notes: list[str] = field(default_factory=list)

    @property
    def neurons(self) -> int:
        return sum(layer.size for layer in self.layers.values())

    @property
    def output(self) -> Layer:
        return self.layers[self.output_layer]

    @property
    def in_pad(self) -> int:
        return 32 * self.in_words


def lower(view: LoweredNetwork, target, engines: int = 1) -> FpgaConfig:
    """The design's memories for a view that `check_target` accepted for `target`, on `engines` engines."""
    if len(view.inputs) != 1:
        raise UnsupportedError(f"the fpga design has one input stream; this network has {len(view.inputs)} inputs")
    if len(view.outputs) != 1:
        raise UnsupportedError(f"the fpga design streams one output; this network has {len(view.outputs)}")
    source = next(iter(view.inputs.values()))
    input_channels = source.size
    constants: dict[str, int] = {}
    channels = input_channels
    for name, constant in view.constants.items():
        constants[name] = channels
        channels += constant.size
    neurons = view.neurons
    in_words = max(1, -(-channels // 32))
    if neurons > target.neurons_per_core:
        raise ResourceError(f"the network has {neurons:,} neurons; the fpga design has {target.neurons_per_core:,} "
                            "neuron slots")
    pieces, slots = place(view, engines)
    total_slots = neurons if engines == 1 else engines * slots
    if 32 * in_words + total_slots > MAX_SOURCES:
        raise ResourceError(f"the network needs {channels:,} input channels ({input_channels:,} inputs + "
                            f"{channels - input_channels:,} bias units) and {total_slots:,} neuron slots on "
                            f"{engines} engine(s); the fpga design addresses {MAX_SOURCES:,} sources (channels padded "
                            "to 32 + neuron slots)")
    layers = {name: Layer(name, parts[0].engine * slots + parts[0].local, layer.size, layer.shape, parts)
              for (name, layer), parts in zip(view.layers.items(), pieces.values(), strict=True)}
    in_pad = 32 * in_words
    projections = [sub for p in view.projections
                   for sub in _projections(p, view, layers, constants, in_pad, slots, target)]
    syn_words = trace_words = 0
    memory_words = target.synapse_memory_bits // 8
    for e in range(engines):
        w_base = trace_base = 0
        mine = [p for p in projections if p.engine == e]
        for proj in mine:
            w_base += w_base & 1 if proj.csr is not None else 0          # CSR words are 16-bit aligned
            proj.w_base = w_base
            w_base += proj.stored.size
            if proj.plastic is not None:
                proj.trace_base = trace_base
                trace_base += proj.src_len + proj.dst_len
        if w_base * engines > memory_words:
            biggest = max(mine, key=lambda p: p.stored.size)
            raise ResourceError(f"the network needs {w_base:,} synapse words on engine {e}; the fpga design has "
                                f"{memory_words // engines:,} per engine (largest projection '{biggest.name}': "
                                f"{biggest.stored.size:,} {biggest.form} weights)")
        entries = sum(p.entries for p in mine)
        if entries > MAX_PROJECTIONS:
            counts: dict[str, int] = {}
            for proj in mine:
                counts[proj.name] = counts.get(proj.name, 0) + proj.entries
            most = max(counts, key=counts.__getitem__)
            raise ResourceError(f"the network's projections need {entries} table entries on engine {e} (projection "
                                f"'{most}': {counts[most]}, one per source piece, destination piece and distinct "
                                f"delay); the fpga design's table holds {MAX_PROJECTIONS}")
        syn_words, trace_words = max(syn_words, w_base), max(trace_words, trace_base)
    _check_input_bound(layers, projections)
    output = next(iter(view.outputs.values()))
    params = np.array([0] * total_slots, dtype=object)
    inits = np.array([0] * total_slots, dtype=object)
    engine_neurons = [0] * engines
    for name, layer in layers.items():
        words, init_words = _neuron_words(view.layers[name].op, target)
        for piece in layer.pieces:
            slot = piece.engine * slots + piece.local
            params[slot:slot + piece.size] = words[piece.start:piece.start + piece.size]
            inits[slot:slot + piece.size] = init_words[piece.start:piece.start + piece.size]
            engine_neurons[piece.engine] += piece.size
    return FpgaConfig(view.name, source.name, source.shape, input_channels, constants, in_words, layers,
                      projections, params, inits, output.name, output.layer, syn_words, trace_words, channels,
                      engines=engines, slots=slots, engine_neurons=engine_neurons)


def _source_pieces(p: LoweredProjection, view: LoweredNetwork, layers: dict[str, Layer], constants: dict[str, int],
                   in_pad: int, slots: int) -> list[tuple[int, int, int]]:
    """(first unit, units, source index of the first unit) of every piece of the projection's source."""
    if p.source in view.inputs:
        return [(0, view.inputs[p.source].size, 0)]
    if p.source in constants:
        return [(0, view.constants[p.source].size, constants[p.source])]
    return [(c.start, c.size, in_pad + c.engine * slots + c.local) for c in layers[p.source].pieces]


def _projections(p: LoweredProjection, view: LoweredNetwork, layers: dict[str, Layer], constants: dict[str, int],
                 in_pad: int, slots: int, target) -> list[Projection]:
    """The table entries of one projection: one per (destination piece, distinct delay, source piece), and a CSR
    block too long for one entry's row pointers in several (source ranges). With a negative exponent the entries
    of one destination piece and delay are chained: the last applies the exponent to their whole sum."""
    sources = _source_pieces(p, view, layers, constants, in_pad, slots)
    dests = layers[p.dest].pieces
    geometry = kernel_geometry(p.weights, target) if p.form == "conv" and p.plastic is None else None
    if geometry is not None:
        in_plane, out_plane = geometry.in_h * geometry.in_w, geometry.out_h * geometry.out_w
        aligned = all(a % in_plane == 0 and n % in_plane == 0 for a, n, _ in sources) and all(
            d.start % out_plane == 0 and d.size % out_plane == 0 for d in dests)
        geometry = geometry if aligned else None
    dense = None
    by_delay: list[tuple[int, np.ndarray | None]] = [(p.uniform_delay(), None)]
    if geometry is None:
        weight = p.effective_matrix() if p.form != "conv" else p.weights.to_dense()     # [out, in]
        dense = np.ascontiguousarray(weight.T.astype(np.int64))
        if p.per_synapse_delays:
            delay = np.broadcast_to(p.delay, weight.shape).T
            by_delay = [(int(d), delay == d) for d in np.unique(delay[dense != 0])]
    single = len(sources) * len(dests) * len(by_delay) == 1
    out = []
    for d in dests:
        for delay, mask in by_delay:
            group = []
            for start, size, base in sources:
                entry = dict(name=p.name, src=p.source, dst=p.dest, src_base=base, src_len=size, dst_base=d.local,
                             dst_len=d.size, delay=delay, exp=p.weight_exp, plastic=p.plastic, engine=d.engine,
                             dst_start=d.start, chained=p.weight_exp < 0)
                if geometry is not None:
                    c0, c1 = start // in_plane, (start + size) // in_plane
                    o0, o1 = d.start // out_plane, (d.start + d.size) // out_plane
                    sub = dataclasses.replace(geometry, in_c=c1 - c0, out_c=o1 - o0)
                    kernel = np.ascontiguousarray(p.weights.kernel[o0:o1, c0:c1].astype(np.int64))
                    group.append(Projection(stored=kernel, geometry=sub, **entry))
                    continue
                block = np.ascontiguousarray(dense[start:start + size, d.start:d.start + d.size])
                if mask is not None:
                    block = np.where(mask[start:start + size, d.start:d.start + d.size], block, 0)
                if p.plastic is None and not single and not block.any():
                    continue                                  # a piece pair (or delay) without synapses
                chunks = csr_form(block) if p.plastic is None else None
                if chunks is None:
                    group.append(Projection(stored=block, **entry))
                    continue
                for a, b in chunks:
                    part = block[a:b]
                    group.append(Projection(stored=CsrRows.of(part).image(), csr=part,
                                            **{**entry, "src_base": base + a, "src_len": b - a}))
            if group:
                group[-1].chained = False         # the last entry into the piece at this delay applies the exponent
            out += group
    return out


def _neuron_words(op, target) -> tuple[list[int], list[int]]:
    shape = op.shape
    full = lambda a: np.broadcast_to(np.asarray(a, dtype=np.int64), shape).reshape(-1)  # noqa: E731
    ku = fixed.DECAY_UNITY - (full(op.du) + 1)
    kv = fixed.DECAY_UNITY - full(op.dv)
    vth = full(op.vth)
    bias = full(fixed.effective_bias(op.bias_mant, op.bias_exp)) & ((1 << target.bias_bits) - 1)
    flags = ((1 if op.reset_mode == "subtract" else 0) | (2 if op.compare == ">=" else 0)
             | (4 if op.reset_timing == "delayed" else 0))
    start = int(op.start_step) << 72
    params = [int(a) | int(b) << 13 | (int(c) & 0x1FFFF) << 26 | int(d) << 43 | op.refractory << 64 | flags << 68
              | (int(c) >> 17 & 1) << 71 | start for a, b, c, d in zip(ku, kv, vth, bias, strict=True)]
    mask = (1 << 24) - 1
    inits = [(int(u) & mask) | (int(v) & mask) << 24 for u, v in zip(full(op.u_init), full(op.v_init), strict=True)]
    return params, inits


def _check_input_bound(layers: dict[str, Layer], projections: list[Projection]) -> None:
    """|a << 6| <= 2^24 for every neuron in the worst case (every source active): u then never needs more
    than one wrap and fits the design's 25 bits, exactly as in the reference."""
    worst: dict[str, np.ndarray] = {name: np.zeros(layer.size, dtype=np.int64) for name, layer in layers.items()}
    plastic_into: dict[str, list[str]] = {}
    groups: dict[tuple[str, int, int], list[Projection]] = {}  # the entries of one projection into one piece
    for proj in projections:                                        # at one delay: the exponent shifts their sum
        groups.setdefault((proj.name, proj.dst_start, proj.delay), []).append(proj)
    for group in groups.values():
        proj = group[0]
        pos = np.zeros(proj.dst_len, dtype=np.int64)
        neg = np.zeros(proj.dst_len, dtype=np.int64)
        for part in group:
            if part.plastic is not None:
                plastic_into.setdefault(part.dst, []).append(part.name)
                top = max(abs(part.plastic.w_min), abs(part.plastic.w_max))
                pos += top * part.src_len
                neg -= top * part.src_len
            else:
                part_pos, part_neg = part.input_bounds()
                pos += part_pos
                neg += part_neg
        bound = np.maximum(np.abs(fixed.floor_shift(pos, proj.exp)), np.abs(fixed.floor_shift(neg, proj.exp)))
        worst[proj.dst][proj.dst_start:proj.dst_start + proj.dst_len] += bound
    for name, bound in worst.items():
        peak = int(bound.max(initial=0)) << fixed.ACT_SHIFT
        if peak > U_INPUT_LIMIT:
            hint = (f"narrow the STDP weight bounds of {', '.join(plastic_into[name])} (--stdp-param w_min=... "
                    "w_max=...)" if name in plastic_into else
                    "compile from the float network so that quantize scales it for fpga")
            raise UnsupportedError(f"layer '{name}': one step's synaptic input can reach {peak:,} (a << 6), beyond "
                                   f"the fpga design's {U_INPUT_LIMIT:,}; {hint}")
