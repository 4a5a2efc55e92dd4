"""quantize: integer formats stay in range, options are refused by name, and the digits example keeps its
accuracy within one point on every target."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.api import SourceOptions, load_source
from nmcompile.ir import fixed
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.passes import PassContext, PassError, run_pipeline
from nmcompile.targets import TARGETS, get_target
from tests.conftest import mlp

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
UP_TO_QUANTIZE = ["fold_bn", "fold_mpbn", "fuse_projections", "retime", "quantize"]


def quantize(g: Graph, target: str, calibration=None) -> tuple[Graph, PassContext]:
    ctx = PassContext(target=get_target(target), calibration=calibration)
    return run_pipeline(g, UP_TO_QUANTIZE, ctx), ctx


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(sorted(TARGETS)), st.sampled_from(["LIF", "CubaLIF", "IF"]))
def test_integer_parameters_fit_their_formats(seed, target_name, neuron):
    rng = np.random.default_rng(seed)
    g = mlp(rng, (7, 12, 5), beta=None if neuron == "LIF" else 0.8, reset_mode="zero", neuron=neuron,
            recurrent=bool(seed % 2))
    q, ctx = quantize(g, target_name)
    target = get_target(target_name)
    for name, op in q.nodes.items():
        if op.kind == "QLinear":
            w = op.weight
            assert target.weight_exp_range[0] <= op.weight_exp <= target.weight_exp_range[1], name
            assert np.array_equal(op.effective_weight(), w), f"{name}: weights not exactly representable"
            assert w.min() >= min(target.weight_min, -255) and w.max() <= max(target.weight_max, 255)
        if op.kind == "QNeuron":
            assert op.vth.min() >= 0 and op.vth.max() <= target.vth_max
            assert target.bias_mant_range[0] <= op.bias_mant.min() and op.bias_mant.max() <= target.bias_mant_range[1]
            assert op.du.min() >= -1 and op.du.max() <= 4095 and op.dv.min() >= 0 and op.dv.max() <= 4096
    assert ctx.reports["quantize"].output_agreement > 0.8


def test_unsupported_reset_is_refused_by_name():
    g = mlp(np.random.default_rng(0), (4, 5, 3), reset_mode="subtract")
    with pytest.raises(PassError, match=r"pass 'quantize' failed \(after fold_bn, fold_mpbn, fuse_projections, "
                                        r"retime\): layer 'lif0': reset by subtraction is not supported by loihi2 "
                                        r"\(supported by: spinnaker2, fpga; loihi2 reset_modes: zero\)"):
        quantize(g, "loihi2")
    quantize(g, "spinnaker2")


def test_snntorch_immediate_has_no_integer_form():
    g = mlp(np.random.default_rng(0), (4, 5, 3), reset_mode="subtract", reset_timing="snntorch_immediate")
    with pytest.raises(PassError, match="reset_delay=False\\) has no integer form on any target"):
        quantize(g, "fpga")


def test_readout_needs_a_target_with_readouts():
    g = Graph("r")
    g.add("in", O.Input(shape=(3,)))
    g.add("fc", O.Linear(weight=np.ones((2, 3))))
    g.add("li", O.LI(shape=(2,), beta=0.9, reset_mode="none"))
    g.add("out", O.Output(shape=(2,)))
    g.chain("in", "fc", "li", "out")
    with pytest.raises(PassError, match="a non-spiking readout \\(LI\\) is not supported by loihi2 \\(supported by: "
                                        "spinnaker2; loihi2 readout_neurons: False\\)"):
        quantize(g, "loihi2")
    q, _ = quantize(g, "spinnaker2")
    assert q.node("li").spiking is False


def test_per_layer_threshold_targets_get_one_threshold():
    rng = np.random.default_rng(3)
    g = mlp(rng, (6, 8, 4), reset_mode="zero")
    g.replace_node("lif0", g.node("lif0").replace(threshold=rng.uniform(0.5, 1.5, 8)))
    q, ctx = quantize(g, "loihi2")
    assert np.ndim(q.node("lif0").vth) == 0
    assert "thresholds co-scaled to one" in " ".join(ctx.reports["quantize"].lines())
    q, _ = quantize(g, "fpga")
    assert np.ptp(q.node("lif0").vth) > 0


def test_conv_on_loihi_has_no_weight_exponent():
    from tests.passes.test_retime_fuse import cnn

    rng = np.random.default_rng(1)
    g = cnn(rng, "avg", 1)
    g.replace_node("l2", g.node("l2").replace(reset_mode="zero"))
    x = (rng.random((30, 4, 2, 8, 8)) < 0.3).astype(np.int64)
    q, ctx = quantize(g, "loihi2", x)
    convs = [op for op in q.nodes.values() if op.kind == "QConv"]
    assert convs and all(op.weight_exp == 0 and op.wrap_bits == fixed.UV_BITS for op in convs)
    assert ctx.reports["quantize"].output_agreement > 0.9


@pytest.fixture(scope="module")
def digits():
    sys.path.insert(0, str(DIGITS))
    from model import encode, load_digits_split

    source = load_source(DIGITS / "digits.pt", SourceOptions(model=f"{DIGITS / 'model.py'}:make_model"))
    x_train, x_test, _, y_test = load_digits_split()
    return source.graph, encode(x_train[:200]).astype(np.int64), encode(x_test), y_test


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_digits_integer_accuracy_within_one_point(digits, target):
    graph, calibration, x_test, y_test = digits
    float_acc = np.mean(simulate(graph, x_test).output.sum(axis=0).argmax(axis=1) == y_test)
    q, _ = quantize(graph, target, calibration)
    pad = np.zeros((q.latency, *x_test.shape[1:]), dtype=x_test.dtype)
    out = simulate(q, np.concatenate([x_test, pad])).output[q.latency:]
    int_acc = np.mean(out.sum(axis=0).argmax(axis=1) == y_test)
    print(f"{target}: float {100 * float_acc:.2f}%, integer {100 * int_acc:.2f}%")
    assert int_acc >= float_acc - 0.01


def test_a_delay_with_two_consumers_is_counted_once():
    """Input -> fc1 -> l1 -> Delay(2) -> {fcA -> lA, fcB -> lB}: the Delay stays a node (two consumers), so it must
    not also be merged into fcA's and fcB's own delays (the integer network would then lag the float one)."""
    from nmcompile.lowered import lower_network
    from nmcompile.passes import PassContext, run_pipeline
    from nmcompile.targets import get_target

    rng = np.random.default_rng(0)
    g = Graph("fan")
    g.add("in", O.Input(shape=(6,)))
    g.add("fc1", O.Linear(weight=rng.normal(0.5, 0.3, (6, 6))))
    g.add("l1", O.LIF(shape=(6,), beta=0.9, threshold=1.0))
    g.add("d", O.Delay(delay=2))
    g.chain("in", "fc1", "l1", "d")
    for s in "AB":
        g.add(f"fc{s}", O.Linear(weight=rng.normal(0.5, 0.3, (4, 6))))
        g.add(f"l{s}", O.LIF(shape=(4,), beta=0.9, threshold=1.0))
        g.add(f"out{s}", O.Output(shape=(4,)))
        g.chain("d", f"fc{s}", f"l{s}", f"out{s}")
    compiled = run_pipeline(g, ["retime", "quantize"], PassContext(target=get_target("spinnaker2")))
    assert "d" in compiled and int(compiled.node("fcA").delay) == 1
    assert int(lower_network(compiled).projection("fcA").delay) == 3      # Delay 2 + the projection's step
