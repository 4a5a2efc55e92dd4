"""The reference simulator: float (float64/float32) and integer semantics, vectorised over a batch.

Strongly connected components of the graph are evaluated in order. A component without a cycle runs all T
steps at once (a feed-forward projection is one matrix product over T*B rows); a recurrent component runs
step by step, or, in the common integer and float32 forms, as one compiled loop over the chunk's steps
(nmcompile.ir.recurrent, recurrent_float). Recurrent edges deliver the source's output of the previous step.

    result = simulate(graph, spikes)                 # spikes: [T, B, *input_shape] (or flattened)
    result.output                                    # the single Output's [T, B, *shape]
    simulate(graph, spikes, record=True).states      # every neuron's v (and i / u) at every step

A neuron layer with a start step s (`op.start_step`, docs/semantics.md) is held by this driver, not by its kernel:
in the steps t < s its kernel is not stepped (its state stays as reset, inputs of those steps are dropped) and its
output is 0 (no spikes; a readout outputs 0 too, as nothing before step 0 does in the source network).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import ShapeError, UnsupportedError
from nmcompile.ir import plasticity  # registers the QPlasticLinear kernel
from nmcompile.ir.graph import Graph
from nmcompile.ir.kernels import ENGINES, Kernel, make_kernel

MODES = ("float64", "float32", "integer")
SPIKE_DTYPES = ("int64", "int8")


@dataclass
class SimResult:
    """Outputs per Output node; with `record`, every node's output and every neuron's states."""

    mode: str
    outputs: dict[str, np.ndarray]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)   # plastic projections: final W [B, out, in]

    @property
    def output(self) -> np.ndarray:
        if len(self.outputs) != 1:
            raise UnsupportedError(f"the graph has {len(self.outputs)} outputs; pick one from .outputs")
        return next(iter(self.outputs.values()))


def _prepare_inputs(graph: Graph, inputs: np.ndarray | Mapping[str, np.ndarray], shapes, mode: str,
                    convert: bool = True):
    """The inputs by name as [T, B, *shape] arrays, checked; `convert` also casts them to the mode's dtype
    (`_convert`), else the caller converts chunk by chunk."""
    names = graph.inputs
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise ShapeError(f"the graph has {len(names)} inputs ({', '.join(names)}); pass a dict of arrays")
        inputs = {names[0]: inputs}
    unknown = set(inputs) - set(names)
    if unknown:
        raise ShapeError(f"no Input node named {sorted(unknown)[0]!r}; inputs are {names}")
    prepared: dict[str, np.ndarray] = {}
    steps_batch = None
    for name in names:
        if name not in inputs:
            raise ShapeError(f"no data for input '{name}'")
        x = np.asarray(inputs[name])
        shape = shapes[name]
        if x.ndim < 3 and (x.ndim < 2 or math.prod(shapes[name]) > 1):
            raise ShapeError(f"input '{name}' must be [T, B, *{tuple(shapes[name])}] (steps, samples, values), got "
                             f"an array of shape {x.shape}")
        if x.shape[2:] != tuple(shape):
            if math.prod(x.shape[2:]) != math.prod(shape):
                raise ShapeError(f"input '{name}' has {math.prod(x.shape[2:])} values per step but the "
                                 f"network expects shape {tuple(shape)} ({math.prod(shape)} values)")
            x = x.reshape(x.shape[:2] + tuple(shape))
        if steps_batch is None:
            steps_batch = x.shape[:2]
        elif x.shape[:2] != steps_batch:
            raise ShapeError(f"input '{name}' has [T, B] = {x.shape[:2]} but another input has {steps_batch}")
        prepared[name] = _convert(name, x, mode) if convert else x
    return prepared


NARROW_SPIKES = (np.dtype(np.bool_), np.dtype(np.int8), np.dtype(np.uint8))  # input dtypes a fused chain reads as is


def _convert(name: str, x: np.ndarray, mode: str, narrow: bool = False) -> np.ndarray:
    """Input `name` (or a chunk of its steps) checked and cast to the dtype of `mode`; with `narrow` (an input only
    fused chains read, integer mode) a bool/int8/uint8 array stays one byte per value (bool seen as uint8): the chain
    lists its active inputs from it and checks that every value is 0 or 1."""
    if narrow and mode == "integer" and x.dtype in NARROW_SPIKES:
        return x.view(np.uint8) if x.dtype == np.bool_ else x
    if mode == "integer":
        if x.dtype.kind == "f" and not (np.all(np.isfinite(x)) and np.array_equal(x, np.round(x))):
            raise ShapeError(f"input '{name}' holds non-integer values; the integer model takes "
                             "spikes (0/1) or integer currents")
        return x.astype(np.int64, copy=False)
    if x.dtype.kind == "f" and not _all_finite(x):
        raise ShapeError(f"input '{name}' holds NaN or inf")
    if x.dtype == mode and x.flags.c_contiguous:
        return x                          # read in place: no kernel writes to its input
    return x.astype(mode)


def _left_to_chain(x: np.ndarray, mode: str) -> bool:
    """Whether the chunk x of an input only checking chains read is left to them unconverted and unchecked: float32
    and contiguous (float_chain checks each step it does not read as binary for NaN and inf); any other array is
    checked before its cast."""
    return mode == "float32" and x.dtype == np.float32 and x.flags.c_contiguous


FINITE_JIT_MIN = 1 << 22   # input values from which the finiteness check is jit.all_finite's (else numpy's)


def _all_finite(x: np.ndarray) -> bool:
    """Whether every value of the float array x is finite: numpy's test for small arrays, jit.all_finite's one pass
    over the bits (split over the threads) from FINITE_JIT_MIN values."""
    if x.size < FINITE_JIT_MIN:
        return bool(np.all(np.isfinite(x)))
    from nmcompile.ir import jit

    return jit.all_finite(x)


CHUNK_BYTES = 1 << 21    # bound on one node's values for one chunk of steps (2 MiB: cache-sized, and below
                         # the size at which malloc maps fresh pages, whose first-touch faults would dominate);
                         # a step wider than that is a chunk of its own
FUSED_CHUNK_BYTES = 1 << 26  # with a fused chain that asks for longer chunks (ir/chain.py, ir/float_chain.py):
                             # the bound on one node's values for a chunk (64 MiB) then. A float32 chain loads each
                             # sample's state once per chunk: the conv net of benchmarks/bench_simulate.py at batch
                             # 128 (2 threads) took 0.43 s in chunks of 7 steps (8 MiB of input), 0.37 s in 50
FLOAT32_CHUNK_BYTES = 1 << 23  # float32 runs: the bound on one node's values for a chunk (8 MiB; at batch 1 of the
                               # N-MNIST-sized conv net of benchmarks/bench_simulate.py, 194 steps of 10,800 values:
                               # each further chunk cost it about 1 ms of calls, thread wake-ups and scratch set-up
                               # against 7 ms for the whole run of 100 steps, benchmarks/README.md)


class Simulator:
    """A graph bound to a simulation mode. `run` processes whole input sequences: feed-forward parts one matrix
    product per chunk of steps, recurrent components step by step; `start` + `feed` stream chunks of steps while
    keeping every state. `engine` is 'compiled' (numba loops, event-driven integer products) or 'numpy' (the
    vectorised reference they are tested against; identical bits).

    Memory: `run` streams the input through the network in chunks of `chunk_steps` steps (default: as many as keep
    each node's values of a chunk under CHUNK_BYTES, FLOAT32_CHUNK_BYTES in float32, or FUSED_CHUNK_BYTES for the
    longer chunks a fused chain asks for, at least one), so beyond the caller's input and the returned
    outputs its memory does not grow with T. `record=True` keeps every node's values and every state at every step,
    so it runs as one chunk and its memory grows with T.

    Spikes in one byte (integer mode): `spike_dtype='int8'` returns the Outputs fed by a spiking neuron layer as
    int8 0/1 arrays, an eighth of the int64 default's memory; inputs given as bool, int8 or uint8 spikes are read
    as they are by a fused chain (ir/chain.py) that is their only reader, instead of being copied to int64. The
    spikes are the same either way; with both, a fused chain reads and writes one byte per spike."""

    def __init__(self, graph: Graph, mode: str | None = None, *, engine: str = "compiled",
                 chunk_steps: int | None = None, spike_dtype: str = "int64"):
        graph.verify()
        if mode is None:
            mode = "integer" if graph.is_integer else "float64"
        if mode not in MODES:
            raise UnsupportedError(f"unknown simulation mode {mode!r}; use one of {MODES}")
        if graph.is_integer and mode != "integer":
            raise UnsupportedError("this graph is quantized (integer ops); simulate it in integer mode")
        if engine not in ENGINES:
            raise UnsupportedError(f"unknown simulation engine {engine!r}; use one of {ENGINES}")
        if chunk_steps is not None and chunk_steps < 1:
            raise UnsupportedError(f"chunk_steps must be >= 1, got {chunk_steps}")
        if spike_dtype not in SPIKE_DTYPES:
            raise UnsupportedError(f"unknown spike dtype {spike_dtype!r}; use one of {SPIKE_DTYPES}")
        if spike_dtype != "int64" and mode != "integer":
            raise UnsupportedError(f"spike_dtype={spike_dtype!r} is an integer-mode option; {mode} outputs keep "
                                   f"the mode's dtype")
        self.graph = graph
        self.mode = mode
        self.engine = engine
        self.chunk_steps = chunk_steps
        self.dtype = np.dtype(np.int64) if mode == "integer" else np.dtype(mode)
        self.spike_dtype = np.dtype(spike_dtype)
        self.shapes = graph.shapes()
        self.components = graph.strongly_connected()
        # per component: (its nodes, whether it is one node without a self-loop, whether that node is an Input)
        self._plan = [(component, len(component) == 1 and not any(e.src == component[0]
                                                                   for e in graph.in_edges(component[0])),
                       graph.node(component[0]).kind == "Input") for component in self.components]
        self._outputs = graph.outputs
        self._order = graph.order()      # computed once: a short run of one sample would spend ~0.15 ms on it
        self._stream_batch: int | None = None
        self._built: dict[str, Kernel] | None = None
        self._found_chains: dict | None = None
        self._found_chain_inputs: set[str] | None = None
        self._widest: tuple[int, bool] | None = None
        self.plastic = plastic_pairs(graph)

    def _kernels(self) -> dict[str, Kernel]:
        """The kernels, built once (the 'compile' step: weight preparation, layouts) and reset per run."""
        if self._built is None:
            kernels = {}
            for name, op in self.graph.nodes.items():
                in_edges = self.graph.in_edges(name)
                in_shape = self.shapes[in_edges[0].src] if in_edges else None
                kernels[name] = make_kernel(op, in_shape, self.shapes[name], self.mode)
                kernels[name].set_engine(self.engine)
            self._built = kernels
        return self._built

    def _chains(self) -> dict:
        """The fused feed-forward chains by first node (compiled engine): integer (nmcompile.ir.chain) or float32
        (nmcompile.ir.float_chain) ones."""
        if self._found_chains is None:
            self._found_chains = {}
            if self.engine == "compiled" and self.mode == "integer":
                from nmcompile.ir.chain import find_chains

                self._found_chains = find_chains(self.graph, self._kernels(), self.components)
            elif self.engine == "compiled" and self.mode == "float32":
                from nmcompile.ir.float_chain import find_float_chains

                self._found_chains = find_float_chains(self.graph, self._kernels(), self.components)
        return self._found_chains

    def output_dtype(self, name: str) -> np.dtype:
        """The dtype of Output `name`'s values in a run: `spike_dtype` when its one source is a spiking integer
        neuron layer (values 0 or 1), else the mode's."""
        edges = self.graph.in_edges(name)
        source = self.graph.node(edges[0].src) if len(edges) == 1 else None
        spikes = source is not None and source.kind == "QNeuron" and source.spiking
        return self.spike_dtype if spikes else self.dtype

    def _chain_inputs(self) -> set[str]:
        """The Input nodes that only fused chains which check their input read (narrow integer spikes need no int64
        copy, a float32 input no separate finiteness check: `_convert`)."""
        if self._found_chain_inputs is None:
            heads = {chain.head for chain in self._chains().values() if chain.checks_input}
            self._found_chain_inputs = {
                name for name in self.graph.inputs
                if self.graph.out_edges(name) and all(e.dst in heads for e in self.graph.out_edges(name))}
        return self._found_chain_inputs

    def _widest_values(self) -> tuple[int, bool]:
        """(values per step and sample of the widest node that holds values in a chunk, whether a chain asks for
        long chunks), found once: float32 fused chains' inner nodes hold none."""
        if self._widest is None:
            inner, long_chunks = set(), False
            if self.mode == "float32":
                chains = self._chains().values()
                inner = {name for chain in chains for name in (chain.head, *chain.followers[:-1])}
                long_chunks = any(chain.long_chunks for chain in chains)
            # math.prod: np.prod of a shape tuple costs ~7 us a call
            self._widest = (max(math.prod(shape) for name, shape in self.shapes.items() if name not in inner),
                            long_chunks)
        return self._widest

    def _chunk(self, steps: int, batch: int, record: bool) -> int:
        """Steps per chunk of a run of `steps` steps."""
        if record or not all(k.chunkable for k in self._kernels().values()):
            return max(steps, 1)
        if self.chunk_steps is not None:
            return self.chunk_steps
        widest, long_chunks = self._widest_values()
        per_step = max(batch * widest * self.dtype.itemsize, 1)
        if self.mode == "float32":          # as many steps as fit, in chunks of equal length (no short last chunk)
            bound = FUSED_CHUNK_BYTES if long_chunks else FLOAT32_CHUNK_BYTES
            longest = max(1, bound // per_step)
            return -(-steps // -(-steps // longest)) if steps else 1
        fused = [c.chunk_steps(batch) for c in self._chains().values()]   # ir/chain.py: a chain's own choice,
        fused = [min(steps, max(1, FUSED_CHUNK_BYTES // per_step)) for steps in fused]  # bounded for the other nodes
        return max(1, CHUNK_BYTES // per_step, *fused)

    def run(self, inputs: np.ndarray | Mapping[str, np.ndarray], record: bool = False) -> SimResult:
        graph = self.graph
        if self.plastic:  # learning couples a projection to its neuron layer: the whole graph runs step by step
            return self._run_plastic(inputs, record)
        raw = _prepare_inputs(graph, inputs, self.shapes, self.mode, convert=False)
        steps, batch = next(iter(raw.values())).shape[:2]
        self.start(batch)
        chunk = self._chunk(steps, batch, record)
        outputs = {name: np.zeros((steps, batch, *self.shapes[name]), dtype=self.output_dtype(name))
                   for name in self._outputs}
        narrow = set() if record else self._chain_inputs()
        values: dict[str, np.ndarray] = {}
        for first in range(0, max(steps, 1), chunk):
            chunks = {name: x[first : first + chunk] for name, x in raw.items()}
            unchecked = {name for name in narrow if _left_to_chain(chunks[name], self.mode)}
            part = {name: x if name in unchecked else _convert(name, x, self.mode, name in narrow)
                    for name, x in chunks.items()}
            values = self._advance(part, record, {name: out[first : first + chunk] for name, out in outputs.items()},
                                   unchecked=unchecked)
            for name in self._outputs:
                outputs[name][first : first + chunk] = values[name]
        self._stream_batch = None
        states: dict[str, dict[str, np.ndarray]] = {}
        if record:
            states = {name: kernel.states() for name, kernel in self._kernels().items() if kernel.states()}
        return SimResult(self.mode, outputs, values if record else {}, states)

    def _run_plastic(self, inputs, record: bool) -> SimResult:
        graph = self.graph
        values: dict[str, np.ndarray] = dict(_prepare_inputs(graph, inputs, self.shapes, self.mode))
        steps, batch = next(iter(values.values())).shape[:2]
        kernels = self._kernels()
        order = [n for n in graph.order() if graph.node(n).kind != "Input"]
        for n in order:
            kernels[n].reset(batch)
        _run_stepwise(graph, order, kernels, values, steps, batch, self.shapes, self.dtype, record,
                      learn=self.plastic)
        states = {n: kernels[n].states() for n in order if record and kernels[n].states()}
        outputs = {name: values[name].astype(self.output_dtype(name), copy=False) for name in graph.outputs}
        weights = {p: kernels[p].weight.copy() for p, _ in self.plastic}
        return SimResult(self.mode, outputs, values if record else {}, states, weights)

    def _advance(self, values: dict[str, np.ndarray], record: bool, into: Mapping[str, np.ndarray] | None = None,
                 unchecked: set[str] | frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        """Run one chunk of steps (inputs in `values`, converted) through every component, continuing from the
        states the previous chunk left; returns every node's values for the chunk. `into` may give an Output's
        destination for the chunk, which a fused chain feeding it writes directly; `unchecked`: float32 inputs
        left to their chains' finiteness check (`_convert`)."""
        graph, kernels, previous = self.graph, self._stream_kernels, self._stream_prev
        steps, batch = next(iter(values.values())).shape[:2]
        chains, fused = ({} if record else self._chains()), set()
        for component, alone, is_input in self._plan:
            first = component[0]
            if alone:
                if is_input or first in fused:
                    continue
                chain = chains.get(first)  # a fused chain (ir/chain.py); None: this chunk runs node by node
                checked = {} if chain is None or chain.source not in unchecked else {"checked": False}
                spikes = None if chain is None else chain.run(values[chain.source], self._stream_step,
                                                              (into or {}).get(chain.output), **checked)
                if spikes is None and checked:
                    raise ShapeError(f"input '{chain.source}' holds NaN or inf")
                if spikes is not None:
                    values[chain.last] = spikes
                    fused.update(chain.followers)
                    continue
                if chain is not None and values[chain.source].dtype != self.dtype:   # narrow input spikes
                    values[chain.source] = values[chain.source].astype(self.dtype)
                x = _gather(graph, first, values, steps, batch, self.shapes, self.dtype, previous)
                values[first] = _run_held(kernels[first], graph.node(first), x, record, self._stream_step)
            elif (loop := _recurrent_loop(graph, component, kernels)) is not None:
                loop.run(kernels, values, steps, batch, record, previous, self._stream_step)
            else:
                _run_stepwise(graph, component, kernels, values, steps, batch, self.shapes, self.dtype, record,
                              previous=previous, first_step=self._stream_step)
        if steps:
            for name, value in values.items():   # a fused chain's inner nodes have no values (and one consumer)
                previous[name] = value[-1]
        self._stream_step += steps
        return values

    # -- streaming --------------------------------------------------------------------------------------
    def start(self, batch: int) -> None:
        """Reset every state for a stream of `batch` samples."""
        self._stream_kernels = self._kernels()
        for kernel in self._stream_kernels.values():
            kernel.reset(batch)
        self._stream_order = list(self._order)
        self._stream_prev: dict[str, np.ndarray] = {}
        self._stream_batch = batch
        self._stream_step = 0

    def feed(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Advance the stream by the chunk's steps; returns each Output's values for those steps."""
        if self._stream_batch is None:
            raise UnsupportedError("call start(batch) before feed()")
        values = dict(_prepare_inputs(self.graph, inputs, self.shapes, self.mode))
        steps, batch = next(iter(values.values())).shape[:2]
        if batch != self._stream_batch:
            raise ShapeError(f"stream started with batch {self._stream_batch} but a chunk has batch {batch}")
        if not self.plastic:
            values = self._advance(values, False)
            return {name: values[name].astype(self.output_dtype(name), copy=False) for name in self.graph.outputs}
        order = [n for n in self._stream_order if self.graph.node(n).kind != "Input"]
        _run_stepwise(self.graph, order, self._stream_kernels, values, steps, batch, self.shapes, self.dtype,
                      False, previous=self._stream_prev, learn=self.plastic, first_step=self._stream_step)
        self._stream_step += steps
        for name in self.graph.nodes:
            self._stream_prev[name] = values[name][-1]
        return {name: values[name].astype(self.output_dtype(name), copy=False) for name in self.graph.outputs}


def simulate(graph: Graph, inputs: np.ndarray | Mapping[str, np.ndarray], *, mode: str | None = None,
             record: bool = False, engine: str = "compiled") -> SimResult:
    """Run `graph` on `inputs` for all their T steps. `mode` defaults to 'integer' for an integer graph and
    'float64' otherwise; `engine` is 'compiled' or 'numpy' (Simulator)."""
    return Simulator(graph, mode, engine=engine).run(inputs, record)


def start_step(op) -> int:
    """The step from which a neuron layer updates (0 for every other op)."""
    return int(getattr(op, "start_step", 0))


def _run_held(kernel: Kernel, op, x: np.ndarray, record: bool, first_step: int) -> np.ndarray:
    """`kernel.run_chunk` over a chunk x whose first step is `first_step`, with the layer held before its start
    step: no update, output 0, states as reset (recorded as such)."""
    steps, batch = x.shape[:2]
    held = min(max(start_step(op) - first_step, 0), steps)
    if held == 0:
        return kernel.run_chunk(x, record)
    initial = {k: np.array(getattr(kernel, k)) for k in kernel.state_names} if record else {}
    parts = [np.zeros((held, batch, *kernel.out_shape), dtype=kernel.dtype)]
    recorded = {k: [np.broadcast_to(v, (held, *v.shape))] for k, v in initial.items()}
    if held < steps:
        parts.append(kernel.run_chunk(x[held:], record))
        for k, later in kernel.states().items():
            recorded[k].append(later)
    if record:
        kernel.set_recorded({k: np.concatenate(v) for k, v in recorded.items()})
    return np.concatenate(parts)


def _gather(graph: Graph, name: str, values, steps: int, batch: int, shapes, dtype,
            previous: Mapping[str, np.ndarray]) -> np.ndarray:
    """Sum of a node's inputs over a chunk of steps; recurrent edges shifted by one step (their first step is
    the source's last value of the previous chunk, `previous`, or zero)."""
    total = None
    for e in graph.in_edges(name):
        x = values[e.src]
        if e.recurrent:
            shifted = np.zeros_like(x)
            shifted[1:] = x[:-1]
            if e.src in previous and steps:
                shifted[0] = previous[e.src]
            x = shifted
        total = x if total is None else total + x       # kernels never write to their input
    if total is None:
        total = np.zeros((steps, batch, *shapes[name]), dtype=dtype)
    return total


def _recurrent_loop(graph: Graph, component: list[str], kernels: dict[str, Kernel]):
    """The compiled loop of an integer or float32 recurrent component (nmcompile.ir.recurrent, recurrent_float),
    or None: `_run_stepwise`."""
    first = kernels[component[0]]
    if first.engine != "compiled" or first.dtype not in (np.int64, np.float32):
        return None
    from nmcompile.ir import recurrent, recurrent_float  # import numba: only when a recurrent component runs compiled

    plan = recurrent_float.plan if first.dtype == np.float32 else None
    return recurrent.compiled_loop(graph, component, kernels, plan)


def plastic_pairs(graph: Graph) -> list[tuple[str, str]]:
    """(plastic projection, the neuron layer it feeds) for every QPlasticLinear."""
    pairs = []
    for name, op in graph.nodes.items():
        if op.kind == "QPlasticLinear":
            post = plasticity.post_layer(graph, name)
            if post is None:
                raise UnsupportedError(f"plastic projection '{name}' must feed exactly one neuron layer directly")
            pairs.append((name, post))
    return pairs


def _run_stepwise(graph: Graph, component: list[str], kernels: dict[str, Kernel], values, steps: int,
                  batch: int, shapes, dtype, record: bool, previous: dict[str, np.ndarray] | None = None,
                  learn: list[tuple[str, str]] = (), first_step: int = 0) -> None:
    """Evaluate `component` (kernels already reset) step by step; `previous` holds each node's output of the
    step before the first one (for recurrent edges across streamed chunks); `learn` lists (plastic projection,
    post layer) pairs whose weights update after every step; `first_step` is the index of the first step (a stream's
    later chunks), against which start steps count."""
    members = set(component)
    previous = previous or {}
    out = {n: np.zeros((steps, batch, *shapes[n]), dtype=dtype) for n in component}
    recs = {n: {k: np.zeros((steps, batch, *shapes[n]), dtype=dtype) for k in kernels[n].state_names}
            for n in component} if record else {}
    lagged = [n for n in component if kernels[n].lagged]
    direct = [n for n in component if not kernels[n].lagged]
    in_edges = {n: graph.in_edges(n) for n in component}
    starts = {n: start_step(graph.node(n)) for n in direct}

    def input_at(n: str, t: int) -> np.ndarray:
        total = None
        for e in in_edges[n]:
            tt = t - 1 if e.recurrent else t
            if tt >= 0:
                x = (out[e.src] if e.src in members else values[e.src])[tt]
            elif e.src in previous:
                x = previous[e.src]
            else:
                continue
            total = x.copy() if total is None else total + x
        if total is None:                # nothing arrived yet: zeros of what n reads (not of what it outputs)
            total = np.zeros((batch, *(shapes[in_edges[n][0].src] if in_edges[n] else shapes[n])), dtype=dtype)
        return total

    for t in range(steps):
        for n in lagged:
            out[n][t] = kernels[n].peek()
        for n in direct:
            if first_step + t >= starts[n]:       # else held: its output stays 0
                out[n][t] = kernels[n].step(input_at(n, t))
            for k in recs.get(n, {}):
                recs[n][k][t] = getattr(kernels[n], k)
        for n in lagged:
            kernels[n].push(input_at(n, t))
        for p, post in learn:
            kernels[p].learn(out[post][t])
    for n in component:
        values[n] = out[n]
        if record and recs.get(n):
            kernels[n].set_recorded(recs[n])
