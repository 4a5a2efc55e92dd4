"""Recurrent integer components as one compiled loop per chunk of steps (engine 'compiled').

A recurrent component of the form

    N      an integer neuron layer (QNeuron, spiking, the stock IntegerNeuron kernel)
    P_k    integer projections (QLinear with one delay d_k for all synapses, or QSparseLinear) whose only input is
           N's output and whose output feeds N
    ext    N's inputs from outside the component (computed for the whole chunk before it)

runs every step of a chunk in one call of `recurrent_loop`. Each projection sees N's spikes L_k = d_k + r_in + r_out
steps late (r_in, r_out: whether the edges N -> P_k and P_k -> N are recurrent, i.e. deliver the previous step), so

    P_k[t] = floor_shift(W_k @ N[t - d_k - r_in], exp_k)
    N[t]   = neuron_update(ext[t] + sum over k of P_k[t - r_out])

per step and sample. The product is event-driven: the active inputs of the spike row are listed and the weight tiles
of `event_product.SpikeProduct` are summed in registers by `jit.tile_sum16/32`, with that product's lane choice
(int16 lanes when the row's active count times the largest |weight| stays below 2^15, int32 below 2^31, else int64
scalar sums); sparse projections add their CSR rows in int64. Integer sums are exact in any order, so the product
equals the numpy engine's `ExactProduct`. The neuron update is `jit.integer_neuron` (or `integer_neuron_plain` for
its plain form) called on one sample's row: the same compiled arithmetic as a feed-forward layer's. Samples are
independent and are split over threads (`jit.split_rows`) when the chunk has enough neuron updates.

State across chunks is the kernels' own: N's u, v and refractory counter, each projection's input buffer (the last
d_k + 1 rows of N's output it was given, `kernels.DelayedSum`) and the previous step's output of N (the simulator's
`previous`); the loop reads N's history from them and writes them back, so a stream may continue step by step or
through this loop with the same bits. A start step holds N (output 0, state as reset) as `simulate._run_stepwise`
does. Components of any other form, and every component under engine 'numpy', run through `_run_stepwise`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from nmcompile.ir import jit as J
from nmcompile.ir import kernels as K
from nmcompile.ir import ops as O
from nmcompile.ir.chain import list_spikes
from nmcompile.ir.event_product import SpikeProduct
from nmcompile.ir.graph import Graph

jit = J.jit


@jit
def _project(spikes, first, stop, active, counts, tiles, weight_max, dense, csr_starts, csr_targets, csr_weights,
             exp, sums, out):
    """out[b, j] = floor_shift(sum over i with spikes[b, i] = 1 of W[j, i], exp) for the samples first..stop-1.

    Dense W: `tiles` [tiles, inputs, width] (int8/int16) walked tile by tile, each tile summed for every sample
    while it is in cache, in int16 lanes when the sample's active count * weight_max < 2^15, int32 below 2^31, else
    (and for a sparse W: CSR rows by input, csr_starts/targets/weights) in int64 scalars. active [samples, inputs]
    and counts [samples] receive the packed active inputs, sums [samples, tiles * width] the sums (scratch)."""
    outputs = out.shape[1]
    for b in range(first, stop):
        counts[b - first] = list_spikes(spikes[b], active[b - first])
    if dense:
        width = tiles.shape[2]
        for tile in range(tiles.shape[0]):
            for b in range(first, stop):
                bound = counts[b - first] * weight_max
                if bound < 1 << 15:
                    J.tile_sum16(tiles[tile], active[b - first], counts[b - first], sums[b - first], tile * width)
                elif bound < 1 << 31:
                    J.tile_sum32(tiles[tile], active[b - first], counts[b - first], sums[b - first], tile * width)
    for b in range(first, stop):
        row = sums[b - first]
        if not dense or counts[b - first] * weight_max >= 1 << 31:
            row[:] = 0
            for a in range(counts[b - first]):
                i = active[b - first, a]
                if dense:
                    width = tiles.shape[2]
                    for tile in range(tiles.shape[0]):
                        for j in range(width):
                            row[tile * width + j] += tiles[tile, i, j]
                else:
                    for s in range(csr_starts[i], csr_starts[i + 1]):
                        row[csr_targets[s]] += csr_weights[s]
        for j in range(outputs):
            out[b, j] = row[j] << exp if exp > 0 else row[j] >> -exp


@jit
def recurrent_loop(external, history, depth, tiles, csr_starts, csr_targets, csr_weights, tile_slot, csr_slot, dense,
                   source_lag, late, exps, weight_max, projected, u, v, refractory_left, du_plus, dv, vth, bias,
                   clears_current, spiking, compare_ge, reset_mode, delayed, refractory, plain, held, record_u,
                   record_v, record, first, stop):
    """Steps t = 0..T-1 of a recurrent component (module docstring) for the samples first..stop-1.

    external [T, B, N]: N's input from outside. history [depth + T, B, N]: N's output at steps -depth..T-1 of the
    chunk; rows 0..depth-1 are given, the loop writes the rest. Projection k (of source_lag[k] = d + r_in, late[k]
    = r_out, exps[k], weight_max[k]) is dense (tiles[tile_slot[k]]) or sparse (CSR csr_slot[k]); projected[k, 1 + t]
    receives its output at step t, projected[k, 0] the one at step -1. u, v, refractory_left [B, N] and the neuron
    parameters are those of jit.integer_neuron (`plain`: its plain form applies); steps t < held are held (no
    update, output 0); with `record`, record_u/v [T, B, N] receive the states after each step."""
    steps, _, size = external.shape
    count, samples = source_lag.shape[0], stop - first
    sums = np.empty((samples, max(tiles.shape[1] * tiles.shape[3], size)), dtype=np.int64)
    active = np.empty((samples, size), dtype=np.int32)
    counts = np.empty(samples, dtype=np.int64)
    drive = np.empty((1, samples, size), dtype=np.int64)
    unrecorded = np.empty((1, 1, 1), dtype=np.int64)
    no_refractory = np.empty((1, 1), dtype=np.int64)
    for k in range(count):
        _project(history[depth - 1 - source_lag[k]], first, stop, active, counts, tiles[tile_slot[k]], weight_max[k],
                 dense[k], csr_starts[csr_slot[k]], csr_targets, csr_weights, exps[k], sums, projected[k, 0])
    for t in range(steps):
        for k in range(count):
            if not late[k]:
                _project(history[depth + t - source_lag[k]], first, stop, active, counts, tiles[tile_slot[k]],
                         weight_max[k], dense[k], csr_starts[csr_slot[k]], csr_targets, csr_weights, exps[k], sums,
                         projected[k, t + 1])
        # the neuron update on C-contiguous [1, samples, N] views (the neuron loops vectorise over them)
        spikes = history[depth + t, first:stop].reshape((1, samples, size))
        if t < held:
            spikes[0] = 0
            if record:
                record_u[t, first:stop] = u[first:stop]
                record_v[t, first:stop] = v[first:stop]
        else:
            for b in range(first, stop):
                drive[0, b - first] = external[t, b]
                for k in range(count):
                    drive[0, b - first] += projected[k, t + 1 - late[k], b]
            if plain:
                J.integer_neuron_fixed(drive, u[first:stop], v[first:stop], du_plus, dv, vth, bias, clears_current,
                                       compare_ge, reset_mode, spikes, 0, size)
            else:
                left = refractory_left[first:stop] if refractory > 0 else no_refractory
                rec_u = record_u[t, first:stop].reshape((1, samples, size)) if record else unrecorded
                rec_v = record_v[t, first:stop].reshape((1, samples, size)) if record else unrecorded
                J.integer_neuron(drive, u[first:stop], v[first:stop], left, du_plus, dv, vth, bias, clears_current,
                                 spiking, compare_ge, reset_mode, delayed, refractory, spikes, rec_u, rec_v, record)
        for k in range(count):
            if late[k]:
                _project(history[depth + t - source_lag[k]], first, stop, active, counts, tiles[tile_slot[k]],
                         weight_max[k], dense[k], csr_starts[csr_slot[k]], csr_targets, csr_weights, exps[k], sums,
                         projected[k, t + 1])


# -- the plan of a component ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Projection:
    """One P_k: its node, delay d, whether N -> P (`recurrent_in`) and P -> N (`recurrent_out`) are recurrent edges,
    and its weights as dense tiles [tiles, N, width] or as CSR rows by input (starts [N + 1], targets, weights)."""

    name: str
    delay: int
    recurrent_in: bool
    recurrent_out: bool
    exp: int
    weight_max: int
    tiles: np.ndarray | None
    csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    @property
    def source_lag(self) -> int:
        return self.delay + int(self.recurrent_in)


def feedback_edges(graph: Graph, name: str, neuron: str) -> tuple[bool, bool] | None:
    """(recurrent_in, recurrent_out) of the edges N -> `name` -> N when `name` reads only `neuron`'s output and
    feeds it through one edge (a feedback projection P_k), else None."""
    in_edges, to_neuron = graph.in_edges(name), [e for e in graph.out_edges(name) if e.dst == neuron]
    if len(in_edges) != 1 or in_edges[0].src != neuron or len(to_neuron) != 1:
        return None
    return in_edges[0].recurrent, to_neuron[0].recurrent


def _projection(graph: Graph, name: str, neuron: str, kernel: K.Kernel) -> Projection | None:
    """`name` as a P_k of `neuron`, or None when it is not of that form."""
    op = graph.node(name)
    edges = feedback_edges(graph, name, neuron)
    if edges is None or kernel.engine != "compiled":
        return None
    if not isinstance(kernel, K.DelayedSum) or len(kernel.groups) != 1 or kernel.const is not None:
        return None
    delay, product = kernel.groups[0]
    recurrent_in, recurrent_out = edges
    if isinstance(op, O.QSparseLinear) and K.find_kernel(type(op), "integer") is K._integer_sparse_linear:
        by_input = csr_matrix((op.effective_values(), op.indices, op.indptr),
                              shape=(op.out_features, op.in_features)).T.tocsr()
        values = by_input.data.astype(np.int64)
        csr = (by_input.indptr.astype(np.int64), by_input.indices.astype(np.int64), values)
        weight_max = int(np.abs(values).max()) if values.size else 0
        return Projection(name, delay, recurrent_in, recurrent_out, op.weight_exp, weight_max, None, csr)
    if (isinstance(op, O.QLinear) and K.find_kernel(type(op), "integer") is K._integer_linear
            and isinstance(product, SpikeProduct) and product.tiled):
        return Projection(name, delay, recurrent_in, recurrent_out, product.exp, product.general.weight_max,
                          product.weight_tiles(J.TILE_WIDTH), None)
    return None


class RecurrentLoop:
    """A component of the module docstring's form, run a chunk at a time through `recurrent_loop`."""

    def __init__(self, graph: Graph, neuron: str, projections: list[Projection]):
        self.graph = graph
        self.neuron = neuron
        self.projections = projections
        self.depth = max(p.source_lag for p in projections) + 1      # rows of N's output before the chunk it reads
        dense = [p.tiles for p in projections if p.tiles is not None]
        weight_type = np.result_type(*[t.dtype for t in dense]) if dense else np.int8
        self.tiles = (np.ascontiguousarray(np.stack(dense), dtype=weight_type) if dense
                      else np.zeros((1, 1, 1, J.TILE_WIDTH), dtype=np.int8))
        sparse = [p.csr for p in projections if p.csr is not None]
        self.csr_starts = np.zeros((max(len(sparse), 1), graph.shapes()[neuron][0] + 1), dtype=np.int64)
        targets, weights, offset = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], 1
        for k, (starts, target, weight) in enumerate(sparse):
            self.csr_starts[k] = starts + offset
            targets.append(target)
            weights.append(weight)
            offset += target.size
        self.csr_targets, self.csr_weights = np.concatenate(targets), np.concatenate(weights)
        self.dense = np.array([p.tiles is not None for p in projections])
        self.tile_slot = np.maximum(np.cumsum(self.dense) - 1, 0)            # k's number among the dense ones
        self.csr_slot = np.maximum(np.cumsum(~self.dense) - 1, 0)            # and among the sparse ones
        self.source_lag = np.array([p.source_lag for p in projections], dtype=np.int64)
        self.late = np.array([int(p.recurrent_out) for p in projections], dtype=np.int64)
        self.exps = np.array([p.exp for p in projections], dtype=np.int64)
        self.weight_max = np.array([p.weight_max for p in projections], dtype=np.int64)

    def _external(self, values, steps: int, batch: int, size: int, previous: Mapping[str, np.ndarray]) -> np.ndarray:
        """N's input from outside the component over the chunk (recurrent edges shifted by one step, as
        simulate._gather), int64 [T, B, N]."""
        members = {self.neuron, *(p.name for p in self.projections)}
        total = np.zeros((steps, batch, size), dtype=np.int64)
        for e in self.graph.in_edges(self.neuron):
            if e.src in members:
                continue
            x = values[e.src].reshape(steps, batch, size)
            if e.recurrent:
                if steps > 1:
                    total[1:] += x[:-1]
                if e.src in previous and steps:
                    total[0] += previous[e.src].reshape(batch, size)
            else:
                total += x
        return total

    def _history(self, kernels, batch: int, size: int, previous: Mapping[str, np.ndarray]) -> np.ndarray:
        """N's outputs at steps -depth..-1 of the chunk, read from the projections' input buffers (a projection
        with source lag s holds N's last s rows) and `previous` (N's output at step -1), as rows of [depth, B, N]."""
        history = np.zeros((self.depth, batch, size), dtype=np.int64)
        for back in range(self.depth):                       # N at step -1 - back
            p = next(p for p in self.projections if p.source_lag >= back)
            if p.recurrent_in and back == 0:
                if self.neuron in previous:
                    history[-1] = previous[self.neuron].reshape(batch, size)
            else:
                buffer = kernels[p.name].history
                history[-1 - back] = buffer[len(buffer) - 1 - back + int(p.recurrent_in)].reshape(batch, size)
        return history

    def run(self, kernels: Mapping[str, K.Kernel], values: dict[str, np.ndarray], steps: int, batch: int,
            record: bool, previous: Mapping[str, np.ndarray], first_step: int) -> None:
        """The chunk's steps: values[N] and values[P_k] [T, B, N] set, every state advanced."""
        neuron = kernels[self.neuron]
        op = neuron.op
        shape = neuron.out_shape
        size = int(np.prod(shape))
        history = np.concatenate([self._history(kernels, batch, size, previous),
                                  np.zeros((steps, batch, size), dtype=np.int64)])
        external = self._external(values, steps, batch, size, previous)
        projected = np.zeros((len(self.projections), steps + 1, batch, size), dtype=np.int64)
        u, v = np.ascontiguousarray(neuron.u), np.ascontiguousarray(neuron.v)
        left = (np.ascontiguousarray(neuron.refractory_left) if neuron.refractory_left is not None
                else np.zeros((batch, 0), dtype=np.int64))
        records = {k: np.zeros((steps, batch, *shape), dtype=np.int64) for k in neuron.state_names} if record else {}
        record_u = records["u"].reshape(steps, batch, size) if record else np.zeros((0, 0, 0), dtype=np.int64)
        record_v = records["v"].reshape(steps, batch, size) if record else np.zeros((0, 0, 0), dtype=np.int64)
        plain = op.reset_timing == "immediate" and not op.refractory and not record
        held = min(max(int(getattr(op, "start_step", 0)) - first_step, 0), steps)
        flat = (neuron._flat(neuron.du_plus), neuron._flat(neuron.dv), neuron._flat(neuron.vth),
                neuron._flat(neuron.bias))
        u_rows, v_rows, left_rows = u.reshape(batch, -1), v.reshape(batch, -1), left.reshape(batch, -1)

        def part(first: int, stop: int) -> None:
            recurrent_loop(external, history, self.depth, self.tiles, self.csr_starts, self.csr_targets,
                           self.csr_weights, self.tile_slot, self.csr_slot, self.dense, self.source_lag, self.late,
                           self.exps, self.weight_max, projected, u_rows, v_rows, left_rows, *flat,
                           neuron.clears_current, op.spiking, op.compare == ">=", J._MODES[op.reset_mode],
                           op.reset_timing == "delayed", op.refractory, plain, held, record_u, record_v, record,
                           first, stop)

        J.split_rows(batch, steps * batch * size >= J.PARALLEL_MIN_UPDATES, part)
        neuron.u, neuron.v = u, v
        if neuron.refractory_left is not None:
            neuron.refractory_left = left
        if record:
            neuron.set_recorded(records)
        values[self.neuron] = history[self.depth :].reshape(steps, batch, *shape)
        for k, p in enumerate(self.projections):
            values[p.name] = projected[k, 1:]
            buffer = kernels[p.name].history                  # its inputs N[t - r_in] of the last d + 1 steps
            last = self.depth + steps - int(p.recurrent_in)
            buffer.extend(history[i].copy() for i in range(last - p.delay - 1, last))


