"""Degenerate quantization: a layer whose integer form has lost what the float layer computes.

    problems = degenerate_layers(int_graph, ctx.reports["quantize"])    # one line per layer, [] when sound

A layer is degenerate when
  - its threshold rounds to vth = 0 (the scale S collapsed: with vth << 6 = 0 every positive input spikes), or
  - every weight of every projection into it rounds to 0 (no input reaches it), or
  - its spike agreement with the float model on the calibration inputs is below AGREEMENT_FLOOR.
`nmcompile compile` prints each as a warning, or refuses with --strict.
"""

from __future__ import annotations

import numpy as np

from nmcompile.ir.graph import Graph

AGREEMENT_FLOOR = 0.9     # spike agreement (fraction of neuron-steps with equal spikes) below which a layer is named


def degenerate_layers(graph: Graph, report) -> list[str]:
    """The degenerate layers of the quantized `graph`, described with their numbers (scale, vth, agreement)."""
    problems = []
    for layer in getattr(report, "layers", []):
        if layer.name not in graph.nodes:
            continue
        op = graph.node(layer.name)
        scale = float(np.min(layer.scale))
        projections = [graph.node(e.src) for e in graph.edges if e.dst == layer.name
                       and graph.node(e.src).role == "projection" and hasattr(graph.node(e.src), "weight")]
        vth = np.atleast_1d(op.vth)
        if op.spiking and np.any(vth == 0):
            problems.append(f"layer '{layer.name}': threshold quantized to vth 0 for {int(np.sum(vth == 0))} of "
                            f"{vth.size} neuron(s) (scale {scale:.4g}): a weight or bias far larger than the "
                            "threshold collapsed the scale; every positive input now spikes")
        if projections and all(not np.any(np.asarray(p.weight)) for p in projections):
            problems.append(f"layer '{layer.name}': every input weight quantized to 0 (scale {scale:.4g})")
        if layer.agreement is not None and layer.agreement < AGREEMENT_FLOOR:
            problems.append(f"layer '{layer.name}': spike agreement with the float model {100 * layer.agreement:.2f}%"
                            f" is below {100 * AGREEMENT_FLOOR:.0f}% (scale {scale:.4g}, vth {int(vth.min())}.."
                            f"{int(vth.max())})")
    return problems
