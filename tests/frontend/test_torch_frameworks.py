"""Each framework's networks, traced into the IR: float64 spikes identical to the framework's own forward.

Every case also runs the framework in float32 against the IR's float32 simulation and prints the number of
differing spikes (rounding order differs, so a rare flip is possible and reported, not failed).
"""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.frontend.check import compare, float64_model
from nmcompile.frontend.trace import graph_from_module
from tests.frontend import models

STEPS = 50


def check(model, input_shape, *, rate=0.3, batch=4, seed=0, constant=False, min_activity=True):
    graph, trace = graph_from_module(model, input_shape)
    rng = np.random.default_rng(seed)
    x = (rng.random((STEPS, batch, *input_shape)) < rate).astype(np.float64)
    if constant:
        x[:] = x[:1]
    with float64_model(model) as m64:
        exact = compare(m64, graph, trace, x, "float64")
        spikes = graph  # keep graph for inspection on failure
    single = compare(model, graph, trace, x, "float32")
    print(f"{type(model).__name__} [{trace.style}]: float64 {exact}; float32 {single}")
    assert exact.mismatches == 0, f"float64 differs from the framework: {exact}"
    assert single.mismatches <= single.total // 100, f"float32 differs too much: {single}"
    if min_activity:
        from nmcompile.ir.simulate import simulate

        out = simulate(spikes, x).output
        assert 0 < out.mean() < 1, "test network is silent or saturated; it would not exercise the neurons"
    return graph, trace


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("neuron", ["Leaky", "Synaptic"])
def test_snntorch_feedforward(neuron, reset, delay):
    check(models.snntorch_dense(neuron, reset, delay), (12,))


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize(("neuron", "recurrent", "delay"), [
    ("RLeaky", "all_to_all", True), ("RLeaky", "all_to_all", False), ("RLeaky", "one_to_one", True),
    ("RLeaky", "one_to_one", False), ("RSynaptic", "all_to_all", True)])
def test_snntorch_recurrent(neuron, recurrent, reset, delay):
    graph, _ = check(models.snntorch_dense(neuron, reset, delay, recurrent), (12,))
    assert any(e.recurrent for e in graph.edges)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_rsynaptic_without_reset_delay(reset):
    """snnTorch 1.0 drops RSynaptic's immediate reset; nmcompile reproduces what snnTorch computes."""
    from nmcompile.errors import NmcWarning

    with pytest.warns(NmcWarning, match="ignores reset_delay=False"):
        graph, _ = check(models.snntorch_rsynaptic_loop(reset), (12,))
    assert graph.node("lif1").reset_timing == "delayed"


def test_snntorch_conv_sequence_style():
    graph, trace = check(models.gain(models.SnnTorchConv(), 2.5), (2, 8, 8))
    assert trace.style == "sequence"
    assert [graph.node(n).kind for n in graph.order()] == [
        "Input", "Conv2d", "LIF", "AvgPool2d", "Conv2d", "LIF", "Flatten", "Linear", "LIF", "Output"]


def test_snntorch_explicit_recurrence_and_residual_loop_style():
    graph, trace = check(models.gain(models.SnnTorchExplicitRecurrent()), (12,), constant=True)
    assert trace.style == "loop" and trace.steps == STEPS
    recurrent = [(e.src, e.dst) for e in graph.edges if e.recurrent]
    assert recurrent == [("lif1", "rec")]
    assert {e.src for e in graph.in_edges("lif2")} == {"fc2", "lif1.scale"}


@pytest.mark.parametrize(("kind", "v_reset", "decay_input"), [
    ("IF", 0.0, True), ("IF", None, True), ("IF", -0.3, True),
    ("LIF", 0.0, True), ("LIF", None, True), ("LIF", 0.0, False), ("LIF", -0.2, False),
    ("PLIF", 0.0, True), ("PLIF", None, False),
])
def test_spikingjelly_dense(kind, v_reset, decay_input):
    graph, _ = check(models.spikingjelly_net(kind, v_reset, decay_input), (12,))
    assert all(graph.node(n).compare == ">=" for n in graph.of_kind("IF", "LIF"))


@pytest.mark.parametrize("kind", ["IF", "LIF", "PLIF"])
def test_spikingjelly_conv(kind):
    check(models.spikingjelly_net(kind, 0.0, conv=True), (2, 6, 6))


@pytest.mark.parametrize("kind", ["LIFBoxCell", "LIFCell", "IAFCell"])
def test_norse_cells(kind):
    check(models.norse_net(kind), (12,), rate=0.5)


def test_norse_leaky_integrator_readout():
    from nmcompile.ir.simulate import simulate

    model = models.norse_net("LIBoxCell")
    graph, trace = graph_from_module(model, (12,))
    x = (np.random.default_rng(0).random((STEPS, 3, 12)) < 0.4).astype(np.float64)
    with float64_model(model) as m64:
        from nmcompile.frontend.check import torch_forward

        theirs = torch_forward(m64, trace, x)
    np.testing.assert_allclose(simulate(graph, x).output, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("elementwise", [False, True])
def test_nmcompile_mpbn(elementwise):
    graph, _ = check(models.mpbn_net(elementwise), (2, 6, 6))
    assert graph.of_kind("MPBNLIF")


def test_norse_conv_with_subtract_reset():
    graph, _ = check(models.norse_conv(), (2, 6, 6), rate=0.5)
    assert graph.node("1").reset_mode == "subtract"


@pytest.mark.parametrize("framework", ["spikingjelly", "norse"])
def test_explicit_recurrence(framework):
    graph, trace = check(models.gain(models.RecurrentLoop(framework), 3.0), (12,), rate=0.4)
    assert trace.style == "sequence"
    assert [(e.src, e.dst) for e in graph.edges if e.recurrent] == [("n1", "rec")]


def test_snntorch_published_traces_through_the_frontend():
    """snnTorch 1.0.0 (snntorch/_neurons/leaky.py, synaptic.py): Leaky(beta=0.9) and Synaptic(alpha=0.5,
    beta=0.9) spike trains."""
    import snntorch as snn
    import torch

    from nmcompile.ir.simulate import simulate

    x = np.array([0.6, 0.6, 0.6, 0.6, 0, 0, 1.5, 0]).reshape(8, 1, 1)
    table = {
        ("Leaky", "subtract", True): [0, 1, 0, 1, 0, 0, 1, 0],
        ("Leaky", "subtract", False): [0, 1, 0, 1, 0, 0, 1, 0],
        ("Leaky", "zero", True): [0, 1, 0, 1, 0, 0, 1, 0],
        ("Leaky", "zero", False): [0, 1, 0, 1, 0, 0, 1, 0],
        ("Synaptic", "subtract", True): [0, 1, 1, 1, 0, 0, 1, 1],
        ("Synaptic", "zero", True): [0, 1, 0, 1, 0, 0, 1, 0],
    }
    for (kind, reset, delay), expected in table.items():
        cls = snn.Leaky if kind == "Leaky" else snn.Synaptic
        extra = {} if kind == "Leaky" else {"alpha": 0.5}
        neuron = cls(beta=0.9, reset_mechanism=reset, reset_delay=delay, init_hidden=True, **extra)
        model = torch.nn.Sequential(neuron).double()
        graph, trace = graph_from_module(model, (1,))
        from nmcompile.frontend.check import torch_forward

        np.testing.assert_array_equal(torch_forward(model, trace, x)[:, 0, 0], expected)
        np.testing.assert_array_equal(simulate(graph, x).output[:, 0, 0], expected)