def _plan(graph: Graph, component: list[str], kernels: Mapping[str, K.Kernel]) -> RecurrentLoop | None:
    """The compiled form of `component`, or None when it is not of the form of the module docstring."""
    neurons = [n for n in component if isinstance(graph.node(n), O.QNeuron)]
    if len(neurons) != 1:
        return None
    neuron = neurons[0]
    kernel = kernels[neuron]
    if type(kernel) is not K.IntegerNeuron or not kernel.op.spiking or len(kernel.out_shape) != 1:
        return None
    projections = [_projection(graph, name, neuron, kernels[name]) for name in component if name != neuron]
    if not projections or any(p is None for p in projections):
        return None
    return RecurrentLoop(graph, neuron, projections)


_plans: weakref.WeakKeyDictionary[K.Kernel, dict[tuple[str, ...], object]] = weakref.WeakKeyDictionary()


def compiled_loop(graph: Graph, component: list[str], kernels: Mapping[str, K.Kernel], plan=None):
    """The loop that runs `component` under the compiled engine, or None (then simulate._run_stepwise runs it):
    `plan(graph, component, kernels)`'s (default: this module's RecurrentLoop; recurrent_float.plan for float32
    kernels), planned once per set of kernels (keyed by the component's first kernel)."""
    if not all(kernels[n].engine == "compiled" for n in component):
        return None
    known = _plans.setdefault(kernels[component[0]], {})
    key = tuple(component)
    if key not in known:
        known[key] = (plan or _plan)(graph, component, kernels)
    loop = known[key]
    return loop if loop is not None and kernels[loop.neuron].fused else None
