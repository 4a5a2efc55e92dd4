"""ONNX ANN -> spiking network: import a trained ReLU network and convert it to IF neurons.

Conversion (Diehl et al. 2015, Rueckauer et al. 2017, data-based threshold balancing): every ReLU becomes a
layer of IF neurons with reset by subtraction whose threshold lambda is a high percentile (default 99.9) of
that ReLU's activations on calibration inputs. A spike of such a layer stands for lambda units of activation,
so each projection reading it scales its weights by lambda (biases stay: they are added every step). The
logits layer becomes IF neurons too; the class is the neuron with most spikes. Inputs in [0, 1] are rate coded
(`nmcompile.encoding.rate_encode`), so the input layer has lambda = 1.

A MaxPool reads the spikes of the IF layer before it (a Relu's) and becomes an OR of them: a sum pool into an
IF layer with threshold 0.5 (a max of currents has no spiking form and is refused). An OR of spike trains fires
at least as often as the largest of them, so it is part of the conversion's approximation, measured with the rest.

Supported ONNX ops: Gemm, MatMul (+ Add of a constant), Conv (1-D/2-D), Relu, AveragePool and MaxPool (1-D/2-D,
symmetric pads, ceil_mode, count_include_pad), GlobalAveragePool, Flatten, Reshape (to a flat vector),
BatchNormalization, Add (residual), Identity, Dropout, Constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmcompile.errors import InputFileError, ShapeError, UnsupportedError, existing_file
from nmcompile.frontend.lowering import average
from nmcompile.ir import arraymath
from nmcompile.ir import ops as O
from nmcompile.ir.base import Provenance
from nmcompile.ir.graph import Graph

SUPPORTED = ("Gemm", "MatMul", "Add", "Conv", "Relu", "AveragePool", "MaxPool", "GlobalAveragePool", "Flatten",
             "Reshape", "BatchNormalization", "Identity", "Dropout", "Constant")


@dataclass
class Layer:
    """One ANN operation on data tensors (constants already resolved)."""

    name: str
    kind: str            # linear, conv, relu, avgpool, maxpool, globalavg, flatten, batchnorm, add, identity
    inputs: list[str]
    output: str
    params: dict = field(default_factory=dict)


@dataclass
class Ann:
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    layers: list[Layer]


# ------------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------------
def read_onnx(path: str | Path) -> Ann:
    import onnx
    from onnx import numpy_helper

    path = existing_file(path)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as err:
        raise InputFileError(f"{path}: truncated, corrupt or not an ONNX model ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:100]})") from None
    g = model.graph
    consts = {init.name: numpy_helper.to_array(init).astype(np.float64) for init in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t).astype(np.float64)
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise UnsupportedError(f"{path}: the model must have one data input and one output "
                               f"(found {len(inputs)} and {len(g.output)})")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) for d in dims[1:])
    if not shape or any(d <= 0 for d in shape):
        raise UnsupportedError(f"{path}: input '{inputs[0].name}' needs a fixed per-sample shape (got {shape})")
    layers = []
    for node in g.node:
        if node.op_type == "Constant":
            continue
        layers.append(_layer(node, consts, path))
    return Ann(inputs[0].name, shape, g.output[0].name, _merge_bias_adds(layers))


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _layer(node, consts: dict[str, np.ndarray], path: Path) -> Layer:
    op, name = node.op_type, node.name or node.output[0]
    a = _attrs(node)
    data = [i for i in node.input if i and i not in consts]
    where = f"{path}: node '{name}' ({op})"
    if op not in SUPPORTED:
        raise UnsupportedError(f"{where} is not supported by the ANN-to-SNN conversion; supported: "
                               f"{', '.join(SUPPORTED)}")
    if op == "Gemm":
        if a.get("transA", 0):
            raise UnsupportedError(f"{where}: transA=1 is not supported")
        w = consts[node.input[1]]
        w = (w if a.get("transB", 0) else w.T) * a.get("alpha", 1.0)
        bias = consts[node.input[2]] * a.get("beta", 1.0) if len(node.input) > 2 and node.input[2] else None
        return Layer(name, "linear", data, node.output[0], {"weight": w, "bias": bias})
    if op == "MatMul":
        if node.input[1] not in consts:
            raise UnsupportedError(f"{where}: a product of two data tensors is not supported")
        return Layer(name, "linear", data, node.output[0], {"weight": consts[node.input[1]].T, "bias": None})
    if op == "Conv":
        return Layer(name, "conv", data, node.output[0], _conv_params(node, a, consts, where))
    if op == "Relu":
        return Layer(name, "relu", data, node.output[0])
    if op == "GlobalAveragePool":
        return Layer(name, "globalavg", data, node.output[0])
    if op in ("AveragePool", "MaxPool"):
        return Layer(name, "avgpool" if op == "AveragePool" else "maxpool", data, node.output[0],
                     _pool_params(op, a, where))
    if op == "Flatten":
        if a.get("axis", 1) != 1:
            raise UnsupportedError(f"{where}: only axis=1 (keep the batch) is supported")
        return Layer(name, "flatten", data, node.output[0])
    if op == "Reshape":
        target = consts.get(node.input[1])
        if target is None or target.ndim != 1 or len(target) != 2:
            raise UnsupportedError(f"{where}: only a reshape to [batch, features] with a constant shape is "
                                   "supported")
        return Layer(name, "flatten", data, node.output[0])
    if op == "BatchNormalization":
        scale, bias, mean, var = (consts[node.input[k]] for k in range(1, 5))
        return Layer(name, "batchnorm", data, node.output[0],
                     {"mean": mean, "var": var, "weight": scale, "bias": bias, "eps": a.get("epsilon", 1e-5)})
    if op == "Add":
        constant = [consts[i] for i in node.input if i in consts]
        if constant:
            return Layer(name, "addconst", data, node.output[0], {"value": constant[0]})
        return Layer(name, "add", data, node.output[0])
    return Layer(name, "identity", data[:1], node.output[0])  # Identity, Dropout (inference)


def _conv_params(node, a: dict, consts, where: str) -> dict:
    weight = consts[node.input[1]]
    nd = weight.ndim - 2
    kernel = tuple(weight.shape[2:])
    dilation = tuple(a.get("dilations", [1] * nd))
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        pads = list(a.get("pads", [0] * (2 * nd)))
        if pads[:nd] != pads[nd:]:
            raise UnsupportedError(f"{where}: asymmetric padding {pads} is not supported")
        padding = tuple(pads[:nd])
    elif auto_pad == "VALID":
        padding = (0,) * nd
    else:
        spans = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        if any(s % 2 for s in spans):
            raise UnsupportedError(f"{where}: auto_pad {auto_pad} with an even kernel is asymmetric")
        padding = tuple(s // 2 for s in spans)
    bias = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    return {"weight": weight, "bias": bias, "stride": tuple(a.get("strides", [1] * nd)), "padding": padding,
            "dilation": dilation, "groups": int(a.get("group", 1))}


def _pool_params(op: str, a: dict, where: str) -> dict:
    kernel = tuple(int(k) for k in a["kernel_shape"])
    nd = len(kernel)
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    pads = list(a.get("pads", [0] * (2 * nd)))
    options = f"kernel_shape={list(kernel)}, pads={pads}, auto_pad={auto_pad}"
    if nd not in (1, 2) or auto_pad not in ("NOTSET", "", "VALID") or pads[:nd] != pads[nd:]:
        raise UnsupportedError(f"{where} with {options}: only 1-D/2-D pools with symmetric explicit padding "
                               "(auto_pad NOTSET or VALID) are supported")
    if any(d != 1 for d in a.get("dilations", [1] * nd)) or a.get("storage_order", 0):
        raise UnsupportedError(f"{where} with dilations={a.get('dilations')}, storage_order="
                               f"{a.get('storage_order', 0)}: only dilation 1 and row-major storage are supported")
    return {"kernel": kernel, "stride": tuple(int(s) for s in a.get("strides", [1] * nd)),
            "padding": (0,) * nd if auto_pad == "VALID" else tuple(int(p) for p in pads[:nd]),
            "ceil_mode": bool(a.get("ceil_mode", 0)),
            "count_include_pad": bool(a.get("count_include_pad", 0)) if op == "AveragePool" else True}


def pool_op(p: dict, provenance: Provenance | None = None) -> O.SumPool1d | O.SumPool2d:
    """The window sum of an ONNX pool layer (its geometry and ceil_mode)."""
    cls = O.SumPool2d if len(p["kernel"]) == 2 else O.SumPool1d
    return cls(kernel_size=p["kernel"], stride=p["stride"], padding=p["padding"], ceil_mode=p["ceil_mode"],
               provenance=provenance)


def _merge_bias_adds(layers: list[Layer]) -> list[Layer]:
    """Fold `Add(linear_out, constant)` (MatMul + Add exports) into the producing layer's bias."""
    producers = {layer.output: layer for layer in layers}
    consumers: dict[str, int] = {}
    for layer in layers:
        for i in layer.inputs:
            consumers[i] = consumers.get(i, 0) + 1
    result = []
    for layer in layers:
        if layer.kind != "addconst":
            result.append(layer)
            continue
        source = producers.get(layer.inputs[0]) if layer.inputs else None
        if source is None or source.kind not in ("linear", "conv") or consumers.get(source.output, 0) != 1:
            raise UnsupportedError(f"ONNX node '{layer.name}': adding a constant is only supported as the bias of "
                                   "the preceding Gemm/MatMul/Conv")
        value = layer.params["value"].reshape(-1)
        source.params["bias"] = value if source.params["bias"] is None else source.params["bias"] + value
        source.output = layer.output
    return result


