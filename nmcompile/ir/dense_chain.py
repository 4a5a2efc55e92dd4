"""Fused float32 dense chains: (Linear -> LIF | IF) pairs, repeated, run step by step for a block of samples.

A dense chain is a float_chain chain without a convolution (`float_chain.find_float_chains` finds both): Linear
projections P_k without delays on 1-D values, each read by a float32 LIF or IF layer N_k (spiking, no refractory
period, synaptic current or membrane batch norm, start step 0) that only P_{k+1} reads (through a Flatten at most).
The unfused engine runs such a network a node at a time over a whole chunk of steps and samples, writing every
layer's [T, B, N] values to memory and back, with a Python call per node; `dense_chain_chunk` runs a block of
samples through every layer of a step before the next step, the block's sums and spikes ([samples, N] each) staying
in the core's cache, in one compiled call.

It computes exactly what the unfused engine computes, operation for operation, so the bits are the same:

- each P_k is `nmcompile.ir.linear_sums.linear_rows` on the block's rows of the step (an output depends on its row
  only: from +0, fma(x[k], W[j, k], acc) over the nonzero inputs in order, then + bias);
- each N_k is `jit.float_neuron_plain` (the common form: immediate reset) or `jit.float_neuron` (a delayed or
  snnTorch reset), the functions the unfused FloatNeuron kernel calls, a layer of fewer than
  `jit.SHORT_ROW` neurons run as one row of the block's samples with its parameters repeated, as there.

Chains are fused only while the whole chain's weights, tiled, fit in `MAX_WEIGHT_BYTES`, so they stay in the core's
cache across the steps: a wider layer, whose product over the whole chunk reuses each weight vector
for many rows, runs unfused. Measured on the digits MLP of benchmarks/bench_simulate.py (64 -> 64 LIF -> 10 LIF,
T = 25, batch 128, one thread): 0.53 ms against 0.97 ms unfused, the same spikes (benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmcompile.ir import jit
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.kernels import FloatNeuron, Kernel
from nmcompile.ir.linear_sums import DENSE_FROM, EVENTS_ONLY, ROW_BLOCK, linear_rows

MAX_WEIGHT_BYTES = 1 << 20     # tiled float32 weights of a whole dense chain, at most (half the 2 MiB L2 per core
                               # of the benchmark machine, lscpu)
BLOCK_VALUES = 1 << 13         # samples per block x the widest layer's neurons (32 KiB of float32 per scratch row
                               # set: the block's sums and two spike buffers stay in L1/L2)

# geometry[k] columns
INPUTS, OUTPUTS, WEIGHTS_AT, WEIGHTS_END, BIAS_AT, LANES, PARAMS_AT, PARAMS_LENGTH, STATE_AT, PLAIN, SHORT, \
    HAS_BETA, UNIT_GAIN, ZERO_BIAS, COMPARE_GE, RESET_MODE, TIMING = range(17)
GEOMETRY = 17


@dataclass
class FloatChainLayer:
    """One (projection, neuron) pair of a float32 chain (this module's or nmcompile.ir.float_chain's), the neuron's
    kernel, and the flatten between it and the pair before."""

    projection: str
    neuron: str
    kernel: FloatNeuron
    flatten: str | None = None


@jit.jit
def _parameter(params, at, length, j, count):
    """The first `count` values of a layer's j-th parameter array (`_update`)."""
    return params[at + j * length:at + j * length + count]


@jit.jit
def _update(k, sums, v, destination, geometry, params, zero, one, i_none, left_none, record_none):
    """N_k's update of one step for a block: sums [nb, N] in, v [nb, N] (the block's rows) updated, spikes into
    destination [nb, N]; the unfused kernel's function and arguments (module docstring). Layer k's parameters
    (jit.float_neuron's alpha .. bn_shift) are params[at + j L : at + (j + 1) L] for j = 0 .. 9, at and L its
    PARAMS_AT and PARAMS_LENGTH (contiguous slices: the loops vectorise)."""
    g = geometry[k]
    samples, size = sums.shape
    at, length = g[PARAMS_AT], g[PARAMS_LENGTH]
    count = samples * size if g[SHORT] else size
    beta, gain, bias = _parameter(params, at, length, 2, count), _parameter(params, at, length, 3, count), \
        _parameter(params, at, length, 4, count)
    threshold, v_reset = _parameter(params, at, length, 5, count), _parameter(params, at, length, 6, count)
    if g[PLAIN]:
        shape = (1, 1, count) if g[SHORT] else (1, samples, size)
        jit.float_neuron_plain(sums.reshape(shape), v.reshape(shape[1:]), beta, gain, bias, threshold, v_reset,
                               g[HAS_BETA] != 0, g[UNIT_GAIN] != 0, g[ZERO_BIAS] != 0, g[COMPARE_GE] != 0,
                               g[RESET_MODE], zero, one, destination.reshape(shape))
        return
    jit.float_neuron(sums.reshape(1, samples, size), v, i_none, left_none, _parameter(params, at, length, 0, count),
                     _parameter(params, at, length, 1, count), beta, gain, bias, threshold, v_reset,
                     _parameter(params, at, length, 7, count), _parameter(params, at, length, 8, count),
                     _parameter(params, at, length, 9, count), False, g[HAS_BETA] != 0, g[UNIT_GAIN] != 0,
                     g[ZERO_BIAS] != 0, False, True, g[COMPARE_GE] != 0, g[RESET_MODE], g[TIMING], 0, zero, one,
                     destination.reshape(1, samples, size), record_none, record_none, False)


