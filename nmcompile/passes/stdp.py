"""stdp: make named projections plastic (pair-based STDP with 8-bit traces, docs/semantics.md §3.5).

`ctx.options["stdp"]` maps projection names to rule parameters (the keys of QPlasticLinear, missing ones take the
defaults). The projection must be an integer QLinear with one delay that feeds one neuron layer, its weights used
as stored (the target's 8-bit format) and inside [w_min, w_max]. Without the option the graph is unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.integer import STDP_PARAMETERS
from nmcompile.ir.plasticity import post_layer
from nmcompile.lowered.limits import refuse
from nmcompile.passes import PassContext


class StdpReport:
    def __init__(self, lines: list[str]):
        self._lines = lines

    def lines(self) -> list[str]:
        return self._lines


def run(graph: Graph, ctx: PassContext) -> Graph:
    requested: dict[str, dict[str, int]] = ctx.options.get("stdp") or {}
    if not requested:
        ctx.reports["stdp"] = StdpReport(["no plastic projections (--stdp LAYER makes one plastic)"])
        return graph
    target = ctx.require_target("stdp")
    if not target.stdp:
        refuse("--stdp", "STDP", "stdp", False, lambda t: t.stdp, target)
    g = graph.copy()
    lines = []
    for name, params in requested.items():
        if name not in g.nodes:
            raise UnsupportedError(f"--stdp {name}: no node of that name; projections: "
                                   + ", ".join(n for n, op in g.nodes.items() if op.kind == "QLinear"))
        op = g.node(name)
        if op.kind == "QNeuron":
            feeding = [e.src for e in g.in_edges(name) if g.node(e.src).kind == "QLinear"]
            raise UnsupportedError(f"--stdp {name}: '{name}' is a neuron layer; name one of the projections feeding "
                                   f"it: {', '.join(feeding)}")
        if op.kind != "QLinear":
            raise UnsupportedError(f"--stdp {name}: '{name}' is a {op.kind}; STDP applies to dense projections")
        unknown = set(params) - set(STDP_PARAMETERS)
        if unknown:
            raise UnsupportedError(f"unknown STDP parameter(s) {', '.join(sorted(unknown))}; known: "
                                   + ", ".join(STDP_PARAMETERS))
        delay = np.asarray(op.delay)
        if delay.size and np.ptp(delay):
            raise UnsupportedError(f"--stdp {name}: the projection has per-synapse delays; a plastic projection has "
                                   "one delay")
        post = post_layer(g, name)
        if post is None:
            raise UnsupportedError(f"--stdp {name}: the projection must feed one neuron layer directly")
        fields = {f.name: getattr(op, f.name) for f in dataclasses.fields(op)}
        fields["delay"] = int(delay.reshape(-1)[0]) if delay.size else 1
        try:
            plastic = O.QPlasticLinear(**fields, **params)
            plastic.check()
        except (TypeError, ValueError) as err:
            raise UnsupportedError(f"--stdp {name}: {err}") from None
        g.replace_node(name, plastic)
        rule = ", ".join(f"{k}={getattr(plastic, k)}" for k in STDP_PARAMETERS)
        lines.append(f"{name} -> {post}: {op.weight.shape[1]} x {op.weight.shape[0]} synapses learn ({rule})")
    ctx.reports["stdp"] = StdpReport(lines)
    return g


def rule_from_flags(items: Sequence[str], layers: Sequence[str]) -> dict[str, int]:
    """The rule parameters of `--stdp-param KEY=VALUE` items, checked before the passes run: refused without
    `--stdp` layers (nothing to apply them to) and for an unknown key. Their ranges are checked by `run`."""
    if items and not layers:
        raise UnsupportedError("--stdp-param needs --stdp PROJECTION: it sets the rule of the plastic projections")
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            params[key.strip()] = int(value)
        except ValueError:
            raise UnsupportedError(f"--stdp-param {item!r}: expected KEY=INTEGER") from None
        if not sep:
            raise UnsupportedError(f"--stdp-param {item!r}: expected KEY=INTEGER")
        if key.strip() not in STDP_PARAMETERS:
            raise UnsupportedError(f"--stdp-param {item!r}: unknown STDP parameter(s) {key.strip()}; known: "
                                   + ", ".join(STDP_PARAMETERS))
    return params
