"""Graph capture: run a PyTorch SNN on probe inputs and record the data flow between its layers.

Known modules (torch layers, framework neurons; `nmcompile.frontend.lowering`) are leaves: forward hooks see
which tensor each call consumed and produced. Between leaves, a `TorchFunctionMode` sees the torch functions
applied to network data: `+` (residual sums), flatten/view/reshape, multiplication by a constant, indexing the
input sequence by time and stacking the per-step outputs; anything else is named in an error.

Every value is tagged with its sources `(node, step)`. The k-th call of a module is its step k; a call at
step k reading a value of step k - 1 is a recurrent edge. Three forward styles are recognised:

    step      forward(x_t [B, *shape]) computes one time step (state inside the modules)
    loop      forward(x [B, *shape]) loops over time itself with a constant input
    sequence  forward(x [T, B, *shape]) loops over time itself, reading x[t]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import NmcError, ShapeError, UnsupportedError
from nmcompile.frontend import lowering
from nmcompile.ir import ops as O
from nmcompile.ir.base import Provenance
from nmcompile.ir.graph import Graph

STYLES = ("auto", "step", "loop", "sequence")
_ADD = {"add", "__add__", "__radd__", "__iadd__", "add_"}
_MUL = {"mul", "__mul__", "__rmul__", "__imul__", "mul_"}
_DIV = {"div", "__truediv__", "true_divide", "__itruediv__"}
_FLATTEN = {"flatten", "view", "reshape"}
_SAME = {"detach", "clone", "contiguous", "float", "double", "to", "type_as", "requires_grad_", "detach_", "data"}


@dataclass(frozen=True)
class Src:
    node: str   # a leaf path, a function node name or "input"
    step: int | None  # None: the same at every step (a constant input)


@dataclass(frozen=True)
class Value:
    kind: str   # "data", "state" (a neuron's hidden state), "sequence" (the whole input), "stacked"
    sources: frozenset[Src]
    owner: str = ""  # the neuron a state belongs to


@dataclass
class Call:
    node: str
    step: int
    sources: frozenset[Src]


@dataclass
class Trace:
    style: str
    steps: int                      # calls per leaf (the model's own loop length for loop/sequence styles)
    calls: list[Call] = field(default_factory=list)
    leaves: dict[str, tuple] = field(default_factory=dict)   # path -> (module, in_shape, out_shape)
    functions: dict[str, O.Op] = field(default_factory=dict)  # generated nodes between leaves
    output: Value | None = None
    input_shape: tuple[int, ...] = ()


class _ProbeMismatch(Exception):
    """The probe input does not fit the model's forward style; try the next style."""


