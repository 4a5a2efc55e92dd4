"""Lower the compiled integer graph to the FPGA emulator's memories (docs/formats/fpga.md).

Neuron layers are laid out one after another in neuron slots; the network's input channels come first in the
source space, followed by one channel per constant source (biases), padded to a multiple of 32; neuron n is
source 32 * in_words + n. Every projection (QLinear, QPlasticLinear, QConv expanded to its dense matrix) is one
entry of the projection table: a dense block of int8 weights from a source range to a neuron range, stored row
by row (one row per source) from `w_base`, with one delay (1..16) and one weight exponent. What the design cannot
run exactly is refused here, naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import ResourceError, UnsupportedError
from nmcompile.ir import arraymath, fixed
from nmcompile.ir.graph import Graph

MAX_DELAY = 16
U_INPUT_LIMIT = 1 << 24          # |a << 6| per step: keeps u within (-2^23, 2^23] (hdl/nmc_neuron.v)
BIAS_BITS = 21
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
    params: np.ndarray                            # [neurons] 72-bit words as Python ints (object array)
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


def lower(graph: Graph, target) -> FpgaConfig:
    graph.verify()
    shapes = graph.shapes()
    inputs = graph.inputs
    if len(inputs) != 1:
        raise UnsupportedError(f"the fpga design has one input stream; this network has {len(inputs)} inputs")
    if len(graph.outputs) != 1:
        raise UnsupportedError(f"the fpga design streams one output; this network has {len(graph.outputs)}")
    input_name = inputs[0]
    input_channels = int(np.prod(shapes[input_name]))
    constants: dict[str, int] = {}
    layers: dict[str, Layer] = {}
    base = 0
    for name in graph.order():
        op = graph.node(name)
        if op.kind == "Constant":
            if float(op.value) != 1.0:
                raise UnsupportedError(f"constant source '{name}' has value {op.value}; the fpga design's channels "
                                       "carry spikes (value 1)")
            constants[name] = input_channels + len(constants)
        elif op.kind == "QNeuron":
            _check_neuron(name, op)
            layers[name] = Layer(name, base, op.size, tuple(op.shape))
            base += op.size
        elif op.kind not in ("Input", "Output", "Flatten", "Delay", "QLinear", "QPlasticLinear", "QConv"):
            raise UnsupportedError(f"node '{name}' ({op.kind}) has no fpga form; the design runs integer LIF "
                                   "layers fed by dense, convolutional and plastic projections")
    channels = input_channels + len(constants)
    in_words = max(1, -(-channels // 32))
    _check_size("neurons", base, target.neurons_per_core, "neuron slots")
    inputs_limit = target.fan_in_axons - target.neurons_per_core
    if channels > inputs_limit:
        raise ResourceError(f"the network needs {channels} input channels ({input_channels} inputs + "
                            f"{len(constants)} bias sources); the fpga design has {inputs_limit}")
    in_pad = 32 * in_words
    projections = []
    for name in graph.order():
        op = graph.node(name)
        if op.kind in ("QLinear", "QPlasticLinear", "QConv"):
            projections.append(_projection(graph, name, op, shapes, layers, constants, input_name, in_pad))
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
    if len(projections) > 255:
        raise ResourceError(f"the network has {len(projections)} projections; the fpga design's table holds 255")
    _check_input_bound(graph, layers, projections)
    output_name = graph.outputs[0]
    src, _ = _trace_back(graph, graph.in_edges(output_name)[0].src)
    if graph.node(src).kind != "QNeuron" or src != _only_source(graph, output_name):
        raise UnsupportedError(f"output '{output_name}' must be fed by one neuron layer directly on fpga")
    params = np.array([0] * base, dtype=object)
    inits = np.array([0] * base, dtype=object)
    for name, layer in layers.items():
        params[layer.base:layer.base + layer.size], inits[layer.base:layer.base + layer.size] = _neuron_words(
            name, graph.node(name))
    return FpgaConfig(graph.name, input_name, tuple(shapes[input_name]), input_channels, constants, in_words, layers,
                      projections, params, inits, output_name, src, w_base, trace_base)


def _check_size(what: str, used: int, limit: int, unit: str) -> None:
    if used > limit:
        raise ResourceError(f"the network has {used} {what}; the fpga design has {limit} {unit}")


def _check_neuron(name: str, op) -> None:
    where = f"layer '{name}'"
    if not op.spiking:
        raise UnsupportedError(f"{where}: a non-spiking readout is not supported by the fpga design (supported by: "
                               "spinnaker2)")
    if op.reset_timing != "immediate":
        raise UnsupportedError(f"{where}: delayed reset is not supported by the fpga design (supported by: "
                               "spinnaker2)")
    if op.reset_mode not in ("zero", "subtract"):
        raise UnsupportedError(f"{where}: reset mode '{op.reset_mode}' is not supported by the fpga design")
    if op.refractory > 15:
        raise UnsupportedError(f"{where}: a refractory period of {op.refractory} steps exceeds the fpga design's 15")
    if np.any(op.vth >= 1 << fixed.VTH_BITS):
        raise UnsupportedError(f"{where}: vth beyond 17 bits")
    bias = fixed.effective_bias(op.bias_mant, op.bias_exp)
    if np.any(np.abs(bias) >= 1 << (BIAS_BITS - 1)):
        raise UnsupportedError(f"{where}: a bias of {int(np.abs(bias).max())} exceeds the fpga design's 21-bit bias")


def _neuron_words(name: str, op) -> tuple[list[int], list[int]]:
    shape = op.shape
    full = lambda a: np.broadcast_to(np.asarray(a, dtype=np.int64), shape).reshape(-1)  # noqa: E731
    ku = fixed.DECAY_UNITY - (full(op.du) + 1)
    kv = fixed.DECAY_UNITY - full(op.dv)
    vth = full(op.vth)
    bias = full(fixed.effective_bias(op.bias_mant, op.bias_exp)) & ((1 << BIAS_BITS) - 1)
    flags = (1 if op.reset_mode == "subtract" else 0) | (2 if op.compare == ">=" else 0)
    params = [int(a) | int(b) << 13 | int(c) << 26 | int(d) << 43 | op.refractory << 64 | flags << 68
              for a, b, c, d in zip(ku, kv, vth, bias, strict=True)]
    mask = (1 << 24) - 1
    inits = [(int(u) & mask) | (int(v) & mask) << 24 for u, v in zip(full(op.u_init), full(op.v_init), strict=True)]
    return params, inits


def _trace_back(graph: Graph, name: str) -> tuple[str, int]:
    """The source behind Flatten and Delay nodes, and the delay those Delay nodes and recurrent edges add."""
    delay = 0
    while graph.node(name).kind in ("Flatten", "Delay"):
        op = graph.node(name)
        if op.kind == "Delay":
            d = np.asarray(op.delay)
            if d.size and np.ptp(d):
                raise UnsupportedError(f"delay node '{name}' has different delays per element; the fpga design has "
                                       "one delay per projection")
            delay += int(d.reshape(-1)[0]) if d.size else 0
        edges = graph.in_edges(name)
        if len(edges) != 1:
            raise UnsupportedError(f"node '{name}' must have exactly one input on fpga")
        delay += int(edges[0].recurrent)
        name = edges[0].src
    return name, delay


def _only_source(graph: Graph, name: str) -> str | None:
    edges = graph.in_edges(name)
    if len(edges) != 1:
        return None
    return _trace_back(graph, edges[0].src)[0]


def _consumer(graph: Graph, name: str) -> tuple[str, int]:
    """The neuron layer a projection feeds (through Flatten) and the steps recurrent edges on the way add."""
    out = graph.out_edges(name)
    delay = 0
    while len(out) == 1 and graph.node(out[0].dst).kind == "Flatten":
        delay += int(out[0].recurrent)
        out = graph.out_edges(out[0].dst)
    if len(out) != 1 or graph.node(out[0].dst).kind != "QNeuron":
        raise UnsupportedError(f"projection '{name}' must feed one neuron layer on fpga")
    return out[0].dst, delay + int(out[0].recurrent)


def _projection(graph, name, op, shapes, layers, constants, input_name, in_pad) -> Projection:
    edges = graph.in_edges(name)
    if len(edges) != 1:
        raise UnsupportedError(f"projection '{name}' must have exactly one input on fpga")
    src, extra_delay = _trace_back(graph, edges[0].src)
    dst, after = _consumer(graph, name)
    extra_delay += int(edges[0].recurrent) + after     # a recurrent edge reads the previous step
    kind = graph.node(src).kind
    if kind == "Input":
        src_base, src_len = 0, int(np.prod(shapes[src]))
    elif kind == "Constant":
        src_base, src_len = constants[src], 1
    elif kind == "QNeuron":
        src_base, src_len = in_pad + layers[src].base, layers[src].size
    else:
        raise UnsupportedError(f"projection '{name}' reads '{src}' ({kind}); fpga projections read inputs, bias "
                               "sources or neuron layers")
    in_shape = shapes[edges[0].src]
    if op.kind == "QConv":
        weight = _conv_matrix(name, op, in_shape)                            # [out, in]
        delay = op.delay
    else:
        weight = op.effective_weight()
        d = np.asarray(op.delay)
        if d.size and np.ptp(d):
            raise UnsupportedError(f"projection '{name}' has per-synapse delays; the fpga design has one delay per "
                                   "projection (supported by: loihi2, spinnaker2)")
        delay = int(d.reshape(-1)[0])
    delay += extra_delay
    if not 1 <= delay <= MAX_DELAY:
        raise UnsupportedError(f"projection '{name}': a delay of {delay} steps is outside the fpga design's "
                               f"1..{MAX_DELAY}")
    if weight.size and (weight.min() < -128 or weight.max() > 127):
        raise UnsupportedError(f"projection '{name}': weights {int(weight.min())}..{int(weight.max())} do not fit "
                               "the fpga design's int8")
    if not -8 <= op.weight_exp <= 8:
        raise UnsupportedError(f"projection '{name}': weight exponent {op.weight_exp} outside -8..8")
    return Projection(name, src, dst, src_base, src_len, layers[dst].base, layers[dst].size, delay,
                      int(op.weight_exp), np.ascontiguousarray(weight.T.astype(np.int64)),
                      plastic=op if op.kind == "QPlasticLinear" else None)


def _conv_matrix(name: str, op, in_shape) -> np.ndarray:
    """The convolution as a dense [out, in] matrix (exact: the same integer sums)."""
    n_in = int(np.prod(in_shape))
    eye = np.eye(n_in, dtype=np.int64).reshape(n_in, *in_shape)
    columns = arraymath.int_conv(eye, op.weight, op.stride, op.padding, op.dilation, op.groups)
    matrix = columns.reshape(n_in, -1).T
    if op.wrap_bits:
        worst = max(int(np.clip(matrix, 0, None).sum(axis=1).max(initial=0)),
                    int(-np.clip(matrix, None, 0).sum(axis=1).min(initial=0)))
        if fixed.shift_left(np.int64(worst), op.weight_exp) >= 1 << (op.wrap_bits - 1):
            raise UnsupportedError(f"convolution '{name}' can wrap at {op.wrap_bits} bits; the fpga design does not "
                                   "wrap")
    return matrix


def _check_input_bound(graph: Graph, layers: dict[str, Layer], projections: list[Projection]) -> None:
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
