"""Lower a compiled network (its `LoweredNetwork` view) to the FPGA emulator's memories (docs/formats/fpga.md).

Neuron layers are laid out one after another in neuron slots; the network's input channels come first in the
source space, followed by one channel per constant source (biases), padded to a multiple of 32; neuron n is
source 32 * in_words + n. Every projection (QLinear, QPlasticLinear, QConv expanded to its dense matrix) is one
entry of the projection table: a dense block of int8 weights from a source range to a neuron range, stored row
by row (one row per source) from `w_base`, with one delay and one weight exponent. Target limits (delays,
weight and exponent ranges, neuron options) are checked by `nmcompile.lowered.limits` before; what is left here
is the design's own layout: one input stream, one output, channel, slot, table and memory sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import ResourceError, UnsupportedError
from nmcompile.ir import fixed
from nmcompile.lowered import LoweredNetwork
from nmcompile.lowered import Projection as LoweredProjection

MAX_PROJECTIONS = 255           # entries of the projection table (nmcompile/hdl/nmc_core.v)
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
    block: np.ndarray             # [src_len, dst_len] int8 weights, row = source
    w_base: int = 0
    plastic: object | None = None  # QPlasticLinear
    trace_base: int = 0


@dataclass
class FpgaConfig:
    name: str
    input_name: str
    input_shape: tuple[int, ...]
    input_channels: int
    constants: dict[str, int]                     # constant source -> channel
    in_words: int
    layers: dict[str, Layer]
    projections: list[Projection]
    params: np.ndarray                            # [neurons] 88-bit words as Python ints (object array)
    inits: np.ndarray                             # [neurons] 48-bit words
    output_name: str
    output_layer: str
    syn_words: int
    trace_words: int
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
    constants = {name: input_channels + k for k, name in enumerate(view.constants)}
    layers: dict[str, Layer] = {}
    base = 0
    for name, layer in view.layers.items():
        layers[name] = Layer(name, base, layer.size, layer.shape)
        base += layer.size
    channels = input_channels + len(constants)
    in_words = max(1, -(-channels // 32))
    if base > target.neurons_per_core:
        raise ResourceError(f"the network has {base} neurons; the fpga design has {target.neurons_per_core} neuron "
                            "slots")
    inputs_limit = target.fan_in_axons - target.neurons_per_core
    if channels > inputs_limit:
        raise ResourceError(f"the network needs {channels} input channels ({input_channels} inputs + "
                            f"{len(constants)} bias sources); the fpga design has {inputs_limit}")
    in_pad = 32 * in_words
    projections = [_projection(p, view, layers, constants, in_pad) for p in view.projections]
    w_base = trace_base = 0
    for proj in projections:
        proj.w_base = w_base
        w_base += proj.block.size
        if proj.plastic is not None:
            proj.trace_base = trace_base
            trace_base += proj.src_len + proj.dst_len
    memory_words = target.synapse_memory_bits // 8
    if w_base > memory_words:
        biggest = max(projections, key=lambda p: p.block.size)
        raise ResourceError(f"the network needs {w_base:,} synapse words; the fpga design has {memory_words:,} "
                            f"(largest projection '{biggest.name}': {biggest.src_len} x {biggest.dst_len})")
    if len(projections) > MAX_PROJECTIONS:
        raise ResourceError(f"the network has {len(projections)} projections; the fpga design's table holds "
                            f"{MAX_PROJECTIONS}")
    _check_input_bound(layers, projections)
    output = next(iter(view.outputs.values()))
    params = np.array([0] * base, dtype=object)
    inits = np.array([0] * base, dtype=object)
    for name, layer in layers.items():
        params[layer.base:layer.base + layer.size], inits[layer.base:layer.base + layer.size] = _neuron_words(
            view.layers[name].op, target)
    return FpgaConfig(view.name, source.name, source.shape, input_channels, constants, in_words, layers,
                      projections, params, inits, output.name, output.layer, w_base, trace_base)


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


def _projection(p: LoweredProjection, view: LoweredNetwork, layers: dict[str, Layer], constants: dict[str, int],
                in_pad: int) -> Projection:
    if p.source in view.inputs:
        src_base, src_len = 0, view.inputs[p.source].size
    elif p.source in constants:
        src_base, src_len = constants[p.source], 1
    else:
        src_base, src_len = in_pad + layers[p.source].base, layers[p.source].size
    weight = p.effective_matrix() if p.form != "conv" else p.weights.to_dense()         # [out, in]
    dst = layers[p.dest]
    return Projection(p.name, p.source, p.dest, src_base, src_len, dst.base, dst.size, p.uniform_delay(),
                      p.weight_exp, np.ascontiguousarray(weight.T.astype(np.int64)), plastic=p.plastic)


def _check_input_bound(layers: dict[str, Layer], projections: list[Projection]) -> None:
    """|a << 6| <= 2^24 for every neuron in the worst case (every source active): u then never needs more
    than one wrap and fits the design's 25 bits, exactly as in the reference."""
    worst: dict[str, np.ndarray] = {name: np.zeros(layer.size, dtype=np.int64) for name, layer in layers.items()}
    plastic_into: dict[str, list[str]] = {}
    for proj in projections:
        if proj.plastic is not None:
            plastic_into.setdefault(proj.dst, []).append(proj.name)
        block = proj.block
        if proj.plastic is not None:
            top = max(abs(proj.plastic.w_min), abs(proj.plastic.w_max))
            pos = neg = np.full(proj.dst_len, top * proj.src_len, dtype=np.int64)
        else:
            pos = np.clip(block, 0, None).sum(axis=0)
            neg = -np.clip(block, None, 0).sum(axis=0)
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
