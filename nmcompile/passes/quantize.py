"""quantize: the float network becomes the target's integer model (docs/semantics.md §3), co-scaled per layer.

For a neuron layer with membrane scale S (integer v units per float membrane unit):

    weights   W_int * 2^e  ~  S * g * W / 64     (g: neuron gain x synaptic gain; e per projection)
    threshold vth << 6     ~  S * theta           bias  mant << exp  ~  S * b
    decays    dv = round(4096 (1 - beta)),  du = round(4096 (1 - alpha)) - 1   (LIF: du = 4095, u cleared)

S is the largest value for which the threshold fits vth_max, the worst-case input of one step cannot wrap u,
the bias fits its mantissa and exponent, and conv weights fit without an exponent where the target has none.
Targets with one threshold per layer get co-scaled rows first (exact: every voltage quantity of a row is
multiplied by theta_common / theta). A reset to a non-zero value becomes a reset to zero by shifting the
membrane (threshold - v_reset, bias + (beta - 1) v_reset). Options the target cannot run are refused, naming the
layer and the targets that can. The report gives each layer's scale, clipped values and the spike agreement of
the integer against the float model on calibration inputs.
"""

from __future__ import annotations

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import fixed
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.neurons import NeuronOp
from nmcompile.ir.sparse import row_of_entries
from nmcompile.lowered.limits import (
    check_delays,
    check_negative_threshold,
    check_neuron_options,
    check_start_step,
    refuse,
)
from nmcompile.passes import PassContext
from nmcompile.passes import formats as F
from nmcompile.passes.common import per_channel

# The float ops this pass converts (by exact class: a subclass brings its own conversion). Neutral ops are copied
# as they are; an op some earlier pass removes (op.removed_by) and integer ops are refused.
CONVERTS = (O.Linear, O.SparseLinear, O.Conv1d, O.Conv2d, O.LIF, O.IF, O.CubaLIF, O.LI, O.CubaLI)
MATRICES = ("Linear", "SparseLinear")   # one weight per synapse (a row factor per output), as opposed to a kernel
SAFETY = 0.999


def run(graph: Graph, ctx: PassContext) -> Graph:
    target = ctx.require_target("quantize")
    for name, op in graph.nodes.items():
        if op.removed_by is not None or (op.numeric != "neutral" and type(op) not in CONVERTS):
            hint = op.removed_by or "an earlier pass"
            raise UnsupportedError(f"'{name}' ({op.kind}) has no integer form; run {hint} before quantize")
    shapes = graph.shapes()
    groups = _projections_by_layer(graph)
    out = Graph(graph.name, graph.dt)
    out.latency = graph.latency
    layers: list[LayerReport] = []
    replaced: dict[str, O.Op] = {}
    for name in graph.order():
        op = graph.node(name)
        if op.role != "neuron":
            continue
        neuron, projections, report = _quantize_layer(graph, name, op, groups.get(name, []), shapes, target,
                                                      plastic=set(ctx.options.get("stdp") or ()))
        replaced[name] = neuron
        replaced.update(projections)
        layers.append(report)
    merged = _copy_structure(graph, out, replaced)
    result = _Report(target.name, layers, merged)
    result.measure(graph, out, ctx)
    ctx.reports["quantize"] = result
    return out


# -- structure ----------------------------------------------------------------------------------------------
def _projections_by_layer(g: Graph) -> dict[str, list[str]]:
    """Neuron layer -> the weighted projections feeding it (through Flatten and Delay)."""
    result: dict[str, list[str]] = {}
    for name, op in g.nodes.items():
        if not op.weighted:
            continue
        try:
            node = g.trace_forward(name).end
        except UnsupportedError:
            raise UnsupportedError(f"projection '{name}' must feed exactly one neuron layer (run fuse_projections)") \
                from None
        if g.node(node).role != "neuron":
            raise UnsupportedError(f"projection '{name}' feeds '{node}' ({g.node(node).kind}); run fuse_projections "
                                   "first")
        result.setdefault(node, []).append(name)
    return result


