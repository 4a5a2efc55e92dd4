"""retime: hardware timing. Every weighted projection delivers one step late (at least), so the deployed network
is the float network shifted by a latency L; paths of unequal length are balanced with extra delay.

Each node n gets an offset tau(n): its retimed output at step t + tau(n) equals its original output at t.

    Input                       tau = 0
    weighted projection P       tau(P) = tau_in(P) + 1                (the hardware delay of the projection)
    any other node n            tau(n) = tau_in(n)
    tau_in(n) = max over in-edges e of tau(src) - [e is recurrent]   (a recurrent edge read the previous step)

An edge whose source arrives early gets the difference as a Delay node (merged into the projection's delay by
`quantize`); every projection gets a Delay of 1 in front of it; recurrent edges become ordinary edges, because
the projection's own step of delay now provides the feedback delay. A cycle whose projections add more steps
than the source network's feedback had (two projections in a loop closed by one recurrent edge) cannot be
retimed and is named. The outputs are balanced to one latency L = graph.latency.

Constant drive would leak into the steps before a layer's first input arrives (its "pre-roll"), so it is moved
onto a `Constant` source (1 at every step) that travels through the same delays: each projection bias becomes
a bias projection from such a source (Linear (n, 1) or a 1x1 convolution), and a neuron bias likewise when that
brings the neuron to rest. A layer that still changes on its own before its first input (its initial state is not a
fixed point of its input-free update: a non-zero v_init that leaks, a bias that cannot move, a threshold at or below
rest) gets a start step s = tau_in(n) (docs/semantics.md): it is held at its initial state until its inputs arrive,
which is exact on every target that has start steps (`Target.start_step_bits`); `quantize` refuses it elsewhere,
naming the neurons.
"""

from __future__ import annotations

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.rest import at_rest
from nmcompile.passes import PassContext
from nmcompile.passes.common import per_channel, unique_name

NEG = -(10**9)


def offsets(g: Graph) -> tuple[dict[str, int], dict[str, int]]:
    """(tau_in, tau) for every node, by longest-path relaxation; raises on a cycle that cannot be retimed."""
    order = g.order()
    tau_in = {n: (0 if not g.node(n).expects_input() else NEG) for n in order}   # sources start at 0
    tau = dict(tau_in)
    for _ in range(len(order) + 1):
        changed = False
        for n in order:
            op = g.node(n)
            if op.expects_input():
                value = max((tau[e.src] - int(e.recurrent) for e in g.in_edges(n) if tau[e.src] > NEG), default=NEG)
                if value > tau_in[n]:
                    tau_in[n], changed = value, True
            out = tau_in[n] + (1 if op.weighted else 0) if tau_in[n] > NEG else NEG
            if out > tau[n]:
                tau[n], changed = out, True
        if not changed:
            return tau_in, tau
    loop = [n for n in order if tau[n] > len(order)]
    raise UnsupportedError(
        "the recurrent loop through " + ", ".join(f"'{n}'" for n in loop[:6]) + " feeds back after one step in the "
        "source network, but its projections add more than one step on hardware; give the loop a single projection")