class Tracer:
    def __init__(self, model, style: str, input_shape: tuple[int, ...]):
        self.model = model
        self.trace = Trace(style=style, steps=0, input_shape=input_shape)
        self.tags: dict[int, Value] = {}
        self._alive: list[object] = []
        self.counts: Counter[str] = Counter()
        self.depth = 0
        self.paths: dict[int, str] = {}
        self._pending: dict[int, tuple[str, int, frozenset[Src]]] = {}
        self._function_keys: dict[tuple, str] = {}

    # -- tagging ----------------------------------------------------------------------------------------
    def tag(self, tensor, value: Value) -> None:
        self.tags[id(tensor)] = value
        self._alive.append(tensor)

    def value_of(self, obj) -> Value | None:
        return self.tags.get(id(obj))

    def _tensors(self, obj) -> list:
        import torch

        if isinstance(obj, torch.Tensor):
            return [obj]
        if isinstance(obj, (list, tuple)):
            return [t for item in obj for t in self._tensors(item)]
        if isinstance(obj, dict):
            return [t for item in obj.values() for t in self._tensors(item)]
        return []

    # -- module hooks -----------------------------------------------------------------------------------
    def install(self) -> list:
        handles = []
        for path, module in self.model.named_modules():
            reg = lowering.find(module)
            if reg is None and any(True for _ in module.children()):
                continue  # a container: its children are traced
            name = path or "model"
            self.paths[id(module)] = name
            handles.append(module.register_forward_pre_hook(self._before, with_kwargs=True))
            handles.append(module.register_forward_hook(self._after, with_kwargs=True))
        return handles

    def _before(self, module, args, kwargs):
        self.depth += 1
        if self.depth > 1:
            return None
        path = self.paths[id(module)]
        tensors = self._tensors(args) + self._tensors(kwargs)
        if not tensors:
            raise UnsupportedError(f"module '{path}' was called without a tensor input")
        main = self.value_of(tensors[0])
        if main is None and _is_zero(tensors[0]):
            main = Value("data", frozenset())  # an initial all-zero state (e.g. a recurrent input at step 0)
        if main is None or main.kind not in ("data",):
            what = "the whole input sequence" if main is not None and main.kind == "sequence" else \
                "a tensor that does not come from the network input"
            raise _ProbeMismatch(f"module '{path}' receives {what}")
        for extra in tensors[1:]:
            v = self.value_of(extra)
            if v is None:
                continue
            own = {s.node for s in v.sources} <= {path} or v.owner == path
            if not own:
                raise UnsupportedError(f"module '{path}' receives a second input from "
                                       f"{sorted({s.node for s in v.sources} or {v.owner})}; only a neuron's own "
                                       "state may be passed back in")
        step = self.counts[path]
        self._pending[id(module)] = (path, step, main.sources)
        return None

    def _after(self, module, args, kwargs, output):
        self.depth -= 1
        if self.depth > 0:
            return None
        path, step, sources = self._pending.pop(id(module))
        self.counts[path] += 1
        outs = self._tensors(output)
        if not outs:
            raise UnsupportedError(f"module '{path}' returned no tensor")
        reg = lowering.find(module)
        in_shape = tuple(self._tensors(args)[0].shape[1:])
        out_shape = tuple(outs[0].shape[1:])
        self.trace.leaves.setdefault(path, (module, in_shape, out_shape))
        if reg is not None and reg.passthrough:
            self.tag(outs[0], Value("data", sources))
        else:
            self.trace.calls.append(Call(path, step, sources))
            self.tag(outs[0], Value("data", frozenset({Src(path, step)})))
        for extra in outs[1:]:
            if extra is not outs[0]:  # a readout may return its membrane both as output and as state
                self.tag(extra, Value("state", frozenset(), owner=path))
        return None

    # -- functions between modules -----------------------------------------------------------------------
    def on_function(self, func, args, kwargs, result):
        import torch

        name = getattr(func, "__name__", str(func))
        if name == "__get__":
            name = getattr(getattr(func, "__self__", None), "__name__", name)
        inputs = [(t, self.value_of(t)) for t in self._tensors(args) + self._tensors(kwargs)]
        tracked = [(t, v) for t, v in inputs if v is not None]
        if not tracked:
            return result
        kinds = {v.kind for _, v in tracked}
        if name in ("unbind", "__iter__") and kinds == {"sequence"}:
            return self._unbind(args, kwargs, result)
        if not isinstance(result, torch.Tensor):
            return result
        if name == "__getitem__":
            return self._getitem(args, result, tracked)
        if kinds - {"data"} and name not in {"stack"} | _SAME:
            if "state" in kinds:
                return result  # arithmetic on neuron states (recording membranes): not network data
            raise _ProbeMismatch(f"the input sequence is used directly by torch.{name}")
        if name in _SAME:
            self.tag(result, tracked[0][1])
        elif name in _ADD:
            self._add(name, args, kwargs, result, inputs)
        elif name in _MUL or name in _DIV:
            self._scale(name, args, result, tracked)
        elif name == "__neg__" or name == "neg":
            self._scale_by(result, tracked[0][1], np.array(-1.0), "neg")
        elif name in _FLATTEN:
            self._flatten(tracked[0], result)
        elif name == "stack":
            self._stack(args, kwargs, result)
        else:
            raise UnsupportedError(
                f"torch.{name} is applied to spikes/currents between layers; supported there: + (residual "
                "sums), flatten/view/reshape, multiplication or division by a constant, indexing the input by "
                "time and torch.stack of per-step outputs. Put other operations inside a supported module"
            )
        return result

    def _getitem(self, args, result, tracked):
        value = tracked[0][1]
        index = args[1] if len(args) > 1 else None
        if value.kind == "sequence" and isinstance(index, int):
            self.tag(result, Value("data", frozenset({Src("input", index)})))
            return result
        if value.kind == "stacked":
            return result
        raise _ProbeMismatch(f"network data is indexed with {index!r}")

    def _unbind(self, args, kwargs, result):
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if dim != 0:
            raise _ProbeMismatch("the input sequence is split along a dimension other than time")
        parts = list(result)
        for t, part in enumerate(parts):
            self.tag(part, Value("data", frozenset({Src("input", t)})))
        return iter(parts) if not isinstance(result, (tuple, list)) else result

    def _add(self, name, args, kwargs, result, inputs):
        if kwargs.get("alpha", 1) != 1:
            raise UnsupportedError("torch.add with alpha != 1 between layers is not supported")
        sources: set[Src] = set()
        operands = list(args[:2])
        for operand in operands:
            v = self.value_of(operand)
            if v is not None:
                sources |= v.sources
            elif not _is_zero(operand):
                raise UnsupportedError("a constant is added to spikes/currents between layers; express it as a "
                                       "bias of the preceding layer")
        steps = {s.step for s in sources if s.step is not None}
        if len(steps) > 1:
            raise UnsupportedError("activity of different time steps is added together (an accumulation over "
                                   "time, e.g. a spike count); return the per-step outputs (torch.stack) instead")
        self.tag(result, Value("data", frozenset(sources)))

    def _scale(self, name, args, result, tracked):
        import torch

        if len(tracked) != 1:
            raise UnsupportedError(f"torch.{name} of two network signals (a product of activities) is not supported")
        other = args[1] if self.value_of(args[0]) is not None else args[0]
        factor = np.asarray(other.detach().cpu().double().numpy() if isinstance(other, torch.Tensor) else other,
                            dtype=np.float64)
        if name in _DIV:
            if self.value_of(args[0]) is None:
                raise UnsupportedError("dividing a constant by network data is not supported")
            factor = 1.0 / factor
        if factor.ndim and factor.shape[0] == result.shape[0] and factor.ndim == result.ndim:
            if factor.shape[0] != 1:
                raise UnsupportedError("a per-sample scale factor (over the batch) is not supported")
            factor = factor[0]
        self._scale_by(result, tracked[0][1], factor, "scale")

    def _scale_by(self, result, value: Value, factor: np.ndarray, kind: str):
        key = ("scale", _nodes_of(value), factor.shape, factor.tobytes())
        name = self._function_node(key, kind, value, lambda: O.Scale(scale=factor))
        self._record_function(name, value, result)

    def _flatten(self, item, result):
        tensor, value = item
        before, after = tuple(tensor.shape), tuple(result.shape)
        if not after or after[0] != before[0] or len(before) < 2:
            raise UnsupportedError(f"a reshape from {before} to {after} changes the batch dimension")
        dims = _flatten_dims(before[1:], after[1:])
        if dims is None:   # any other reshape keeping the element count (e.g. a vector back to a map for a conv)
            key = ("reshape", _nodes_of(value), after[1:])
            name = self._function_node(key, "reshape", value, lambda: O.Reshape(shape=after[1:]))
        else:
            key = ("flatten", _nodes_of(value), *dims)
            name = self._function_node(key, "flatten", value, lambda: O.Flatten(start_dim=dims[0], end_dim=dims[1]))
        self._record_function(name, value, result)

    def _function_node(self, key, kind, value, make) -> str:
        if key not in self._function_keys:
            base = "_".join(sorted(_nodes_of(value))) or "input"
            name = f"{base}.{kind}"
            n = 1
            while name in self.trace.functions:
                n += 1
                name = f"{base}.{kind}{n}"
            self._function_keys[key] = name
            self.trace.functions[name] = make()
        return self._function_keys[key]

    def _record_function(self, name, value: Value, result):
        steps = {s.step for s in value.sources}
        step = None if steps == {None} else max(s for s in steps if s is not None)
        self.trace.calls.append(Call(name, step, value.sources))
        self.tag(result, Value("data", frozenset({Src(name, step)})))

    def _stack(self, args, kwargs, result):
        items = args[0] if args else kwargs.get("tensors", [])
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if dim != 0:
            raise UnsupportedError("per-step outputs must be stacked along dim 0 (time)")
        sources: set[Src] = set()
        for item in items:
            v = self.value_of(item)
            if v is None or v.kind != "data":
                continue
            sources |= v.sources
        if sources:
            self.tag(result, Value("stacked", frozenset(sources)))