def _delay_before(g: Graph, name: str) -> np.ndarray:
    """Steps on the (single) input path of projection `name` (Delay nodes, recurrent edges): 0-d when uniform,
    else one value per input element."""
    ins = g.in_edges(name)
    if len(ins) != 1:
        raise UnsupportedError(f"projection '{name}' sums {len(ins)} inputs; its input delays would be lost (only a "
                               "projection with one input path can be quantized)")
    trace = g.trace_back(name)
    return trace.delay(g, counted=_merged_on(g, trace.passed))


def _delay_after(g: Graph, name: str) -> np.ndarray:
    """Steps between projection `name` and the neuron layer it feeds: 0-d when uniform, else one per output."""
    trace = g.trace_forward(name)
    return trace.delay(g, counted=_merged_on(g, trace.passed))


def _merged_on(g: Graph, passed: tuple[str, ...]) -> list[str]:
    """The Delay nodes of a walk that quantize merges into the projection (a Delay that stays a node, e.g. one
    with several consumers, keeps its own steps and must not be counted twice)."""
    return [n for n in passed if g.node(n).kind == "Delay" and _touches_projection(g, n)]


def _copy_structure(g: Graph, out: Graph, replaced: dict[str, O.Op]) -> list[str]:
    """Rebuild the graph with integer ops; Delay nodes next to projections disappear into their delays."""
    merged = {n for n in g if g.node(n).kind == "Delay" and _touches_projection(g, n)}
    for name, op in g.nodes.items():
        if name not in merged:
            out.add(name, replaced.get(name, op))
    existing: set[tuple[str, str]] = set()
    for edge in g.edges:
        if edge.src in merged:
            continue
        dst = edge.dst
        while dst in merged:
            dst = g.out_edges(dst)[0].dst
        if (edge.src, dst) not in existing:
            out.connect(edge.src, dst)
            existing.add((edge.src, dst))
    return sorted(merged)


def _touches_projection(g: Graph, name: str) -> bool:
    """Whether the Delay `name` reaches a weighted projection over transparent ops, forwards or backwards."""
    try:
        return g.node(g.trace_forward(name).end).weighted or g.node(g.trace_back(name).end).weighted
    except UnsupportedError:
        return False


# -- one layer ----------------------------------------------------------------------------------------------
class LayerReport:
    def __init__(self, name: str, scale: np.ndarray, vth, notes: list[str], clipped: int, total: int):
        self.name, self.scale, self.vth, self.notes = name, scale, vth, notes
        self.clipped, self.total = clipped, total
        self.agreement: float | None = None

    def line(self) -> str:
        scale = float(np.min(self.scale)) if np.ndim(self.scale) else float(self.scale)
        vth = np.atleast_1d(self.vth)
        parts = [f"{self.name}: scale {scale:.4g}{' (min over neurons)' if np.ndim(self.scale) else ''}",
                 f"vth {int(vth.min())}..{int(vth.max())}" if np.ptp(vth) else f"vth {int(vth.reshape(-1)[0])}",
                 f"clipped {self.clipped}/{self.total} values"]
        if self.agreement is not None:
            parts.append(f"spike agreement {100 * self.agreement:.2f}%")
        return ", ".join(parts) + ("; " + "; ".join(self.notes) if self.notes else "")


