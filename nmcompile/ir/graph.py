"""The network graph: named ops and directed edges.

A node's input at step t is the sum of its incoming edges. An edge marked `recurrent` delivers its source's
output of step t-1 (it is how a framework's "previous step's spikes" reach a recurrent projection). In an
integer (hardware-timed) graph, projections carry delays >= 1 instead; an edge into such a projection also
breaks a dependency cycle. `verify()` checks structure, parameters, cycles and shapes and names what is wrong.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from nmcompile.errors import GraphError, ShapeError, UnsupportedError
from nmcompile.ir.base import Op, Shape, same_op

_NAME = re.compile(r"^[A-Za-z0-9_.:\[\]-]+$")


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    recurrent: bool = False

    def __str__(self) -> str:
        return f"{self.src} {'~>' if self.recurrent else '->'} {self.dst}"


def min_delay(op: Op) -> int:
    """The smallest number of steps between an op's input and its output (0 for instantaneous ops)."""
    for key in ("delay", "delays"):
        value = getattr(op, key, None)
        if value is not None:
            array = np.asarray(value)
            return int(array.min()) if array.size else 0
    return 0


@dataclass(frozen=True)
class Trace:
    """A walk from `start` over transparent ops (Flatten, Reshape, Delay) to the first other node, `end`.

    `passed` lists the transparent nodes stepped over in walk order; `recurrent_steps` counts the recurrent
    edges on the way (each reads the previous step, i.e. adds one step of delay).
    """

    start: str
    end: str
    passed: tuple[str, ...]
    recurrent_steps: int

    def delay(self, graph: Graph, shapes: Mapping[str, Shape] | None = None,
              counted: Iterable[str] | None = None) -> np.ndarray:
        """Steps the walk adds (Delay nodes + recurrent edges): a 0-d array when uniform, else one value per
        element in C order (Flatten, Reshape and Delay keep the element count). `counted` limits the Delay nodes that
        count (a pass that merges only some of them); `shapes` saves re-inferring them for per-element delays."""
        total: np.ndarray = np.asarray(self.recurrent_steps, dtype=np.int64)
        keep = None if counted is None else set(counted)
        for name in self.passed:
            op = graph.node(name)
            if op.kind != "Delay" or (keep is not None and name not in keep):
                continue
            d = np.asarray(op.delay, dtype=np.int64)
            if d.size and np.ptp(d) == 0:
                total = total + int(d.reshape(-1)[0])
            else:
                shapes = shapes if shapes is not None else graph.shapes()
                total = total + np.broadcast_to(d, shapes[name]).reshape(-1)
        return total