def _is_zero(obj) -> bool:
    import torch

    if isinstance(obj, torch.Tensor):
        return bool(torch.all(obj == 0))
    return isinstance(obj, (int, float)) and obj == 0


def _nodes_of(value: Value) -> frozenset[str]:
    return frozenset(s.node for s in value.sources)


def _flatten_dims(before: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, int] | None:
    """The (start, end) unbatched dims whose merge turns `before` into `after`, or None when no merge does."""
    for start in range(len(before)):
        for end in range(start, len(before)):
            merged = (*before[:start], int(np.prod(before[start : end + 1])), *before[end + 1 :])
            if merged == after:
                return start, end
    return None


# ======================================================================================================
# running the probes
# ======================================================================================================
def prepare_model(model) -> None:
    """Evaluation mode and fresh state in every framework the model uses."""
    model.eval()
    for module_name in ("snntorch", "spikingjelly", "sinabs", "nmcompile_nn"):
        try:
            module = __import__(f"nmcompile.frontend.{module_name}", fromlist=["x"])
        except ImportError:
            continue
        reset = getattr(module, "reset_states", None) or getattr(module, "prepare", None)
        if module_name == "spikingjelly" and not any("spikingjelly" in type(m).__module__ for m in model.modules()):
            continue
        if reset:
            reset(model)