def _quantize_layer(g: Graph, name: str, op: NeuronOp, projections: list[str], shapes, target,
                    plastic: set[str] = frozenset()):
    shape = op.shape
    notes: list[str] = []
    _check_options(name, op, target, notes)
    full = lambda value: np.array(np.broadcast_to(value, shape), dtype=np.float64)  # noqa: E731
    beta, gain, bias, theta = full(op.decay()), full(op.gain), full(op.bias), full(op.threshold)
    v_init, v_reset = full(op.v_init), full(op.v_reset)
    cuba = isinstance(op, (O.CubaLIF, O.CubaLI))
    alpha = full(op.alpha) if cuba else np.zeros(shape)
    rows = gain * (full(op.syn_gain) if cuba else 1.0)
    i_init = full(op.i_init) if cuba else np.zeros(shape)
    if op.spiking and op.reset_mode == "zero" and np.any(v_reset != 0):
        theta, bias, v_init = theta - v_reset, bias + (beta - 1.0) * v_reset, v_init - v_reset
        notes.append("reset value shifted to 0")
    conv_fed = any(g.node(p).kind not in MATRICES for p in projections)
    if op.spiking and np.any(theta < 0):
        check_negative_threshold(f"layer '{name}'", target, op.reset_mode)
    if op.spiking and not target.per_neuron_threshold and np.ptp(theta) > 0:
        k = theta.max() / theta  # co-scale rows to one threshold
        if conv_fed and not _per_channel_ok(k):
            raise UnsupportedError(f"layer '{name}': thresholds differ within a channel of a convolution; "
                                   f"{target.name} has one threshold per layer and shared kernels cannot absorb them")
        rows, bias, v_init, theta, i_init = rows * k, bias * k, v_init * k, theta * k, i_init * k
        notes.append("thresholds co-scaled to one")
    ideal = {p: _effective_weights(g.node(p), rows, shapes[p], name, p) for p in projections}
    scale = _choose_scale(name, op, target, theta, bias, alpha, ideal, g, conv_fed, shapes, plastic & set(ideal))
    quantized: dict[str, O.Op] = {}
    clipped = total = 0
    for p in projections:
        q, c = _quantize_projection(g, p, ideal[p], scale, target, shapes)
        quantized[p] = q
        clipped, total = clipped + c, total + (q.values if q.kind == "QSparseLinear" else q.weight).size
    s_full = np.broadcast_to(scale, shape)
    mant, bexp, sat = F.quantize_bias(s_full * bias, target)
    clipped += sat
    vth = np.rint(s_full * theta / 64.0).astype(np.int64) if op.spiking else np.zeros(shape, dtype=np.int64)
    if np.any(vth > target.vth_max):
        raise AssertionError("quantize: threshold beyond range after scale choice")
    neuron = O.QNeuron(
        shape=shape, du=_compact(F.current_decay_code(alpha) if cuba else np.full(shape, fixed.DECAY_UNITY - 1)),
        dv=_compact(F.decay_code(beta)), vth=_compact(vth if op.spiking else np.zeros(shape, np.int64)),
        bias_mant=_compact(mant), bias_exp=_compact(bexp),
        compare=op.compare if op.compare in target.comparisons else ">",
        reset_mode=op.reset_mode if op.spiking else "none", reset_timing=op.reset_timing if op.spiking else "immediate",
        refractory=op.refractory, spiking=op.spiking,
        u_init=_compact(np.rint(s_full * rows * i_init).astype(np.int64)),
        v_init=_compact(np.rint(s_full * v_init).astype(np.int64)), start_step=op.start_step,
        provenance=op.provenance)
    check_start_step(name, neuron, target)
    if op.compare != neuron.compare:
        notes.append("'>=' realised as '>' at the rounded threshold")
    return neuron, quantized, LayerReport(name, scale, vth, notes, clipped, total)


def _compact(array: np.ndarray):
    array = np.asarray(array)
    flat = array.reshape(-1)
    return flat[0] if flat.size and np.all(flat == flat[0]) else array


def _per_channel_ok(values: np.ndarray) -> bool:
    try:
        per_channel(values, values.shape[0])
        return True
    except ValueError:
        return False


def _check_options(name: str, op: NeuronOp, target, notes: list[str]) -> None:
    check_neuron_options(name, op, target, compare=False)
    if op.spiking and isinstance(op, (O.CubaLIF, O.CubaLI)) and not target.current_decay and np.any(op.alpha != 0):
        refuse(f"layer '{name}'", "a decaying synaptic current", "current_decay", False, lambda t: t.current_decay,
               target)


