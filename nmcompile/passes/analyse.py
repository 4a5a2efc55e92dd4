"""analyse: synaptic operations, neuron updates, energy and bit budget (the graph is not changed).

Synaptic operations (SOPs) per step are counted from spikes: a spike of a source neuron costs one operation per
non-zero synapse it has in a projection (NeuroBench's "effective ACs": the projection run on its binary copy,
0/1 weights, so pruned synapses cost nothing). With calibration inputs the spikes are simulated, else every
neuron is assumed to fire with probability 0.1 per step (said in the report). Every neuron is updated every step.

Energy per inference of T steps, with published per-operation figures (as tabulated by KerasSpiking's ModelEnergy,
keras_spiking/model_energy.py):

    neuromorphic:  E = SOPs * e_synop + neuron updates * e_neuron        (the target's own figures)
    ANN reference: E = MACs * 4.6 pJ  vs  SNN: SOPs * 0.9 pJ             (Horowitz ISSCC 2014, 45 nm, fp32)

where the ANN does every synapse once per inference and the SNN only its spikes, T times. The bit budget
(Shen et al., CVPR 2024, "Is Conventional SNN Really Efficient?") weighs storage and computation in bits:
weights = weight bits x synapses; activations = activation bits (1 for spikes) x neurons x T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nmcompile.ir import arraymath
from nmcompile.ir.graph import Graph
from nmcompile.lowered import lower_network
from nmcompile.passes import PassContext

ASSUMED_RATE = 0.1
DEFAULT_STEPS = 100
E_AC_45NM = 0.9e-12
E_MAC_45NM = 4.6e-12
HOROWITZ = "Horowitz, ISSCC 2014: 45 nm, 0.9 V, fp32 add 0.9 pJ, multiply-add 4.6 pJ"


@dataclass
class LayerStats:
    name: str
    neurons: int
    synapses: int             # non-zero synapses into the layer
    sops_per_step: float      # synaptic operations per step (spike x non-zero fan-out)
    spike_rate: float | None  # mean spikes per neuron per step (measured)


class Analysis:
    def __init__(self, layers: list[LayerStats], steps: int, measured: bool, weight_bits: int, target):
        self.layers, self.steps, self.measured = layers, steps, measured
        self.weight_bits, self.target = weight_bits, target

    @property
    def sops(self) -> float:
        return sum(layer.sops_per_step for layer in self.layers) * self.steps

    @property
    def updates(self) -> int:
        return sum(layer.neurons for layer in self.layers) * self.steps

    @property
    def synapses(self) -> int:
        return sum(layer.synapses for layer in self.layers)

    def energy(self) -> dict[str, float]:
        result = {"snn_45nm_ac": self.sops * E_AC_45NM, "ann_45nm_mac": self.synapses * E_MAC_45NM}
        t = self.target
        if t is not None and t.energy_per_synop_j is not None:
            result[t.name] = self.sops * t.energy_per_synop_j + self.updates * t.energy_per_neuron_update_j
        return result

    def lines(self) -> list[str]:
        how = "measured on calibration inputs" if self.measured else f"assuming rate {ASSUMED_RATE} per step"
        lines = [f"per inference of T={self.steps} steps ({how}):",
                 f"  {'layer':<20} {'neurons':>8} {'synapses':>10} {'SOP/step':>10} {'rate':>6}"]
        for layer in self.layers:
            rate = "-" if layer.spike_rate is None else f"{layer.spike_rate:.3f}"
            lines.append(f"  {layer.name:<20} {layer.neurons:>8} {layer.synapses:>10} {layer.sops_per_step:>10.1f} "
                         f"{rate:>6}")
        lines.append(f"  total: {self.sops:.4g} synaptic operations, {self.updates} neuron updates")
        energy = self.energy()
        t = self.target
        if t is not None and t.name in energy:
            lines.append(f"  energy on {t.name}: {energy[t.name] * 1e6:.4g} uJ ({t.energy_per_synop_j * 1e12:.3g} "
                         f"pJ/SOP, {t.energy_per_neuron_update_j * 1e12:.3g} pJ/update; {t.energy_source})")
        lines.append(f"  45 nm comparison: SNN {energy['snn_45nm_ac'] * 1e6:.4g} uJ (SOPs x 0.9 pJ) vs ANN "
                     f"{energy['ann_45nm_mac'] * 1e6:.4g} uJ (one MAC per synapse x 4.6 pJ); {HOROWITZ}")
        w_bits = self.weight_bits * self.synapses
        a_bits = sum(layer.neurons for layer in self.layers) * self.steps
        lines.append(f"  bit budget: weights {w_bits} bits ({self.weight_bits} x {self.synapses} synapses), "
                     f"activations {a_bits} bits (1-bit spikes x neurons x T)")
        return lines


def run(graph: Graph, ctx: PassContext) -> Graph:
    ctx.reports["analyse"] = analyse(graph, ctx)
    return graph


def analyse(g: Graph, ctx: PassContext) -> Analysis:
    view = lower_network(g)
    projs = {name: view.into(name) for name in view.layers}
    spikes: dict[str, np.ndarray] = {}
    measured = ctx.calibration is not None
    steps = int(ctx.options.get("steps", DEFAULT_STEPS))
    if measured:
        from nmcompile.ir.simulate import simulate

        x = np.asarray(ctx.calibration)
        steps = x.shape[0]
        result = simulate(g, x.astype(np.int64) if g.is_integer else x.astype(np.float64), record=True)
        spikes = {n: (v != 0) for n, v in result.values.items()}
    layers = []
    for name in g.order():
        op = g.node(name)
        if op.role != "neuron":
            continue
        synapses = 0
        sops = 0.0
        for proj in projs.get(name, []):
            binary = _binary(proj)
            synapses += _synapse_count(proj, binary)
            if measured and proj.source in spikes:
                sops += _events(proj, binary, spikes[proj.source])
            elif proj.source in view.constants:
                sops += _synapse_count(proj, binary)
            else:
                sops += ASSUMED_RATE * _synapse_count(proj, binary)
        rate = float(spikes[name].mean()) if measured and getattr(op, "spiking", True) else None
        layers.append(LayerStats(name, int(np.prod(op.shape)), synapses, sops, rate))
    t = ctx.target
    bits = math.ceil(math.log2(t.weight_max - t.weight_min + 1)) if t is not None else 32
    return Analysis(layers, steps, measured, bits, t)


def _binary(proj) -> object:
    if proj.form == "csr":
        return None
    matrix = proj.weights.matrix if proj.form == "dense" else proj.weights.kernel
    return (np.asarray(matrix) != 0).astype(np.float64)


def _synapse_count(proj, binary) -> int:
    full = tuple((0, d) for d in proj.out_shape)
    return proj.synapses(full)


def _events(proj, binary, source_spikes: np.ndarray) -> float:
    """Mean synaptic events per step: source spikes pushed through the binary copy of the projection."""
    s = source_spikes.astype(np.float64)
    steps_batch = s.shape[0] * s.shape[1]
    flat = s.reshape(steps_batch, -1)
    if proj.form == "dense":
        return float((flat @ binary.T).sum() / s.shape[0] / s.shape[1])
    if proj.form == "csr":
        fan_out = np.bincount(proj.weights.indices, minlength=flat.shape[1]).astype(np.float64)
        return float((flat @ fan_out).sum() / s.shape[0] / s.shape[1])
    w = proj.weights
    x = flat.reshape((steps_batch, *proj.in_shape))
    out = arraymath.conv(x, binary, w.stride, w.padding, w.dilation, w.groups)
    return float(out.sum() / s.shape[0] / s.shape[1])
