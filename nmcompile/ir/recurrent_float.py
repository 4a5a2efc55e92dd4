"""Recurrent float32 components as one compiled loop per chunk of steps (mode 'float32', engine 'compiled').

A recurrent component of the form

    N      a spiking float neuron layer (LIF, IF, CubaLIF, MPBNLIF: the stock FloatNeuron kernel), 1-D
    P_k    float projections whose only input is N's output and whose output feeds N: a Linear without delays (bias
           allowed: snnTorch's RLeaky/RSynaptic `all_to_all` feedback) or a Scale (their `one_to_one` feedback, V)
    ext    N's inputs from outside the component (computed for the whole chunk before it)

runs every step of a chunk in one call of `float_recurrent_loop`. With r_in, r_out whether the edges N -> P_k and
P_k -> N are recurrent (deliver the previous step):

    P_k[t] = W_k @ N[t - r_in] + b_k        (Scale: P_k[t] = V_k * N[t - r_in], elementwise)
    N[t]   = neuron_update(in-edge terms of N at step t, added in the order of N's in-edges)

per step and sample. N's output is its spikes, exactly 0 or 1, so the product is event-driven: the weight rows of the
active inputs are added in increasing input index, in float32, starting from +0.0, then the bias is added: each
output is one sequential float32 sum. The sums run a tile of TILE_COLUMNS outputs at a time, for every sample while
the tile's weights are cached, in vector registers (`jit.tile_sum_float32`: one lane per output, so the vector width
reorders no sum). The numpy engine and the step loop compute `x @ W.T` with a BLAS sgemm instead (OpenBLAS, or
torch's kernel under the compiled engine), whose blocked summation order differs: results agree with them bit for
bit when every partial sum is exact in float32 (small integer or dyadic weights), and otherwise differ in the last
bits of a sum, which can flip a spike whose membrane lands within those bits of the threshold. A Scale product is
numpy's `x * V` itself. The drive of N adds its in-edge terms in the step loop's order (`simulate._run_stepwise`),
and the update is `jit.float_neuron` (or `float_neuron_plain` for its plain form) called on the thread's samples for
one step: the compiled step loop's own update. Samples are independent and are split over threads
(`jit.split_rows`).

State across chunks is the kernels' and the simulator's: N's v (and i, refractory counter) in its kernel, N's and
each P_k's output of the step before the chunk in `previous`, so any chunking of a run or a stream gives the loop's
same bits. A start step holds N (output 0, state as reset) as `simulate._run_stepwise` does. float64 components never
come here (their bits are the numpy engine's BLAS products: docs/simulator.md), nor do readout (non-spiking) layers,
whose fed-back values are not 0/1, per-synapse delays or other ops in the cycle: they keep `_run_stepwise`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from nmcompile.ir import jit as J
from nmcompile.ir import kernels as K
from nmcompile.ir import ops as O
from nmcompile.ir.arraymath import Float32Linear
from nmcompile.ir.graph import Graph
from nmcompile.ir.recurrent import feedback_edges

jit = J.jit

DENSE, ONE_TO_ONE = 0, 1          # kinds of P_k: a Linear's weight rows, a Scale's elementwise factor
TILE_COLUMNS = J.TILE_WIDTH       # outputs per tile of a dense sum: four vectors of sums in registers, and the
                                  # tile's weights of a 1000-input layer (256 KB) in L2 while every sample reads them


@jit
def _project(spikes, first, stop, kind, weight_tiles, scale, bias, has_bias, active, counts, sums, out):
    """out[b] for the samples first..stop-1 of spikes [B, N] (0/1): DENSE, the float32 sum over the inputs i with
    spikes[b, i] != 0, in increasing i, of W[:, i] (weight_tiles [tiles, in, TILE_COLUMNS], W^T cut into column
    tiles, zero-padded), then + bias when `has_bias`; ONE_TO_ONE, spikes[b] * scale. A tile is summed for every
    sample while it is in cache. active [samples, in], counts [samples] and sums [samples, tiles * TILE_COLUMNS]
    are scratch."""
    inputs, outputs = spikes.shape[1], out.shape[1]
    if kind == ONE_TO_ONE:
        for b in range(first, stop):
            for j in range(outputs):
                out[b, j] = spikes[b, j] * scale[j]
        return
    for b in range(first, stop):
        found = 0
        for i in range(inputs):
            active[b - first, found] = i
            found += spikes[b, i] != 0
        counts[b - first] = found
    for tile in range(weight_tiles.shape[0]):
        for b in range(first, stop):
            J.tile_sum_float32(weight_tiles[tile], active[b - first], counts[b - first], sums[b - first],
                             tile * TILE_COLUMNS)
    for b in range(first, stop):
        row = sums[b - first]
        if has_bias:
            for j in range(outputs):
                out[b, j] = row[j] + bias[j]
        else:
            for j in range(outputs):
                out[b, j] = row[j]


@jit
def float_recurrent_loop(terms, order, history, projected, drive, kinds, slots, weight_tiles, scales, biases, has_bias,
                         source_lag, late, v, i, refractory_left, alpha, syn_gain, beta, gain, bias, threshold,
                         v_reset, reset_amount, bn_scale, bn_shift, cuba, has_beta, unit_gain, zero_bias, mpbn,
                         spiking, compare_ge, reset_mode, timing, refractory, zero, one, plain, held, record_v,
                         record_i, unrecorded, record, first, stop):
    """Steps t = 0..T-1 of a float32 recurrent component (module docstring) for the samples first..stop-1.

    history [1 + T, B, N]: N's output at steps -1..T-1 of the chunk; row 0 is given, the loop writes the rest.
    Projection k (kinds[k]; weight_tiles[slots[k]] as `_project` takes them, or scales[slots[k]]; biases[k] when
    has_bias[k]; source_lag[k] = r_in, late[k] = r_out) writes its output at step t to projected[k, 1 + t];
    projected[k, 0] holds the one at step -1. N's in-edges, in order, are order[e] = k (projection k) or -1 - j
    (terms[j] [T, B, N], an outside input already shifted); drive [B, N] is scratch. v, i, refractory_left [B, N]
    and the neuron parameters are those of jit.float_neuron (`plain`: float_neuron_plain applies); steps t < held
    are held (no update, output 0); with `record`, record_v/i [T, B, N] receive the states after each step
    (`unrecorded`: an empty stand-in)."""
    steps, size = history.shape[0] - 1, history.shape[2]
    count, samples = kinds.shape[0], stop - first
    active = np.empty((samples, size), dtype=np.int32)
    counts = np.empty(samples, dtype=np.int64)
    sums = np.empty((samples, weight_tiles.shape[1] * TILE_COLUMNS), dtype=np.float32)
    for t in range(steps):
        for k in range(count):
            if not late[k]:
                _project(history[1 + t - source_lag[k]], first, stop, kinds[k], weight_tiles[slots[k]],
                         scales[slots[k]], biases[k], has_bias[k], active, counts, sums, projected[k, t + 1])
        spikes = history[1 + t, first:stop].reshape((1, samples, size))
        if t < held:
            spikes[0] = zero
            if record:
                record_v[t, first:stop] = v[first:stop]
                if cuba:
                    record_i[t, first:stop] = i[first:stop]
        else:
            for e in range(order.shape[0]):         # the step loop's sum of N's inputs, edge by edge
                code = order[e]
                for b in range(first, stop):
                    row = drive[b]
                    if code < 0:
                        term = terms[-1 - code, t, b]
                        for n in range(size):
                            row[n] = term[n] if e == 0 else row[n] + term[n]
                    else:
                        term = projected[code, t + 1 - late[code], b]
                        for n in range(size):
                            row[n] = term[n] if e == 0 else row[n] + term[n]
            x = drive[first:stop].reshape((1, samples, size))
            if plain:
                J.float_neuron_plain(x, v[first:stop], beta, gain, bias, threshold, v_reset, has_beta, unit_gain,
                                     zero_bias, compare_ge, reset_mode, zero, one, spikes)
            else:
                rec_v = record_v[t, first:stop].reshape((1, samples, size)) if record else unrecorded
                rec_i = record_i[t, first:stop].reshape((1, samples, size)) if record and cuba else unrecorded
                J.float_neuron(x, v[first:stop], i[first:stop], refractory_left[first:stop], alpha, syn_gain, beta,
                               gain, bias, threshold, v_reset, reset_amount, bn_scale, bn_shift, cuba, has_beta,
                               unit_gain, zero_bias, mpbn, spiking, compare_ge, reset_mode, timing, refractory, zero,
                               one, spikes, rec_v, rec_i, record)
        for k in range(count):
            if late[k]:
                _project(history[1 + t - source_lag[k]], first, stop, kinds[k], weight_tiles[slots[k]],
                         scales[slots[k]], biases[k], has_bias[k], active, counts, sums, projected[k, t + 1])


# -- the plan of a component ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FloatProjection:
    """One P_k: its node, whether N -> P (`recurrent_in`) and P -> N (`recurrent_out`) are recurrent edges, and its
    weights: a Linear's transposed weight [N, N] and bias, or a Scale's factor [N]."""

    name: str
    recurrent_in: bool
    recurrent_out: bool
    weight_t: np.ndarray | None
    bias: np.ndarray | None
    scale: np.ndarray | None


def _projection(graph: Graph, name: str, neuron: str, kernel: K.Kernel, size: int) -> FloatProjection | None:
    """`name` as a P_k of `neuron` (N of `size` neurons), or None when it is not of that form."""
    op, edges = graph.node(name), feedback_edges(graph, name, neuron)
    if edges is None or type(kernel) is not K.MapKernel or kernel.engine != "compiled" or kernel.dtype != np.float32:
        return None
    recurrent_in, recurrent_out = edges
    if type(op) is O.Linear and isinstance(kernel.fn, Float32Linear):
        bias = None if kernel.fn.bias is None else np.ascontiguousarray(kernel.fn.bias, dtype=np.float32)
        return FloatProjection(name, recurrent_in, recurrent_out, np.ascontiguousarray(kernel.fn.weight_t), bias, None)
    if type(op) is O.Scale:
        scale = np.ascontiguousarray(np.broadcast_to(op.scale.astype(np.float32), (size,)))
        return FloatProjection(name, recurrent_in, recurrent_out, None, None, scale)
    return None


def _tiles(weight_t: np.ndarray, tiles: int) -> np.ndarray:
    """W^T [in, out] as `tiles` column tiles [tiles, in, TILE_COLUMNS], zero-padded past the last output."""
    padded = np.zeros((weight_t.shape[0], tiles * TILE_COLUMNS), dtype=np.float32)
    padded[:, : weight_t.shape[1]] = weight_t
    return np.ascontiguousarray(padded.reshape(weight_t.shape[0], tiles, TILE_COLUMNS).transpose(1, 0, 2))


class FloatRecurrentLoop:
    """A component of the module docstring's form, run a chunk at a time through `float_recurrent_loop`."""

    def __init__(self, graph: Graph, neuron: str, projections: list[FloatProjection], size: int):
        self.graph = graph
        self.neuron = neuron
        self.projections = projections
        dense = [p for p in projections if p.weight_t is not None]
        self.kinds = np.array([DENSE if p.weight_t is not None else ONE_TO_ONE for p in projections], dtype=np.int64)
        self.slots = np.maximum(np.cumsum(self.kinds == DENSE) - 1, 0)       # k's number among the dense ones
        self.slots[self.kinds == ONE_TO_ONE] = np.arange(int(np.sum(self.kinds == ONE_TO_ONE)))  # or the scales
        tiles = -(-size // TILE_COLUMNS)
        self.weight_tiles = (np.stack([_tiles(p.weight_t, tiles) for p in dense]) if dense
                             else np.zeros((1, 1, 1, TILE_COLUMNS), dtype=np.float32))
        scaled = [p.scale for p in projections if p.scale is not None]
        self.scales = np.stack(scaled) if scaled else np.zeros((1, 1), dtype=np.float32)
        self.biases = np.stack([p.bias if p.bias is not None else np.zeros(size, np.float32) for p in projections])
        self.has_bias = np.array([p.bias is not None for p in projections])
        self.source_lag = np.array([int(p.recurrent_in) for p in projections], dtype=np.int64)
        self.late = np.array([int(p.recurrent_out) for p in projections], dtype=np.int64)
        members = {p.name: k for k, p in enumerate(projections)}
        self.in_edges = graph.in_edges(neuron)
        outside = [e for e in self.in_edges if e.src not in members]
        self.order = np.array([members[e.src] if e.src in members else -1 - outside.index(e) for e in self.in_edges],
                              dtype=np.int64)
        self.outside = outside

    def _terms(self, values, steps: int, batch: int, size: int, previous: Mapping[str, np.ndarray]) -> np.ndarray:
        """N's inputs from outside the component over the chunk, one [T, B, N] row per in-edge (recurrent edges
        shifted by one step, as simulate._gather; a missing step -1 is zero)."""
        terms = np.zeros((len(self.outside), steps, batch, size), dtype=np.float32)
        for j, e in enumerate(self.outside):
            x = values[e.src].reshape(steps, batch, size)
            if e.recurrent:
                terms[j, 1:] = x[:-1]
                if e.src in previous and steps:
                    terms[j, 0] = previous[e.src].reshape(batch, size)
            else:
                terms[j] = x
        return terms

    def run(self, kernels: Mapping[str, K.Kernel], values: dict[str, np.ndarray], steps: int, batch: int,
            record: bool, previous: Mapping[str, np.ndarray], first_step: int) -> None:
        """The chunk's steps: values[N] and values[P_k] [T, B, N] set, every state advanced."""
        neuron = kernels[self.neuron]
        op, shape = neuron.op, neuron.out_shape
        size = shape[0]
        history = np.zeros((1 + steps, batch, size), dtype=np.float32)
        if self.neuron in previous:
            history[0] = previous[self.neuron].reshape(batch, size)
        projected = np.zeros((len(self.projections), steps + 1, batch, size), dtype=np.float32)
        for k, p in enumerate(self.projections):
            if p.name in previous:
                projected[k, 0] = previous[p.name].reshape(batch, size)
        terms = self._terms(values, steps, batch, size, previous)
        drive = np.empty((batch, size), dtype=np.float32)
        v = np.ascontiguousarray(neuron.v)
        i = np.ascontiguousarray(neuron.i) if neuron.cuba else np.zeros((batch, 1), dtype=np.float32)
        left = (np.ascontiguousarray(neuron.refractory_left) if neuron.refractory_left is not None
                else np.zeros((batch, 0), dtype=np.int64))
        records = {k: np.zeros((steps, batch, *shape), dtype=np.float32) for k in neuron.state_names} if record else {}
        unrecorded = np.zeros((0, 0, 0), dtype=np.float32)
        record_v, record_i = records.get("v", unrecorded), records.get("i", unrecorded)
        plain = (not neuron.cuba and not neuron.mpbn and op.reset_timing == "immediate" and not op.refractory
                 and not record)
        held = min(max(int(getattr(op, "start_step", 0)) - first_step, 0), steps)
        args = J.float_arguments(neuron)

        def part(first: int, stop: int) -> None:
            float_recurrent_loop(terms, self.order, history, projected, drive, self.kinds, self.slots,
                                 self.weight_tiles, self.scales, self.biases, self.has_bias, self.source_lag, self.late,
                                 v, i, left, *args, plain, held, record_v, record_i, unrecorded,
                                 record, first, stop)

        J.split_rows(batch, steps * batch * size >= J.PARALLEL_MIN_UPDATES, part)
        neuron.v = v
        if neuron.cuba:
            neuron.i = i
        if neuron.refractory_left is not None:
            neuron.refractory_left = left
        if record:
            neuron.set_recorded(records)
        values[self.neuron] = history[1:].reshape(steps, batch, *shape)
        for k, p in enumerate(self.projections):
            values[p.name] = projected[k, 1:]


def plan(graph: Graph, component: list[str], kernels: Mapping[str, K.Kernel]) -> FloatRecurrentLoop | None:
    """The compiled form of a float32 `component`, or None when it is not of the form of the module docstring."""
    neurons = [n for n in component if isinstance(kernels[n], K.NeuronKernel)]
    if len(neurons) != 1:
        return None
    neuron = neurons[0]
    kernel = kernels[neuron]
    if (type(kernel) is not K.FloatNeuron or kernel.dtype != np.float32 or not kernel.op.spiking
            or len(kernel.out_shape) != 1):
        return None
    size = kernel.out_shape[0]
    projections = [_projection(graph, name, neuron, kernels[name], size) for name in component if name != neuron]
    if not projections or any(p is None or not (p.recurrent_in or p.recurrent_out) for p in projections):
        return None
    return FloatRecurrentLoop(graph, neuron, projections, size)