def _effective_weights(op, rows: np.ndarray, out_shape, layer: str, name: str) -> np.ndarray:
    """Float weights with the layer's row factors (gain, co-scaling) folded in (a SparseLinear: its values)."""
    if op.kind == "Linear":
        return op.weight * rows.reshape(-1)[:, None]
    if op.kind == "SparseLinear":
        return op.values * rows.reshape(-1)[row_of_entries(op.indptr)]
    try:
        factor = per_channel(rows.reshape(out_shape), op.weight.shape[0])
    except ValueError:
        raise UnsupportedError(f"layer '{layer}': its gains differ within a channel of the convolution '{name}'") \
            from None
    return op.weight * factor.reshape((-1,) + (1,) * (op.weight.ndim - 1))


def _row_peak(ideal: dict[str, np.ndarray], g: Graph, plastic: set[str] = frozenset()) -> float:
    """Largest total |weight| one neuron can receive in one step (every input active). A projection that will
    learn (--stdp) counts every synapse at the largest magnitude its format allows: up to twice its largest ideal
    weight, since the exponent rounds up."""
    peak = 0.0
    for name, w in ideal.items():
        if name in plastic:
            peak += w.shape[1] * float(np.abs(w).max(initial=0.0)) * 2.0 * 128.0 / 127.0
        elif g.node(name).kind == "Linear":
            peak += float(np.abs(w).sum(axis=1).max()) if w.size else 0.0
        elif g.node(name).kind == "SparseLinear":
            rows = row_of_entries(g.node(name).indptr)
            peak += float(np.bincount(rows, np.abs(w)).max()) if w.size else 0.0
        else:
            peak += float(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max()) if w.size else 0.0
    return peak


def _choose_scale(name: str, op: NeuronOp, target, theta, bias, alpha, ideal, g: Graph, conv_fed: bool, shapes,
                  plastic: set[str] = frozenset()):
    """The largest membrane scale S satisfying every format limit (scalar: one per layer)."""
    bounds = {}
    if op.spiking and np.any(theta != 0):
        bounds["threshold"] = 64.0 * target.vth_max / float(np.abs(theta).max())
    peak = _row_peak(ideal, g, plastic) / max(1e-12, 1.0 - float(alpha.max()))
    if peak > 0:
        bounds["input"] = (fixed.UV_LIMIT - 1) / peak
    b = float(np.abs(bias).max())
    if b > 0:
        bounds["bias"] = target.bias_mant_range[1] * 2.0 ** target.bias_exp_range[1] / b
    for p, w in ideal.items():
        fmt = F.weight_format(target, w)
        wmax = float(np.abs(w).max()) if w.size else 0.0
        if wmax == 0:
            continue
        exp_max = target.weight_exp_range[1] if (g.node(p).kind in MATRICES or target.conv_weight_exp) else 0
        bounds[f"weights of '{p}'"] = 64.0 * F.magnitude(fmt) * 2.0**exp_max / wmax
    if not bounds:
        return 64.0
    scale = SAFETY * min(bounds.values())
    if not np.isfinite(scale) or scale <= 0:
        raise UnsupportedError(f"layer '{name}': no integer scale satisfies {', '.join(bounds)}")
    return scale


