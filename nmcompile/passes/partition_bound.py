"""The partitioner's lower bound on cores: no placement under the target's per-core limits uses fewer.

Per layer L (N_L neurons; S_L its synapses, s_L the fewest synapses of one of its neurons, r_L the fewest distinct
sources of one of its neurons, summed over the projections into L):

    neurons   a core holds at most C_n neurons                        cores(L) >= N_L / C_n
    memory    a core holding any neuron of L stores at least r_L rows, each with a row header of h bits, next to
              the synapses (b bits each) of the neurons it holds:     cores(L) >= M_L / (C_mem - r_L h)
              with M_L = S_L b (+ N_L (state + accumulator ring) bits where neuron state shares the memory);
              a convolution the target stores as its kernel (fpga) adds its kernel's bits once instead of S_L b
              (its cores hold slices of one kernel) and no per-neuron floor
    events    synaptic events per step (rate x synapses), instructions per step likewise (when the target has
              a budget):                                              cores(L) >= E_L / C_events, ...

The r_L term is the fan-in-driven one: every neuron of L reads r_L distinct sources, so every core holding one
of them spends r_L row headers however the layer is cut (conv: the kernel taps inside the input, counted per
position; dense/CSR: the non-zeros of a row). Where the target's image has them (spinnaker2), r_L h also counts
per core its header and, per projection feeding every neuron of L, an accumulator group record, a key entry and
one more index word (the index of a source block has a word per unit plus one).

Targets whose cores hold one layer each (`SynapseFormat.ring_bits`: an accumulator ring spans every neuron of the
PE) need at least the sum over layers of the largest of these. Where layers may share a core the per-resource
sums over layers bound instead: a core's memory holds at most C_mem bits in total, so
    cores >= (sum_L S_L b + sum_L k_L r_L h) / C_mem,   k_L = ceil(N_L / n_L) cores at least touch L,
with n_L = min(C_n, (C_mem - r_L h) / (s_L b + state)) the most neurons of L one core can hold.
Not counted (so the bound stays a bound): padding of rows to whole words, fan-out routes (they depend on where
the destinations are placed), and fan-in beyond r_L.
"""

from __future__ import annotations

import math

import numpy as np

from nmcompile.lowered import Projection
from nmcompile.lowered.weights import ConvWeights


def synapses_per_neuron(proj: Projection) -> np.ndarray:
    """Non-zero synapses ending in each unit of the projection's output (flat, C order); for a convolution the
    kernel taps that fall inside the input at that position (zero padding holds no synapse)."""
    w = proj.weights
    if not isinstance(w, ConvWeights):
        return np.asarray(w.row_nnz, dtype=np.int64)
    nd, in_spatial = w.spatial_dims, proj._source_spatial()
    out_spatial = tuple(proj.out_shape[1:]) if len(proj.out_shape) == nd + 1 else None
    if out_spatial is None:
        raise ValueError(f"projection '{proj.name}': conv output shape {proj.out_shape}")
    counts = (w.kernel != 0).sum(axis=1).astype(np.int64)            # (C_out, *K): inputs per tap
    for axis in range(nd):
        k = w.kernel.shape[2 + axis]
        pos = (np.arange(out_spatial[axis])[:, None] * w.stride[axis] + np.arange(k)[None, :] * w.dilation[axis]
               - w.padding[axis])
        valid = ((pos >= 0) & (pos < in_spatial[axis])).astype(np.int64)   # (O_axis, K_axis)
        # contract the first remaining kernel axis (at position 1 + axis) with valid, output axis in its place
        counts = np.moveaxis(np.tensordot(counts, valid, axes=([1 + axis], [1])), -1, 1 + axis)
    return counts.reshape(-1)


def kernel_stored(proj: Projection, fmt) -> bool:
    """A convolution the target's cores store as its kernel (shared weights), not as synapses."""
    w = proj.weights
    return proj.form == "conv" and fmt.kernels is not None and not fmt.kernels.stores(
        w.kernel.shape, w.stride, w.padding, w.dilation, w.groups, w.in_shape, w.out_shape)