def _model_dtype(model):
    import torch

    for p in model.parameters():
        return p.dtype
    return torch.float32


def call_step(model, x, state):
    """Call a one-step model; thread Norse-style (output, state) returns."""
    out = model(x) if state is None else model(x, state)
    if isinstance(out, tuple) and len(out) == 2 and not _is_tensor(out[1]) and _accepts_state(model):
        return out[0], out[1]
    return out, None


def _is_tensor(obj) -> bool:
    import torch

    return isinstance(obj, torch.Tensor)


def _accepts_state(model) -> bool:
    import inspect

    try:
        return "state" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _run(model, style: str, input_shape, steps: int, batch: int = 2) -> Trace:
    import torch
    from torch.overrides import TorchFunctionMode

    tracer = Tracer(model, style, input_shape)
    dtype = _model_dtype(model)
    generator = torch.Generator().manual_seed(0)

    def probe(shape):
        return (torch.rand(shape, generator=generator) < 0.5).to(dtype)

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            if tracer.depth > 0:
                return result
            return tracer.on_function(func, args, kwargs, result)

    handles = tracer.install()
    prepare_model(model)
    outputs = []
    try:
        with torch.no_grad(), Mode():
            if style == "step":
                state = None
                for t in range(steps):
                    x = probe((batch, *input_shape))
                    tracer.tag(x, Value("data", frozenset({Src("input", t)})))
                    out, state = call_step(model, x, state)
                    outputs.append(out)
            elif style == "loop":
                x = probe((batch, *input_shape))
                tracer.tag(x, Value("data", frozenset({Src("input", None)})))
                outputs.append(model(x))
            else:
                x = probe((steps, batch, *input_shape))
                tracer.tag(x, Value("sequence", frozenset()))
                outputs.append(model(x))
    finally:
        for h in handles:
            h.remove()
    result = outputs[-1]
    while isinstance(result, (tuple, list)) and result:
        result = result[0]
    tracer.trace.output = tracer.value_of(result)
    counts = set(tracer.counts.values())
    tracer.trace.steps = max(counts) if counts else 0
    return tracer.trace