class Graph:
    """Named ops plus edges. Mutable while being built; passes copy it (`copy()`) and return a new graph."""

    def __init__(self, name: str = "network", dt: float | None = None):
        self.name = name
        self.dt = dt  # seconds per step, when the source defines one (NIR import); informational
        self.latency = 0  # steps by which outputs lag the source network's (set by the retime pass)
        self.mapping: object | None = None  # core assignment (set by the partition pass)
        self._nodes: dict[str, Op] = {}
        self._edges: list[Edge] = []
        self._by_node: tuple[dict[str, list[Edge]], dict[str, list[Edge]]] | None = None  # (in, out) edges per node

    # -- building ---------------------------------------------------------------------------------------
    def add(self, name: str, op: Op) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise GraphError(f"invalid node name {name!r}: use letters, digits and _ . : [ ] -")
        if name in self._nodes:
            raise GraphError(f"node '{name}' already exists")
        if not isinstance(op, Op):
            raise GraphError(f"node '{name}' is not an IR op: {type(op).__name__}")
        self._nodes[name] = op
        return name

    def connect(self, src: str, dst: str, recurrent: bool = False) -> None:
        edge = Edge(src, dst, recurrent)
        if edge in self._edges:
            raise GraphError(f"duplicate edge {edge}")
        self._edges.append(edge)
        self._by_node = None

    def chain(self, *names: str) -> None:
        """Connect names[0] -> names[1] -> ... (non-recurrent)."""
        for a, b in itertools.pairwise(names):
            self.connect(a, b)

    def replace_node(self, name: str, op: Op) -> None:
        self.node(name)
        self._nodes[name] = op

    def remove_node(self, name: str) -> None:
        self.node(name)
        del self._nodes[name]
        self._edges = [e for e in self._edges if name not in (e.src, e.dst)]
        self._by_node = None

    def remove_edge(self, edge: Edge) -> None:
        self._edges.remove(edge)
        self._by_node = None

    def copy(self, name: str | None = None) -> Graph:
        g = Graph(self.name if name is None else name, self.dt)
        g.latency = self.latency
        g.mapping = self.mapping
        g._nodes = dict(self._nodes)
        g._edges = list(self._edges)
        return g

    # -- reading ----------------------------------------------------------------------------------------
    @property
    def nodes(self) -> Mapping[str, Op]:
        return dict(self._nodes)

    @property
    def edges(self) -> tuple[Edge, ...]:
        return tuple(self._edges)

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def node(self, name: str) -> Op:
        try:
            return self._nodes[name]
        except KeyError:
            raise GraphError(f"no node named '{name}'") from None

    def in_edges(self, name: str) -> list[Edge]:
        return list(self._edges_by_node()[0].get(name, ()))

    def out_edges(self, name: str) -> list[Edge]:
        return list(self._edges_by_node()[1].get(name, ()))

    def _edges_by_node(self) -> tuple[dict[str, list[Edge]], dict[str, list[Edge]]]:
        """Each node's in- and out-edges in edge order, indexed once per change of the edges (a simulator's run
        asked for them per node and chunk: a scan of every edge each time)."""
        if self._by_node is None:
            into: dict[str, list[Edge]] = {}
            out: dict[str, list[Edge]] = {}
            for e in self._edges:
                into.setdefault(e.dst, []).append(e)
                out.setdefault(e.src, []).append(e)
            self._by_node = (into, out)
        return self._by_node

    def of_kind(self, *kinds: str) -> list[str]:
        return [n for n, op in self._nodes.items() if op.kind in kinds]

    @property
    def inputs(self) -> list[str]:
        return self.of_kind("Input")

    @property
    def outputs(self) -> list[str]:
        return self.of_kind("Output")

    @property
    def is_integer(self) -> bool:
        return any(op.numeric == "integer" for op in self._nodes.values())

    def equals(self, other: Graph) -> bool:
        """Same nodes (by value, same insertion order), same edges and same dt."""
        if (list(self._nodes) != list(other._nodes) or self._edges != other._edges or self.dt != other.dt
                or self.latency != other.latency):
            return False
        return all(same_op(self._nodes[n], other._nodes[n]) for n in self._nodes)

    # -- walking over transparent ops --------------------------------------------------------------------
    def trace_back(self, name: str) -> Trace:
        """From `name`'s single input back over Flatten/Delay to the node that produces the values."""
        return self._walk(name, backwards=True)

    def trace_forward(self, name: str) -> Trace:
        """From `name`'s single consumer forward over Flatten/Delay to the node that receives the values."""
        return self._walk(name, backwards=False)

    def _walk(self, start: str, backwards: bool) -> Trace:
        node, passed, recurrent = start, [], 0
        while True:
            edges = self.in_edges(node) if backwards else self.out_edges(node)
            if len(edges) != 1:
                what = "input" if backwards else "consumer"
                where = "" if node == start else f" (at '{node}')"
                raise UnsupportedError(f"'{start}' ({self.node(start).kind}) must have exactly one {what}; it has "
                                       f"{len(edges)}{where}")
            recurrent += int(edges[0].recurrent)
            node = edges[0].src if backwards else edges[0].dst
            if not self.node(node).transparent:
                return Trace(start, node, tuple(passed), recurrent)
            passed.append(node)

    # -- ordering ---------------------------------------------------------------------------------------
    def order(self) -> list[str]:
        """A deterministic evaluation order: the strongly connected components in dependency order, each
        ordered so that every node follows the sources of its instantaneous in-edges (recurrent edges and
        edges into a node with a delay >= 1 may point backwards). Raises GraphError on an undelayed cycle."""
        return [n for component in self.strongly_connected() for n in component]

    def strongly_connected(self) -> list[list[str]]:
        """Strongly connected components over all edges, in dependency order (ties by insertion order)."""
        index = {n: i for i, n in enumerate(self._nodes)}
        components = self._tarjan()
        owner = {n: k for k, comp in enumerate(components) for n in comp}
        deps: dict[int, set[int]] = {k: set() for k in range(len(components))}
        for e in self._edges:
            a, b = owner.get(e.src), owner.get(e.dst)
            if a is not None and b is not None and a != b:
                deps[b].add(a)
        done: set[int] = set()
        ordered: list[list[str]] = []
        while len(done) < len(components):
            ready = [k for k in deps if k not in done and deps[k] <= done]
            k = min(ready, key=lambda c: min(index[n] for n in components[c]))
            done.add(k)
            ordered.append(self._order_within(components[k], index))
        return ordered

    def _order_within(self, component: list[str], index: dict[str, int]) -> list[str]:
        members = set(component)
        pending = {n: set() for n in component}
        for e in self._edges:
            if e.dst in members and e.src in members and not e.recurrent and e.src != e.dst:
                pending[e.dst].add(e.src)
        result: list[str] = []
        placed: set[str] = set()
        remaining = sorted(component, key=index.get)
        while remaining:
            ready = [n for n in remaining if pending[n] <= placed]
            if not ready:
                ready = [n for n in remaining if min_delay(self._nodes[n]) >= 1][:1]
                if not ready:
                    raise GraphError(
                        "cycle without a step of delay through " + ", ".join(f"'{n}'" for n in remaining[:6])
                        + ": mark the edge that feeds back the previous step as recurrent, or give a projection "
                        "on the cycle a delay >= 1"
                    )
            node = ready[0]
            result.append(node)
            placed.add(node)
            remaining.remove(node)
        return result

    def _tarjan(self) -> list[list[str]]:
        succ: dict[str, list[str]] = {n: [] for n in self._nodes}
        for e in self._edges:
            if e.src in succ and e.dst in succ:
                succ[e.src].append(e.dst)
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        components: list[list[str]] = []
        counter = 0
        for root in self._nodes:
            if root in index:
                continue
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            work = [(root, iter(succ[root]))]
            while work:
                node, children = work[-1]
                advanced = False
                for child in children:
                    if child not in index:
                        index[child] = low[child] = counter
                        counter += 1
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(succ[child])))
                        advanced = True
                        break
                    if child in on_stack:
                        low[node] = min(low[node], index[child])
                if advanced:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
        return components

    # -- shapes -----------------------------------------------------------------------------------------
    def shapes(self) -> dict[str, Shape]:
        """Output shape of every node. Raises ShapeError naming the edge or node that disagrees."""
        order = self.order()
        result: dict[str, Shape] = {}
        for _ in range(len(order) + 1):
            progress = False
            for name in order:
                if name in result:
                    continue
                op = self._nodes[name]
                known = [(e, result[e.src]) for e in self.in_edges(name) if e.src in result]
                in_shape = self._agreed_shape(name, known)
                try:
                    result[name] = op.out_shape(in_shape)
                except ValueError as err:
                    if in_shape is None and self.in_edges(name):
                        continue  # needs its input's shape; try again once a predecessor is known
                    raise ShapeError(f"node '{name}' ({op.kind}): {err}") from None
                progress = True
            if not progress:
                break
        missing = [n for n in order if n not in result]
        if missing:
            raise ShapeError(f"cannot infer the shape of '{missing[0]}': none of its inputs has a known shape")
        for name in order:
            self._agreed_shape(name, [(e, result[e.src]) for e in self.in_edges(name)])
            if self.in_edges(name):
                try:
                    self._nodes[name].out_shape(self._agreed_shape(name, [(e, result[e.src])
                                                                          for e in self.in_edges(name)]))
                except ValueError as err:
                    raise ShapeError(f"node '{name}' ({self._nodes[name].kind}): {err}") from None
        return result

    @staticmethod
    def _agreed_shape(name: str, known: Iterable[tuple[Edge, Shape]]) -> Shape | None:
        shape: Shape | None = None
        first: Edge | None = None
        for edge, s in known:
            if shape is None:
                shape, first = tuple(s), edge
            elif tuple(s) != shape:
                raise ShapeError(
                    f"inputs of '{name}' disagree: '{first.src}' gives {shape} but '{edge.src}' gives {tuple(s)}"
                )
        return shape

    # -- verification -----------------------------------------------------------------------------------
    def verify(self) -> None:
        """Check edges, node parameters, float/integer consistency, cycles and shapes."""
        if not self.inputs:
            raise GraphError(f"graph '{self.name}' has no Input node")
        if not self.outputs:
            raise GraphError(f"graph '{self.name}' has no Output node")
        for e in self._edges:
            for end in (e.src, e.dst):
                if end not in self._nodes:
                    raise GraphError(f"edge {e} refers to a node '{end}' that does not exist")
            if e.src == e.dst and not e.recurrent:
                raise GraphError(f"self-loop {e} must be recurrent (it reads the previous step)")
        for name, op in self._nodes.items():
            op.verify(name)
            if op.kind == "Input" and self.in_edges(name):
                raise GraphError(f"Input node '{name}' has incoming edges")
            if op.kind == "Output" and self.out_edges(name):
                raise GraphError(f"Output node '{name}' has outgoing edges")
            if op.expects_input() and not self.in_edges(name):
                raise GraphError(f"node '{name}' ({op.kind}) has no input")
        self._verify_kinds()
        self._verify_cycles()
        self.shapes()

    def _verify_kinds(self) -> None:
        integer = {op.kind for op in self._nodes.values() if op.numeric == "integer"}
        floating = {op.kind for op in self._nodes.values() if op.numeric == "float"}
        if integer and floating:
            raise GraphError(
                f"graph '{self.name}' mixes float ops ({', '.join(sorted(floating))}) with integer ops "
                f"({', '.join(sorted(integer))}); quantize the whole graph"
            )

    def _verify_cycles(self) -> None:
        self.order()  # no cycle without a step of delay
        for component in self.strongly_connected():
            cyclic = len(component) > 1 or any(e.src == e.dst for e in self.in_edges(component[0]))
            if not cyclic:
                continue
            if not any(self._nodes[n].role == "projection" for n in component):
                raise GraphError(
                    "cycle through " + ", ".join(f"'{n}'" for n in component)
                    + " has no projection; a recurrent connection must pass through a weighted projection"
                )