def layer_floor(costs) -> dict[str, float]:
    """Per-neuron minima of one layer (a `Costs`): fewest synapses s, fewest distinct sources r (the rows every
    core holding one of its neurons stores), its total synapses S, and `fed`: the projections that feed every
    one of its neurons."""
    fewest, rows, total, fed, kernel_bits = 0.0, 0.0, 0.0, 0, 0.0
    fmt = costs.target.synapse_format
    for proj in costs.projs:
        if kernel_stored(proj, fmt):      # stored once as its kernel (sliced over cores): no per-synapse floor
            kernel_bits += proj.weights.kernel.size * fmt.kernels.weight_bits
            continue
        per = synapses_per_neuron(proj)
        total += float(per.sum())
        least = int(per.min()) if per.size else 0
        fewest += least
        fed += least > 0
        # conv taps and dense columns are distinct sources; a CSR row may repeat an index, so only one row is sure
        rows += least if proj.form != "csr" else min(least, 1)
    return {"s": fewest, "r": rows, "S": total, "fed": fed, "K": kernel_bits}


def lower_bound(costs: dict, target, capacity: np.ndarray, events_of, instructions_of,
                share_layers: bool) -> dict[str, int]:
    """max over resources of the cores they force (module docstring); per layer and summed when cores hold one
    layer each. `events_of(costs)` gives a layer's synaptic events per step, `instructions_of(neurons, events)`
    its instructions."""
    fmt = target.synapse_format
    n_cap, mem_cap, ev_cap, ins_cap = capacity[0], capacity[1], capacity[4], capacity[5]
    state = target.neuron_state_bits if target.memory_shared else 0
    totals = {"neurons": 0.0, "memory": 0.0, "events": 0.0, "instructions": 0.0}
    per_layer: dict[str, int] = {}
    for name, c in costs.items():
        n = int(np.prod(c.shape))
        floor = layer_floor(c)
        per_neuron_state = (state + c.ring_bits) if target.memory_shared else 0
        bits = floor["S"] * fmt.per_synapse_bits + floor["K"] + n * per_neuron_state
        # every core: its header; per projection feeding every neuron, an accumulator group, a key entry and the
        # index's extra word (where the target's image has them)
        headers = (floor["r"] * fmt.per_row_header_bits + fmt.core_header_bits
                   + floor["fed"] * (fmt.group_bits + fmt.key_bits + (fmt.word_bits if fmt.index_unit_bits else 0)))
        events = events_of(c)
        instr = instructions_of(n, events)
        usable = mem_cap - headers
        need = {"neurons": math.ceil(n / n_cap), "memory": math.ceil(bits / usable) if usable > 0 else math.inf}
        if np.isfinite(ev_cap):
            need["events"] = math.ceil(events / ev_cap)
        if np.isfinite(ins_cap):
            need["instructions"] = math.ceil(instr / ins_cap)
        per_layer[name] = max(need.values())
        most = min(n_cap, math.floor(usable / max(floor["s"] * fmt.per_synapse_bits + per_neuron_state, 1e-9))
                   if usable > 0 else 1)
        touched = math.ceil(n / max(most, 1))
        totals["neurons"] += n
        totals["memory"] += bits + touched * headers
        totals["events"] += events
        totals["instructions"] += instr
    bound = {"neurons": math.ceil(totals["neurons"] / n_cap), "memory": math.ceil(totals["memory"] / mem_cap)}
    if np.isfinite(ev_cap):
        bound["events"] = math.ceil(totals["events"] / ev_cap)
    if np.isfinite(ins_cap):
        bound["instructions"] = math.ceil(totals["instructions"] / ins_cap)
    if not share_layers:
        bound["one layer per core"] = sum(per_layer.values())
    return bound