# ------------------------------------------------------------------------------------------------------
# the ANN in numpy (for calibration and the accuracy report)
# ------------------------------------------------------------------------------------------------------
def _conv_args(p: dict) -> tuple:
    return p["stride"], p["padding"], p["dilation"], p["groups"]


def run_ann(ann: Ann, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of the ANN for a batch x [N, *input_shape] (float64)."""
    values = {ann.input_name: np.asarray(x, dtype=np.float64)}
    for layer in ann.layers:
        args = [values[i] for i in layer.inputs]
        p = layer.params
        if layer.kind == "linear":
            y = args[0] @ p["weight"].T + (0 if p["bias"] is None else p["bias"])
        elif layer.kind == "conv":
            y = arraymath.conv(args[0], p["weight"], *_conv_args(p))
            if p["bias"] is not None:
                y = y + p["bias"].reshape((-1,) + (1,) * (y.ndim - 2))
        elif layer.kind == "relu":
            y = np.maximum(args[0], 0.0)
        elif layer.kind in ("avgpool", "maxpool"):
            pool = pool_op(p)
            pads = pool.pads(args[0].shape[1:])
            if layer.kind == "maxpool":
                y = arraymath.max_pool(args[0], pool.kernel_size, pool.stride, pads)
            else:
                y = (arraymath.sum_pool(args[0], pool.kernel_size, pool.stride, pads)
                     / pool.divisors(args[0].shape[1:], p["count_include_pad"])[:, None])
        elif layer.kind == "globalavg":
            y = args[0].mean(axis=tuple(range(2, args[0].ndim)), keepdims=True)
        elif layer.kind == "flatten":
            y = args[0].reshape(args[0].shape[0], -1)
        elif layer.kind == "batchnorm":
            a = p["weight"] / np.sqrt(p["var"] + p["eps"])
            shape = (-1,) + (1,) * (args[0].ndim - 2)
            y = args[0] * a.reshape(shape) + (p["bias"] - p["mean"] * a).reshape(shape)
        elif layer.kind == "add":
            y = args[0] + args[1]
        else:
            y = args[0]
        values[layer.output] = y
    return values


# ------------------------------------------------------------------------------------------------------
# conversion
# ------------------------------------------------------------------------------------------------------
@dataclass
class Conversion:
    graph: Graph
    thresholds: dict[str, float]          # IF layer -> lambda


def convert(ann: Ann, calibration: np.ndarray, percentile: float = 99.9, name: str = "converted",
            reset: str = "subtract") -> Conversion:
    """The IF-neuron SNN of `ann`, thresholds balanced on `calibration` inputs [N, *shape] in [0, 1]; `reset` is
    the IF layers' reset mode (subtract, or zero for targets without reset by subtraction)."""
    calibration = np.asarray(calibration, dtype=np.float64)
    if calibration.shape[1:] != ann.input_shape:
        raise ShapeError(f"calibration inputs have shape {calibration.shape[1:]} but the model expects "
                         f"{ann.input_shape}")
    if calibration.min() < 0 or calibration.max() > 1:
        raise ShapeError("the ANN-to-SNN conversion rate-codes its inputs, so they must lie in [0, 1] (scale the "
                         "calibration data and the model's input the same way)")
    if not 50 <= percentile <= 100:
        raise ShapeError(f"percentile must be in [50, 100], got {percentile}")
    if reset not in ("subtract", "zero"):
        raise ShapeError(f"the converted IF neurons reset by 'subtract' or to 'zero', got {reset!r}")
    acts = run_ann(ann, calibration)
    graph = Graph(name)
    graph.add("input", O.Input(shape=ann.input_shape, provenance=Provenance("onnx", ann.input_name)))
    # each tensor maps to (IR node producing it, scale lambda: value in ANN units = node output * lambda)
    where: dict[str, tuple[str, float]] = {ann.input_name: ("input", 1.0)}
    thresholds: dict[str, float] = {}

    def lam(tensor: str) -> float:
        values = acts[tensor]
        positive = values[values > 0]
        return float(np.percentile(positive, percentile)) if positive.size else 1.0

    def as_current(tensor: str, consumer: str) -> str:
        """A node carrying `tensor` in ANN units (inserting a Scale for spike trains)."""
        node, scale = where[tensor]
        if scale == 1.0:
            return node
        scaled = graph.add(f"{consumer}.scale_in", O.Scale(scale=scale))
        graph.connect(node, scaled)
        return scaled

    def neuron(tensor_in: str, tensor_out: str, layer_name: str) -> None:
        threshold = lam(tensor_out)
        shape = acts[tensor_out].shape[1:]
        n = graph.add(layer_name, O.IF(shape=shape, threshold=threshold, reset_mode=reset,
                                       provenance=Provenance("onnx", layer_name)))
        graph.connect(as_current(tensor_in, layer_name), n)
        where[tensor_out] = (n, threshold)
        thresholds[n] = threshold

    for layer in ann.layers:
        prov = Provenance("onnx", layer.name)
        name = _node_name(layer.name, graph)
        p = layer.params
        if layer.kind in ("linear", "conv"):
            src, scale = where[layer.inputs[0]]
            if layer.kind == "linear":
                op = O.Linear(weight=p["weight"] * scale, bias=p["bias"], provenance=prov)
            elif p["weight"].ndim == 3:
                op = O.Conv1d(weight=p["weight"] * scale, bias=p["bias"], stride=p["stride"][0],
                              padding=p["padding"][0], dilation=p["dilation"][0], groups=p["groups"], provenance=prov)
            else:
                op = O.Conv2d(weight=p["weight"] * scale, bias=p["bias"], stride=p["stride"], padding=p["padding"],
                              dilation=p["dilation"], groups=p["groups"], provenance=prov)
            graph.add(name, op)
            graph.connect(src, name)
            where[layer.output] = (name, 1.0)
        elif layer.kind == "relu":
            neuron(layer.inputs[0], layer.output, name)
        elif layer.kind in ("avgpool", "globalavg", "flatten", "identity"):
            src, scale = where[layer.inputs[0]]
            if layer.kind == "identity":
                where[layer.output] = (src, scale)
                continue
            in_shape = acts[layer.inputs[0]].shape[1:]
            if layer.kind == "flatten":
                ops = [O.Flatten(provenance=prov)]
            elif layer.kind == "avgpool":
                pool = pool_op(p, prov)
                ops = average(pool.replace(ceil_mode=pool.partial_windows(in_shape)),
                              pool.divisors(in_shape, p["count_include_pad"]))
            else:
                if len(in_shape) not in (2, 3):
                    raise UnsupportedError(f"ONNX node '{layer.name}': GlobalAveragePool needs a 1-D or 2-D feature "
                                           f"map, got {in_shape}")
                cls = O.AvgPool2d if len(in_shape) == 3 else O.AvgPool1d
                ops = [cls(kernel_size=in_shape[1:], stride=in_shape[1:], provenance=prov)]
            node = src
            for k, op in enumerate(ops):
                previous, node = node, graph.add(name if k == 0 else f"{name}.divide", op)
                graph.connect(previous, node)
            where[layer.output] = (node, scale)
        elif layer.kind == "maxpool":
            src, scale = where[layer.inputs[0]]
            if graph.node(src).role != "neuron" and graph.node(src).kind != "Input":
                raise UnsupportedError(f"ONNX node '{layer.name}' (MaxPool) over currents is refused: a max of "
                                       "currents has no integer/spiking form (only a max of spikes, an OR, has one); "
                                       "put the MaxPool after a Relu, or use AveragePool")
            pool = pool_op(p, prov)
            graph.add(name, pool.replace(ceil_mode=pool.partial_windows(acts[layer.inputs[0]].shape[1:])))
            graph.connect(src, name)
            or_layer = graph.add(f"{name}.or", O.IF(shape=acts[layer.output].shape[1:], threshold=0.5,
                                                     reset_mode="zero", provenance=prov))
            graph.connect(name, or_layer)
            where[layer.output] = (or_layer, scale)
        elif layer.kind == "batchnorm":
            graph.add(name, O.BatchNorm(mean=p["mean"], var=p["var"], weight=p["weight"], bias=p["bias"],
                                        eps=float(p["eps"]), provenance=prov))
            graph.connect(as_current(layer.inputs[0], name), name)
            where[layer.output] = (name, 1.0)
        elif layer.kind == "add":
            a, b = layer.inputs
            if where[a][1] != where[b][1]:
                sources = [as_current(a, f"{name}.a"), as_current(b, f"{name}.b")]
                scale = 1.0
            else:
                sources, scale = [where[a][0], where[b][0]], where[a][1]
            node = graph.add(name, O.Scale(scale=1.0, provenance=prov))
            for s in sources:
                graph.connect(s, node)
            where[layer.output] = (node, scale)
        else:
            raise UnsupportedError(f"ONNX node '{layer.name}' ({layer.kind}) cannot be converted")
    out_node, out_scale = where[ann.output_name]
    if out_scale == 1.0:  # logits (a current): a spiking readout
        acts[ann.output_name + "#spikes"] = acts[ann.output_name]
        neuron(ann.output_name, ann.output_name + "#spikes", "readout")
        out_node = where[ann.output_name + "#spikes"][0]
    shape = graph.shapes()[out_node]
    graph.add("output", O.Output(shape=shape))
    graph.connect(out_node, "output")
    graph.verify()
    return Conversion(graph, thresholds)


def _node_name(raw: str, graph: Graph) -> str:
    base = "".join(c if c.isalnum() or c in "_.-" else "_" for c in raw.strip("/")) or "node"
    name, k = base, 1
    while name in graph:
        k += 1
        name = f"{base}_{k}"
    return name


@dataclass
class ConversionReport:
    steps: int
    samples: int
    ann_accuracy: float | None
    snn_accuracy: float | None
    agreement: float              # fraction of samples where the SNN's class equals the ANN's

    def lines(self) -> list[str]:
        out = [f"ANN-to-SNN conversion checked on {self.samples} samples at T={self.steps} steps:"]
        if self.ann_accuracy is not None:
            out.append(f"  accuracy: ANN {100 * self.ann_accuracy:.2f}%, SNN {100 * self.snn_accuracy:.2f}% "
                       f"({100 * (self.snn_accuracy - self.ann_accuracy):+.2f} points)")
        out.append(f"  agreement with the ANN's class: {100 * self.agreement:.2f}%")
        return out


def evaluate(ann: Ann, graph: Graph, x: np.ndarray, y: np.ndarray | None, steps: int,
             batch: int = 256) -> ConversionReport:
    """ANN vs converted SNN on x (rate coded over `steps`); the SNN's class is its most active output neuron."""
    from nmcompile.encoding import rate_encode
    from nmcompile.ir.simulate import simulate

    ann_class = run_ann(ann, x)[ann.output_name].reshape(len(x), -1).argmax(axis=1)
    counts = []
    for start in range(0, len(x), batch):
        spikes = rate_encode(x[start : start + batch], steps)
        counts.append(simulate(graph, spikes).output.sum(axis=0).reshape(len(spikes[0]), -1))
    snn_class = np.concatenate(counts).argmax(axis=1)
    agreement = float(np.mean(snn_class == ann_class))
    if y is None:
        return ConversionReport(steps, len(x), None, None, agreement)
    y = np.asarray(y).reshape(-1)
    return ConversionReport(steps, len(x), float(np.mean(ann_class == y)), float(np.mean(snn_class == y)), agreement)


ZERO_RESET_PERCENTILES = (90.0, 95.0, 99.0, 99.9, 100.0)
BALANCE_SAMPLES = 256


@dataclass
class Balance:
    """Thresholds for IF neurons with reset to zero, chosen on calibration data."""

    percentile: float
    scores: dict[float, float]    # candidate percentile -> its score on the calibration subset
    measure: str                  # what the score is: accuracy or agreement with the ANN's class
    samples: int

    def line(self) -> str:
        tried = ", ".join(f"{p:g}: {100 * v:.1f}%" for p, v in self.scores.items())
        return (f"thresholds balanced for reset to zero: the {self.percentile:g} percentile of each ReLU's "
                f"activations, the best {self.measure} on {self.samples} calibration samples among ({tried})")


def balance_reset_to_zero(ann: Ann, x: np.ndarray, y: np.ndarray | None, steps: int, name: str = "converted",
                          candidates: tuple[float, ...] = ZERO_RESET_PERCENTILES) -> tuple[Conversion, Balance]:
    """Reset-to-zero conversion for targets without reset by subtraction (Diehl et al. 2015, data-based
    normalisation): reset to zero drops the charge above threshold at every spike, so a layer's rate falls below
    its activation / lambda (1 / ceil(lambda / a) for a constant input a) and the best lambda is lower than for
    reset by subtraction. Every candidate percentile is simulated at `steps` on a calibration subset and the one
    with the best accuracy (labels given) or class agreement with the ANN is kept."""
    subset = np.asarray(x, dtype=np.float64)[:BALANCE_SAMPLES]
    labels = None if y is None else np.asarray(y).reshape(-1)[:BALANCE_SAMPLES]
    scores: dict[float, float] = {}
    best: tuple[float, float, Conversion] | None = None
    for percentile in candidates:
        conversion = convert(ann, x, percentile, name, reset="zero")
        report = evaluate(ann, conversion.graph, subset, labels, steps)
        score = report.snn_accuracy if labels is not None else report.agreement
        scores[percentile] = score
        if best is None or score > best[0]:
            best = (score, percentile, conversion)
    measure = "SNN accuracy" if labels is not None else "agreement with the ANN's class"
    return best[2], Balance(best[1], scores, measure, len(subset))


def load_calibration(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A calibration .npz: `x` [N, *shape] in [0, 1] and, optionally, integer labels `y` [N]."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise InputFileError(f"{path}: no array 'x' of calibration inputs (found {', '.join(archive.files)})")
            x = archive["x"].astype(np.float64)
            y = archive["y"] if "y" in archive.files else None
    except InputFileError:
        raise
    except Exception:
        raise InputFileError(f"{path}: truncated or not an .npz file") from None
    if y is not None and len(y) != len(x):
        raise ShapeError(f"{path}: {len(x)} inputs but {len(y)} labels")
    return x, y