@jit.jit
def dense_chain_chunk(first, stop, block, x, out, geometry, dense_from, weights, biases, params, state, zero, one):
    """Samples first .. stop-1 of a chunk x [T, B, K] through every layer, `block` samples at a time, each step's
    layers in order before the next step: the last layer's spikes into out [T, B, N_L], every layer's v (rows of
    `state`, layer k's [B, N_k] from geometry[k, STATE_AT]) advanced."""
    steps, batch = x.shape[0], x.shape[1]
    layers = geometry.shape[0]
    widest = 1
    for k in range(layers):
        widest = max(widest, geometry[k, OUTPUTS])
    sums = np.empty(block * widest, np.float32)
    spikes = np.empty((2, block * widest), np.float32)      # layer k writes spikes[k % 2], layer k + 1 reads it
    i_none = np.empty((0, 0), np.float32)
    left_none = np.empty((0, 0), np.int64)
    record_none = np.empty((0, 0, 0), np.float32)
    for b0 in range(first, stop, block):
        b1 = min(stop, b0 + block)
        samples = b1 - b0
        for t in range(steps):
            values = x[t, b0:b1]
            for k in range(layers):
                g = geometry[k]
                size = g[OUTPUTS]
                layer_sums = sums[:samples * size].reshape(samples, size)
                linear_rows(values, weights[g[WEIGHTS_AT]:g[WEIGHTS_END]], biases[g[BIAS_AT]:g[BIAS_AT] + g[LANES]],
                            layer_sums, 0, samples, dense_from[k], ROW_BLOCK)
                v = state[g[STATE_AT]:g[STATE_AT] + batch * size].reshape(batch, size)[b0:b1]
                if k == layers - 1:
                    destination = out[t, b0:b1]
                else:
                    destination = spikes[k % 2, :samples * size].reshape(samples, size)
                _update(k, layer_sums, v, destination, geometry, params, zero, one, i_none, left_none, record_none)
                values = destination