def _quantize_projection(g: Graph, name: str, ideal_float: np.ndarray, scale, target, shapes):
    op = g.node(name)
    ideal = ideal_float * (np.asarray(scale) / 64.0)
    fmt = F.weight_format(target, ideal)
    peak = float(np.abs(ideal).max()) if ideal.size else 0.0
    if op.kind == "Linear":
        exponent = F.choose_exponent(peak, fmt, target.weight_exp_range)
        weight, clipped = F.quantize_weights(ideal, fmt, exponent)
        delay = _linear_delays(g, name, op, shapes)
        check_delays(name, delay, target)
        return O.QLinear(weight=weight, weight_exp=exponent, num_weight_bits=fmt.num_weight_bits,
                         sign_mode=fmt.sign_mode, delay=delay, provenance=op.provenance), clipped
    if op.kind == "SparseLinear":
        exponent = F.choose_exponent(peak, fmt, target.weight_exp_range)
        values, clipped = F.quantize_weights(ideal, fmt, exponent)
        delay = _uniform_delay(g, name, "sparse projection", target)
        return O.QSparseLinear(indptr=op.indptr, indices=op.indices, values=values, in_features=op.in_features,
                               weight_exp=exponent, num_weight_bits=fmt.num_weight_bits, sign_mode=fmt.sign_mode,
                               delay=delay, provenance=op.provenance), clipped
    exp_range = target.weight_exp_range if target.conv_weight_exp else (0, 0)
    exponent = F.choose_exponent(peak, fmt, exp_range)
    conv_fmt = fmt if fmt.step == 1 and fmt.sign_mode == "mixed" else F.WeightFormat(
        "mixed", 9, target.weight_min, target.weight_max, 1)
    weight, clipped = F.quantize_weights(ideal, conv_fmt, exponent)
    delay = _uniform_delay(g, name, "convolution", target)
    stride, padding, dilation = ((op.stride,), (op.padding,), (op.dilation,)) if op.kind == "Conv1d" else (
        op.stride, op.padding, op.dilation)
    return O.QConv(weight=weight, stride=stride, padding=padding, dilation=dilation, groups=op.groups,
                   weight_exp=exponent, wrap_bits=target.conv_wrap_bits, delay=delay,
                   provenance=op.provenance), clipped


def _uniform_delay(g: Graph, name: str, what: str, target) -> int:
    """The one delay of a projection that has one (a conv, a CSR projection), checked against the target."""
    before, after = _delay_before(g, name), _delay_after(g, name)
    if np.ptp(np.atleast_1d(before)) or np.ptp(np.atleast_1d(after)):
        raise UnsupportedError(f"{what} '{name}': its inputs arrive with different delays; a {what} has one delay")
    delay = int(np.max(before)) + int(np.max(after))
    check_delays(name, np.array(delay), target)
    return delay


def _linear_delays(g: Graph, name: str, op: O.Linear, shapes) -> np.ndarray:
    base = np.zeros(op.weight.shape, dtype=np.int64) if op.delays is None else op.delays.astype(np.int64)
    before, after = np.asarray(_delay_before(g, name)), np.asarray(_delay_after(g, name))
    before = np.broadcast_to(before.reshape(-1) if before.size > 1 else before, (op.weight.shape[1],))
    after = np.broadcast_to(after.reshape(-1) if after.size > 1 else after, (op.weight.shape[0],))
    total = base + before[None, :] + after[:, None]
    return total[0, 0] if np.all(total == total.reshape(-1)[0]) else total


class _Report:
    def __init__(self, target: str, layers: list[LayerReport], merged: list[str]):
        self.target, self.layers, self.merged = target, layers, merged
        self.output_agreement: float | None = None
        self.calibration_note = ""

    def measure(self, float_graph: Graph, int_graph: Graph, ctx: PassContext) -> None:
        """Spike agreement of integer vs float on calibration inputs (random spikes when none were given)."""
        from nmcompile.ir.simulate import simulate

        x = ctx.calibration
        shape = float_graph.node(float_graph.inputs[0]).shape
        if x is None:
            rng = np.random.default_rng(0)
            x = (rng.random((50, 8, *shape)) < 0.2).astype(np.int64)
            self.calibration_note = " (random input spikes at rate 0.2: no calibration data was given)"
        fl = simulate(float_graph, x, record=True)
        it = simulate(int_graph, np.asarray(x).astype(np.int64), record=True)
        for layer in self.layers:
            a, b = fl.values[layer.name], it.values[layer.name]
            if int_graph.node(layer.name).spiking:
                layer.agreement = float(np.mean((a > 0) == (b > 0)))
        outs = [n for n in float_graph.outputs]
        self.output_agreement = float(np.mean([np.mean(fl.outputs[o] == it.outputs[o]) for o in outs]))

    def lines(self) -> list[str]:
        lines = [f"integer model for {self.target}; agreement with the float model{self.calibration_note}:"]
        lines += ["  " + layer.line() for layer in self.layers]
        if self.output_agreement is not None:
            lines.append(f"  output agreement {100 * self.output_agreement:.2f}%")
        return lines