def capture(model, input_shape: tuple[int, ...], style: str = "auto", trace_steps: int = 8) -> Trace:
    """Trace `model` (an nn.Module) on inputs of per-step shape `input_shape` in the given forward style."""
    if style not in STYLES:
        raise UnsupportedError(f"unknown forward style {style!r}; use one of {STYLES}")
    if style != "auto":
        try:
            return _checked(_run(model, style, input_shape, trace_steps if style == "sequence" else 2))
        except _ProbeMismatch as err:
            raise UnsupportedError(f"the model does not run in '{style}' style: {err}") from None
        except NmcError:
            raise
        except Exception as err:
            raise UnsupportedError(_failure(style, err)) from None
    problems = []
    for candidate in ("loop", "sequence"):
        steps = trace_steps if candidate == "sequence" else 2
        try:
            trace = _run(model, candidate, input_shape, steps)
        except _ProbeMismatch as err:
            problems.append(f"{candidate}: {err}")
            continue
        except NmcError:
            raise
        except Exception as err:
            problems.append(_failure(candidate, err))
            continue
        if candidate == "loop" and trace.steps == 1:
            return _checked(_run(model, "step", input_shape, 2))  # one call per step: a one-step module
        return _checked(trace)
    raise UnsupportedError("could not run the model on inputs of per-step shape "
                           f"{tuple(input_shape)}: " + "; ".join(problems))


def _failure(style: str, err: Exception) -> str:
    detail = " ".join(str(err).split())[:160]
    hint = " (a sequence model may loop over more steps than --trace-steps)" if isinstance(err, IndexError) else ""
    return f"{style}: forward raised {type(err).__name__}: {detail}{hint}"


def _checked(trace: Trace) -> Trace:
    if trace.output is None or trace.output.kind not in ("data", "stacked"):
        raise UnsupportedError("the model's output does not come from its input (or it returns a neuron state "
                               "first); return the output spikes (a stacked [T, B, ...] tensor or one step)")
    return trace