def fits(graph: Graph, layers: list[FloatChainLayer]) -> bool:
    """Whether the pairs `layers` (all Linear projections) form a dense chain (module docstring)."""
    shapes, tiled = graph.shapes(), 0
    for layer in layers:
        op, kernel = graph.node(layer.projection), layer.kernel
        if not isinstance(op, O.Linear) or len(shapes[graph.in_edges(layer.projection)[0].src]) != 1:
            return False
        if kernel.cuba or kernel.mpbn or kernel.op.refractory:
            return False
        outputs, inputs = op.weight.shape
        tiled += inputs * max(16, -(-outputs // 16) * 16) * 4
    return tiled <= MAX_WEIGHT_BYTES


class FloatChainNodes:
    """What the simulator reads of a float32 chain: the node it reads (`source`), its pairs, its first projection
    (`head`), the nodes after it (`followers`), its last neuron layer (`last`) and the Output that layer feeds alone,
    which the chain may write directly (`output`, set by the finder)."""

    long_chunks: bool        # whether the simulator should take long chunks (FUSED_CHUNK_BYTES)
    checks_input: bool       # whether run(checked=False) checks an input for NaN and inf as it reads it

    def __init__(self, source: str, layers: list[FloatChainLayer]):
        self.source = source
        self.layers = layers
        self.head = layers[0].projection
        self.last = layers[-1].neuron
        self.output: str | None = None
        self.followers = [n for layer in layers for n in (layer.flatten, layer.projection, layer.neuron) if n][1:]


class DenseChain(FloatChainNodes):
    """A dense chain: `run(x, step0, out)` advances it by a chunk x [T, B, K] of its input (float_chain's interface)."""

    long_chunks = False      # a block's state stays in cache across its steps: the float32 chunks suffice
    checks_input = False     # its input is checked for NaN and inf before it runs (simulate._convert)

    def __init__(self, kernels: dict[str, Kernel], source: str, layers: list[FloatChainLayer]):
        super().__init__(source, layers)
        self.sizes = [int(np.prod(layer.kernel.out_shape)) for layer in layers]
        self.block_samples = max(1, BLOCK_VALUES // max(self.sizes))
        products = [kernels[layer.projection].fn.sums for layer in layers]   # the unfused kernels' own products
        self.weights = np.concatenate([p.weights for p in products])
        self.biases = np.concatenate([p.bias for p in products])
        self.dense_from = np.array([DENSE_FROM if p.dense_allowed else EVENTS_ONLY for p in products])
        self.multiply_adds = sum(p.inputs * p.outputs for p in products)
        self.geometry = np.zeros((len(layers), GEOMETRY), np.int64)
        weights_at = bias_at = 0
        for row, product, layer in zip(self.geometry, products, layers, strict=True):
            row[INPUTS], row[OUTPUTS], row[LANES] = product.inputs, product.outputs, len(product.bias)
            row[WEIGHTS_AT], row[WEIGHTS_END], row[BIAS_AT] = weights_at, weights_at + len(product.weights), bias_at
            weights_at, bias_at = weights_at + len(product.weights), bias_at + len(product.bias)
            args = jit.float_arguments(layer.kernel)
            row[PLAIN] = jit.plain_float_form(layer.kernel)
            row[SHORT] = row[PLAIN] and 1 < product.outputs < jit.SHORT_ROW
            for column, flag in ((HAS_BETA, "has_beta"), (UNIT_GAIN, "unit_gain"), (ZERO_BIAS, "zero_bias"),
                                 (COMPARE_GE, "compare_ge"), (RESET_MODE, "reset_mode"), (TIMING, "timing")):
                row[column] = args[jit.FLAGS[flag]]
        self._params_block = 0
        self.params = np.zeros(0, np.float32)
        self._state: np.ndarray | None = None
        self._views: list[np.ndarray] = []

    def _parameters(self, block: int) -> np.ndarray:
        """Every layer's per-neuron arrays (jit.float_neuron's alpha .. bn_shift), one after the other, a short
        layer's each repeated `block` times (it runs a block's samples as one row)."""
        if self._params_block != block:
            pieces, at = [], 0
            for row, layer in zip(self.geometry, self.layers, strict=True):
                arrays = np.array(jit.float_arguments(layer.kernel)[:jit.FLOAT_PARAMETERS], np.float32)
                arrays = np.tile(arrays, block) if row[SHORT] else arrays
                row[PARAMS_AT], row[PARAMS_LENGTH] = at, arrays.shape[1]
                pieces.append(arrays.reshape(-1))
                at += arrays.size
            self.params, self._params_block = np.concatenate(pieces), block
        return self.params

    def _state_for(self, batch: int) -> np.ndarray:
        """Every layer's v, layer after layer as [B, N_k] rows of one array (kept for the last batch size) whose views
        are the kernels' v (so the kernels hold the state between chunks); read from the kernels when one was given a
        new v since (a reset)."""
        kernels = [layer.kernel for layer in self.layers]
        if (self._state is not None and self._views and self._views[0].shape[0] == batch
                and all(k.v is view for k, view in zip(kernels, self._views, strict=True))):
            return self._state
        state = self._state
        if state is None or state.shape != (batch * sum(self.sizes),):
            state = np.empty(batch * sum(self.sizes), np.float32)
        views, at = [], 0
        for row, kernel, size in zip(self.geometry, kernels, self.sizes, strict=True):
            row[STATE_AT] = at
            view = state[at:at + batch * size].reshape(batch, *kernel.out_shape)
            view[...] = np.asarray(kernel.v, np.float32).reshape(view.shape)
            kernel.v = view
            views.append(view)
            at += batch * size
        self._state, self._views = state, views
        return state

    def run(self, x: np.ndarray, step0: int, out: np.ndarray | None = None) -> np.ndarray:
        """The last layer's spikes [T, B, N_L] (float32) for the chunk x [T, B, K] (float32), every state advanced,
        written into `out` when it is a C-contiguous float32 array of that shape."""
        steps, batch = x.shape[:2]
        shape = (steps, batch, self.sizes[-1])
        if out is None or out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            out = np.empty(shape, np.float32)
        if not steps or not batch:
            return out
        x = np.ascontiguousarray(x, dtype=np.float32)
        block = min(batch, self.block_samples)
        params, state = self._parameters(block), self._state_for(batch)
        work = steps * batch * (self.multiply_adds + sum(self.sizes))

        def part(first: int, stop: int) -> None:
            dense_chain_chunk(first, stop, block, x, out, self.geometry, self.dense_from, self.weights, self.biases,
                              params, state, np.float32(0), np.float32(1))

        jit.split_rows(batch, batch > 1 and work >= jit.PARALLEL_MIN_ADDS, part)
        return out