def run(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.copy()
    moved, restless = _biases_to_sources(g)
    tau_in, tau = offsets(g)
    unreachable = [n for n in g if tau[n] <= NEG]
    if unreachable:
        raise UnsupportedError(f"'{unreachable[0]}' is not reachable from any input")
    latency = max(tau_in[n] for n in g.outputs)
    inserted = 0
    for edge in list(g.edges):
        dst_op = g.node(edge.dst)
        arrive = tau[edge.src] - int(edge.recurrent)
        target_in = latency if dst_op.kind == "Output" else tau_in[edge.dst]
        extra = target_in - arrive + (1 if dst_op.weighted else 0)
        if extra < 0:
            raise AssertionError("retime: negative delay")  # tau_in is a maximum, so this cannot happen
        if extra == 0 and not edge.recurrent:
            continue
        g.remove_edge(edge)
        if extra == 0:
            g.connect(edge.src, edge.dst)
            continue
        name = unique_name(g, f"{edge.dst}.delay")
        g.add(name, O.Delay(delay=extra))
        g.connect(edge.src, name)
        g.connect(name, edge.dst)
        inserted += 1
    if any(e.recurrent for e in g.edges):
        raise AssertionError("retime left a recurrent edge")
    started = {}
    for name in restless:
        op = g.node(name)
        started[name] = op.start_step + tau_in[name]
        g.replace_node(name, op.replace(start_step=started[name]))
    g.latency = graph.latency + latency
    ctx.reports["retime"] = _Report(latency, inserted, moved, started)
    return g


def _bias_source(g: Graph, shape: tuple[int, ...], bias: np.ndarray, name: str) -> str:
    """Constant(1) -> projection whose output is `bias` (per unit, or per channel on a map of `shape`)."""
    if len(shape) == 1:
        source = g.add(unique_name(g, f"{name}.bias_source"), O.Constant(shape=(1,)))
        proj = O.Linear(weight=np.broadcast_to(bias, shape).reshape(-1, 1).astype(np.float64))
    else:
        source = g.add(unique_name(g, f"{name}.bias_source"), O.Constant(shape=(1, *shape[1:])))
        per_c = per_channel(np.broadcast_to(bias, shape), shape[0])
        if len(shape) == 2:
            proj = O.Conv1d(weight=per_c.reshape(-1, 1, 1))
        else:
            proj = O.Conv2d(weight=per_c.reshape(-1, 1, 1, 1))
    projection = g.add(unique_name(g, f"{name}.bias"), proj)
    g.connect(source, projection)
    return projection


def _biases_to_sources(g: Graph) -> tuple[list[str], list[str]]:
    """Move biases onto constant sources; returns the moved layers and the neuron layers that need a start step."""
    moved, restless = [], []
    shapes = g.shapes()
    for name in list(g.order()):
        op = g.node(name)
        if op.weighted and getattr(op, "bias", None) is not None and np.any(op.bias != 0):
            g.replace_node(name, op.replace(bias=None))
            bias_node = _bias_source(g, shapes[name], op.bias if op.kind == "Linear" else
                                     op.bias.reshape((-1,) + (1,) * (len(shapes[name]) - 1)), name)
            for edge in g.out_edges(name):
                g.connect(bias_node, edge.dst)
            moved.append(name)
        elif op.role == "neuron" and (op.start_step or not at_rest(op, shapes[name])):
            if _move_neuron_bias(g, name, op, shapes[name]):
                moved.append(name)
            else:
                restless.append(name)
    return moved, restless


def _move_neuron_bias(g: Graph, name: str, op, shape) -> bool:
    """Move a neuron bias onto a constant source where that brings the layer to rest (a LIF/IF from v_init = 0)."""
    if op.start_step or hasattr(op, "alpha") or not np.any(op.bias != 0):
        return False
    gain = np.broadcast_to(op.gain, shape)
    unbiased = op.replace(bias=0.0)
    if np.any(gain == 0) or not at_rest(unbiased, shape):
        return False
    try:
        bias_node = _bias_source(g, shape, np.broadcast_to(op.bias, shape) / gain, name)
    except ValueError:
        return False
    g.replace_node(name, unbiased)
    g.connect(bias_node, name)
    return True


class _Report:
    def __init__(self, latency: int, inserted: int, moved: list[str], started: dict[str, int]):
        self.latency, self.inserted, self.moved, self.started = latency, inserted, moved, started

    def lines(self) -> list[str]:
        lines = [f"latency L = {self.latency} steps (outputs at step t + L equal the source network's at t); "
                 f"{self.inserted} delay node(s) placed for hardware timing"]
        if self.moved:
            lines.append(f"biases of {len(self.moved)} layer(s) moved onto constant sources so they start with their "
                         f"layer's first input: {', '.join(self.moved)}")
        if self.started:
            lines.append(f"{len(self.started)} layer(s) not at rest held until their first input arrives (start "
                         "step): " + ", ".join(f"{n} at step {s}" for n, s in self.started.items()))
        return lines