# ======================================================================================================
# building the graph
# ======================================================================================================
def build_graph(trace: Trace, name: str = "network") -> Graph:
    """Turn a trace into an IR graph (one node per leaf module, generated nodes for functions)."""
    graph = Graph(name)
    graph.add("input", O.Input(shape=trace.input_shape, provenance=Provenance("torch", "input")))
    static = _static_nodes(trace)
    entries: dict[str, str] = {}
    exits: dict[str, str] = {"input": "input"}
    called = {c.node for c in trace.calls}
    spikes_needed: dict[str, str] = {}
    checks: list[tuple[str, object]] = []
    for path, (module, in_shape, out_shape) in trace.leaves.items():
        if path not in called:
            continue  # passthrough modules
        lowered = lowering.lower(module, path, in_shape, out_shape)
        for local, op in lowered.nodes:
            graph.add(_join(path, local), op)
        for src, dst, recurrent in lowered.edges:
            graph.connect(_join(path, src), _join(path, dst), recurrent)
        entries[path] = _join(path, lowered.entry)
        exits[path] = _join(path, lowered.exit)
        if lowered.requires_spikes:
            spikes_needed[entries[path]] = lowered.requires_spikes
        if lowered.check is not None:
            checks.append((entries[path], lowered.check))
    for fname, op in trace.functions.items():
        graph.add(fname, op)
        entries[fname] = exits[fname] = fname
    per_node = Counter(c.node for c in trace.calls)
    for node, count in per_node.items():
        if node not in static and count != trace.steps and node in trace.leaves:
            raise UnsupportedError(f"module '{node}' runs {count} times while others run {trace.steps} times; a "
                                   "module used twice per step (shared weights) is not supported")
    edges: dict[tuple[str, str], bool] = {}
    for call in trace.calls:
        for src in call.sources:
            recurrent = _classify(call, src, static)
            key = (exits[src.node], entries[call.node])
            if edges.setdefault(key, recurrent) != recurrent:
                raise UnsupportedError(f"'{call.node}' reads '{src.node}' both from the current and the previous "
                                       "step")
    output_sources = {s.node for s in trace.output.sources}
    shape = trace.leaves[next(iter(output_sources))][2] if next(iter(output_sources)) in trace.leaves else None
    for (src, dst), recurrent in edges.items():
        graph.connect(src, dst, recurrent)
    out_shape = shape if shape is not None else graph.shapes()[exits[next(iter(output_sources))]]
    graph.add("output", O.Output(shape=out_shape))
    for node in sorted(output_sources):
        graph.connect(exits[node], "output")
    for entry, refusal in spikes_needed.items():
        _check_spiking_input(graph, entry, refusal)
    graph.verify()
    for entry, check in checks:
        check(graph, entry)
    return graph


def _check_spiking_input(graph: Graph, entry: str, refusal: str) -> None:
    """Every input of `entry`, through Flatten/Delay, must be a spiking neuron layer (0/1 values)."""
    for edge in graph.in_edges(entry):
        node = edge.src
        while graph.node(node).transparent and len(graph.in_edges(node)) == 1:
            node = graph.in_edges(node)[0].src
        op = graph.node(node)
        if op.role != "neuron" or not getattr(op, "spiking", False):
            raise UnsupportedError(f"{refusal} (its input '{node}' is {op.kind}, not a spiking neuron layer)")


def _join(path: str, local: str | None) -> str:
    if local is None:
        raise UnsupportedError(f"module '{path}' is a passthrough and cannot be connected")
    return f"{path}.{local}" if local else path


def _static_nodes(trace: Trace) -> set[str]:
    """Nodes computed once from constant inputs (their value is the same at every step)."""
    per_node = Counter(c.node for c in trace.calls)
    static = {"input"} if trace.style in ("loop",) else set()
    for call in trace.calls:
        if per_node[call.node] == 1 and trace.steps > 1 and all(s.node in static or s.step is None
                                                                for s in call.sources):
            static.add(call.node)
    return static


def _classify(call: Call, src: Src, static: set[str]) -> bool:
    """Whether the edge from `src` into `call` reads the previous step (recurrent)."""
    if src.step is None or src.node in static or call.step is None:
        return False
    if src.step == call.step:
        return False
    if src.step == call.step - 1:
        return True
    raise UnsupportedError(f"'{call.node}' at step {call.step} reads '{src.node}' from step {src.step}; only the "
                           "current or the previous step can be read")


def graph_from_module(model, input_shape: tuple[int, ...], style: str = "auto", trace_steps: int = 8,
                      name: str = "network") -> tuple[Graph, Trace]:
    """Capture `model` and build its IR graph; returns the graph and the trace (style, model steps)."""
    if any(d <= 0 for d in input_shape):
        raise ShapeError(f"input shape {tuple(input_shape)} has a non-positive dimension")
    trace = capture(model, tuple(int(d) for d in input_shape), style, trace_steps)
    return build_graph(trace, name), trace
