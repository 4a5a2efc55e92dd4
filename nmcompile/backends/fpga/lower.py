"""Lower a compiled network (its `LoweredNetwork` view) to the FPGA emulator's memories (docs/formats/fpga.md).

Neuron layers are laid out one after another in neuron slots; the network's input channels come first in the
source space, followed by the units of every constant source (biases: a channel per unit, spiking every step),
padded to a multiple of 32; neuron n is source 32 * in_words + n. Every projection (QLinear, QPlasticLinear,
QConv) connects a source range to a neuron range with one delay and one weight exponent; its int8 weights are
stored from `w_base` in the form `storage` picks: a convolution as its kernel (two table entries), anything else
as a dense block, one row per source. Target limits (delays, weight and exponent ranges, neuron options) are
checked by `nmcompile.lowered.limits` before; what is left here is the design's own layout: one input stream,
one output, channel, slot, table and memory sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmcompile.backends.fpga.storage import ConvGeometry, kernel_geometry
from nmcompile.errors import ResourceError, UnsupportedError
from nmcompile.ir import arraymath, fixed
from nmcompile.lowered import LoweredNetwork
from nmcompile.lowered import Projection as LoweredProjection

MAX_PROJECTIONS = 255           # entries of the projection table (nmcompile/hdl/nmc_core.v)
MAX_SOURCES = 1 << 16           # 16-bit source indices: input channels (padded) + neurons
U_INPUT_LIMIT = 1 << 24          # |a << 6| per step: keeps u within (-2^23, 2^23] (nmcompile/hdl/nmc_neuron.v)
QSTEPS = 64                      # input queue depth of the generated design, in steps


@dataclass
class Layer:
    name: str
    base: int
    size: int
    shape: tuple[int, ...]


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
    stored: np.ndarray            # int8 weights as stored: dense [src_len, dst_len] (row = source), or the kernel
    geometry: ConvGeometry | None = None   # a convolution stored as its kernel
    w_base: int = 0
    plastic: object | None = None  # QPlasticLinear
    trace_base: int = 0

    @property
    def form(self) -> str:
        return "conv" if self.geometry is not None else "dense"

    @property
    def entries(self) -> int:
        """Projection table entries: a conv projection's geometry takes a second one."""
        return 2 if self.geometry is not None else 1

    def input_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per destination: the sums of the positive and of the negative weights (every source active)."""
        if self.geometry is None:
            return np.clip(self.stored, 0, None).sum(axis=0), np.clip(self.stored, None, 0).sum(axis=0)
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
    params: np.ndarray                            # [neurons] 72-bit words as Python ints (object array)
    inits: np.ndarray                             # [neurons] 48-bit words
    output_name: str
    output_layer: str
    syn_words: int
    trace_words: int
    channels: int = 0                             # input channels + constant-source units (before padding)
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


def lower(view: LoweredNetwork, target) -> FpgaConfig:
    """The design's memories for a view that `check_target` accepted for `target`."""
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
    layers: dict[str, Layer] = {}
    base = 0
    for name, layer in view.layers.items():
        layers[name] = Layer(name, base, layer.size, layer.shape)
        base += layer.size
    in_words = max(1, -(-channels // 32))
    if base > target.neurons_per_core:
        raise ResourceError(f"the network has {base:,} neurons; the fpga design has {target.neurons_per_core:,} "
                            "neuron slots")
    if 32 * in_words + base > MAX_SOURCES:
        raise ResourceError(f"the network needs {channels:,} input channels ({input_channels:,} inputs + "
                            f"{channels - input_channels:,} bias units) and {base:,} neurons; the fpga design "
                            f"addresses {MAX_SOURCES:,} sources (channels padded to 32 + neurons)")
    in_pad = 32 * in_words
    projections = [_projection(p, view, layers, constants, in_pad, target) for p in view.projections]
    w_base = trace_base = 0
    for proj in projections:
        proj.w_base = w_base
        w_base += proj.stored.size
        if proj.plastic is not None:
            proj.trace_base = trace_base
            trace_base += proj.src_len + proj.dst_len
    memory_words = target.synapse_memory_bits // 8
    if w_base > memory_words:
        biggest = max(projections, key=lambda p: p.stored.size)
        raise ResourceError(f"the network needs {w_base:,} synapse words; the fpga design has {memory_words:,} "
                            f"(largest projection '{biggest.name}': {biggest.stored.size:,} {biggest.form} weights)")
    entries = sum(p.entries for p in projections)
    if entries > MAX_PROJECTIONS:
        raise ResourceError(f"the network's projections need {entries} table entries; the fpga design's table "
                            f"holds {MAX_PROJECTIONS}")
    _check_input_bound(layers, projections)
    output = next(iter(view.outputs.values()))
    params = np.array([0] * base, dtype=object)
    inits = np.array([0] * base, dtype=object)
    for name, layer in layers.items():
        params[layer.base:layer.base + layer.size], inits[layer.base:layer.base + layer.size] = _neuron_words(
            view.layers[name].op, target)
    return FpgaConfig(view.name, source.name, source.shape, input_channels, constants, in_words, layers,
                      projections, params, inits, output.name, output.layer, w_base, trace_base, channels)


def _neuron_words(op, target) -> tuple[list[int], list[int]]:
    shape = op.shape
    full = lambda a: np.broadcast_to(np.asarray(a, dtype=np.int64), shape).reshape(-1)  # noqa: E731
    ku = fixed.DECAY_UNITY - (full(op.du) + 1)
    kv = fixed.DECAY_UNITY - full(op.dv)
    vth = full(op.vth)
    bias = full(fixed.effective_bias(op.bias_mant, op.bias_exp)) & ((1 << target.bias_bits) - 1)
    flags = ((1 if op.reset_mode == "subtract" else 0) | (2 if op.compare == ">=" else 0)
             | (4 if op.reset_timing == "delayed" else 0))
    params = [int(a) | int(b) << 13 | int(c) << 26 | int(d) << 43 | op.refractory << 64 | flags << 68
              for a, b, c, d in zip(ku, kv, vth, bias, strict=True)]
    mask = (1 << 24) - 1
    inits = [(int(u) & mask) | (int(v) & mask) << 24 for u, v in zip(full(op.u_init), full(op.v_init), strict=True)]
    return params, inits


def _projection(p: LoweredProjection, view: LoweredNetwork, layers: dict[str, Layer], constants: dict[str, int],
                in_pad: int, target) -> Projection:
    if p.source in view.inputs:
        src_base, src_len = 0, view.inputs[p.source].size
    elif p.source in constants:
        src_base, src_len = constants[p.source], view.constants[p.source].size
    else:
        src_base, src_len = in_pad + layers[p.source].base, layers[p.source].size
    dst = layers[p.dest]
    geometry = kernel_geometry(p.weights, target) if p.form == "conv" and p.plastic is None else None
    if geometry is not None:
        stored = np.ascontiguousarray(p.weights.kernel.astype(np.int64))
    else:
        weight = p.effective_matrix() if p.form != "conv" else p.weights.to_dense()     # [out, in]
        stored = np.ascontiguousarray(weight.T.astype(np.int64))
    return Projection(p.name, p.source, p.dest, src_base, src_len, dst.base, dst.size, p.uniform_delay(),
                      p.weight_exp, stored, geometry, plastic=p.plastic)


def _check_input_bound(layers: dict[str, Layer], projections: list[Projection]) -> None:
    """|a << 6| <= 2^24 for every neuron in the worst case (every source active): u then never needs more
    than one wrap and fits the design's 25 bits, exactly as in the reference."""
    worst: dict[str, np.ndarray] = {name: np.zeros(layer.size, dtype=np.int64) for name, layer in layers.items()}
    plastic_into: dict[str, list[str]] = {}
    for proj in projections:
        if proj.plastic is not None:
            plastic_into.setdefault(proj.dst, []).append(proj.name)
        if proj.plastic is not None:
            top = max(abs(proj.plastic.w_min), abs(proj.plastic.w_max))
            pos = neg = np.full(proj.dst_len, top * proj.src_len, dtype=np.int64)
        else:
            pos, neg = proj.input_bounds()
            neg = -neg
        bound = np.maximum(np.abs(fixed.floor_shift(pos, proj.exp)), np.abs(fixed.floor_shift(-neg, proj.exp)))
        worst[proj.dst] = worst[proj.dst] + bound
    for name, bound in worst.items():
        peak = int(bound.max(initial=0)) << fixed.ACT_SHIFT
        if peak > U_INPUT_LIMIT:
            hint = (f"narrow the STDP weight bounds of {', '.join(plastic_into[name])} (--stdp-param w_min=... "
                    "w_max=...)" if name in plastic_into else
                    "compile from the float network so that quantize scales it for fpga")
            raise UnsupportedError(f"layer '{name}': one step's synaptic input can reach {peak:,} (a << 6), beyond "
                                   f"the fpga design's {U_INPUT_LIMIT:,}; {hint}")
