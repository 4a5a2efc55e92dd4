"""Sinabs models traced into the IR: float64 spikes identical to Sinabs' own forward over the whole sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmcompile.api import CompileRequest, SourceOptions, compile_network, load_source
from nmcompile.errors import UnsupportedError
from nmcompile.frontend.trace import graph_from_module
from nmcompile.ir.simulate import simulate
from tests.frontend import sinabs_models
from tests.frontend.test_torch_frameworks import check

STEPS = 40
BATCH = 4


def sinabs_sequence(model, x: np.ndarray, squeeze: bool) -> np.ndarray:
    """Sinabs' own forward in float64 on the whole sequence; x and the result are [T, B, ...]. Sinabs returns spikes
    as float32 (`.float()`); they are integers, so each layer casts its input back to float64 exactly."""
    import sinabs

    model = model.double()
    for module in model:
        module.register_forward_pre_hook(lambda m, args: tuple(a.double() for a in args))
    sinabs.reset_states(model)
    batch_first = torch.as_tensor(np.moveaxis(x, 0, 1))
    with torch.no_grad():
        if squeeze:
            out = model(batch_first.reshape(-1, *x.shape[2:])).reshape(x.shape[1], x.shape[0], -1)
        else:
            out = model(batch_first)
    return np.moveaxis(out.numpy(), 0, 1).reshape(x.shape[0], x.shape[1], -1)


def assert_identical(factory, shape, squeeze=False, rate=0.3):
    graph, _ = graph_from_module(factory(), shape)
    x = (np.random.default_rng(1).random((STEPS, BATCH, *shape)) < rate).astype(np.float64)
    theirs = sinabs_sequence(factory(), x, squeeze)
    ours = simulate(graph, x).output.reshape(theirs.shape)
    assert np.array_equal(ours, theirs), f"{int((ours != theirs).sum())} of {ours.size} spikes differ"
    assert 0 < ours.mean() < 1, "the test network is silent or saturated"
    return graph


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("spike", ["single", "max1"])
@pytest.mark.parametrize("neuron", ["IAF", "LIF"])
def test_dense_identical_to_sinabs(neuron, spike, reset):
    def factory():
        return sinabs_models.dense(neuron, spike, reset, scale=0.5 if neuron == "IAF" else 3.0)

    graph = assert_identical(factory, sinabs_models.INPUT_SHAPE)
    check(factory(), sinabs_models.INPUT_SHAPE)  # the step-by-step twin agrees as well (float32 reported)
    kinds = {graph.node(n).kind for n in graph.of_kind("IF", "LIF")}
    assert kinds == {"IF" if neuron == "IAF" else "LIF"}
    assert all(graph.node(n).compare == ">=" and graph.node(n).reset_mode == reset
               for n in graph.of_kind("IF", "LIF"))


@pytest.mark.parametrize("neuron", ["IAF", "LIF"])
def test_synaptic_current_identical_to_sinabs(neuron):
    def factory():
        return sinabs_models.dense(neuron, "single", "subtract", tau_syn=3.0, norm_input=False, scale=0.2)

    graph = assert_identical(factory, sinabs_models.INPUT_SHAPE)
    assert graph.of_kind("CubaLIF")


@pytest.mark.parametrize("neuron", ["IAF", "LIF"])
def test_multi_spike_with_a_proven_bound_is_identical(neuron):
    """Small weights: v never reaches 2 * threshold, so MultiSpike emits 0/1 and is exact."""
    def factory():
        return sinabs_models.dense(neuron, "multi", "subtract", norm_input=False, scale=0.2)

    assert_identical(factory, sinabs_models.INPUT_SHAPE, rate=0.5)


def test_multi_spike_that_can_exceed_one_is_refused():
    with pytest.raises(UnsupportedError, match="MultiSpike can emit 2 or more spikes per step"):
        graph_from_module(sinabs_models.dense("IAF", "multi", "subtract", scale=3.0), sinabs_models.INPUT_SHAPE)


def test_dvs_conv_net_identical_to_sinabs():
    graph = assert_identical(sinabs_models.dvs_net, sinabs_models.DVS_INPUT_SHAPE, squeeze=True)
    assert [graph.node(n).kind for n in graph.order()] == [
        "Input", "Conv2d", "IF", "AvgPool2d", "Scale", "Conv2d", "IF", "Flatten", "Linear", "IF", "Output"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: setattr(m[1], "min_v_mem", torch.nn.Parameter(torch.tensor(-1.0), requires_grad=False)),
     "min_v_mem=-1.0"),
    (lambda m: setattr(m[1], "reset_fn", __import__("sinabs").activation.MembraneReset(reset_value=0.5)),
     r"MembraneReset\(reset_value=0.5\)"),
    (lambda m: setattr(m[1], "reset_fn", __import__("sinabs").activation.MembraneSubtract(subtract_value=0.5)),
     r"MembraneSubtract\(subtract_value=0.5\)"),
])
def test_options_without_an_ir_form_are_refused(change, message):
    model = sinabs_models.dense("IAF")
    change(model)
    with pytest.raises(UnsupportedError, match=message):
        graph_from_module(model, sinabs_models.INPUT_SHAPE)


def test_norm_input_with_tau_syn_is_refused():
    with pytest.raises(UnsupportedError, match="norm_input=True with tau_syn"):
        graph_from_module(sinabs_models.dense("LIF", tau_syn=3.0, norm_input=True), sinabs_models.INPUT_SHAPE)


def test_state_dict_with_training_state_loads_with_model(tmp_path):
    """A state dict saved after training holds v_mem of the last batch; --model loads it (state is not loaded)."""
    trained = sinabs_models.trained_dense()
    with torch.no_grad():
        trained(torch.rand(3, 5, 12))
    assert trained[1].v_mem.shape == (3, 16)
    checkpoint = tmp_path / "sinabs.pt"
    torch.save(trained.state_dict(), checkpoint)
    source = load_source(checkpoint, SourceOptions(model="tests.frontend.sinabs_models:trained_dense",
                                                   input_shape=sinabs_models.INPUT_SHAPE))
    assert source.trace.style == "step"
    np.testing.assert_array_equal(source.graph.node("0").weight, trained[0].weight.detach().double().numpy())


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2", "fpga"])
def test_dvs_conv_net_compiles_for_every_target(tmp_path, target):
    checkpoint = tmp_path / "dvs.pt"
    torch.save(sinabs_models.dvs_net().state_dict(), checkpoint)
    options = SourceOptions(model="tests.frontend.sinabs_models:dvs_net", input_shape=sinabs_models.DVS_INPUT_SHAPE)
    compile_network(CompileRequest(source=checkpoint, target=target, out=tmp_path / target, options=options,
                                   reference_samples=1))
    assert (tmp_path / target / "manifest.json").exists()
