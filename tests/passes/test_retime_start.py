"""retime gives layers that are not at rest a start step instead of refusing them: the retimed network is the source
network shifted by L in float64 (held layers included), and quantize keeps the start steps or refuses them on a
target without start steps, naming the layer and its restless neurons."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.passes import PassContext, PassError, run_pipeline
from nmcompile.targets import get_target


def chain(*layers) -> Graph:
    rng = np.random.default_rng(7)
    g = Graph("chain")
    g.add("in", O.Input(shape=(8,)))
    prev, width = "in", 8
    for k, layer in enumerate(layers):
        g.add(f"fc{k}", O.Linear(weight=rng.normal(0.3, 0.6, (layer.shape[0], width))))
        g.add(f"l{k}", layer)
        g.chain(prev, f"fc{k}", f"l{k}")
        prev, width = f"l{k}", layer.shape[0]
    g.add("out", O.Output(shape=(width,)))
    g.connect(prev, "out")
    return g


def shifted(source: Graph, retimed: Graph, steps: int = 30) -> None:
    x = (np.random.default_rng(1).random((steps, 3, 8)) < 0.4).astype(np.float64)
    lag = retimed.latency
    padded = np.concatenate([x, np.zeros((lag, 3, 8))])
    a, b = simulate(source, padded).output, simulate(retimed, padded).output
    assert a.any()
    np.testing.assert_array_equal(b[lag:], a[:steps])
    assert not b[:lag].any(), "the held layers emit nothing before the latency"


def test_layers_not_at_rest_get_their_first_input_step():
    g = chain(O.CubaLIF(shape=(6,), alpha=0.5, beta=0.8, bias=0.3),          # a current-based bias cannot move
              O.LIF(shape=(5,), beta=0.7, v_init=[0.0, 1.5, 0.2, 0.0, -0.4]),  # leaks / fires at once
              O.IF(shape=(4,), v_init=0.5),                                   # at rest (no leak)
              O.LIF(shape=(3,), beta=0.9, bias=0.2))                          # its bias moves onto a source
    ctx = PassContext()
    retimed = run_pipeline(g, ["retime"], ctx)
    assert {n: retimed.node(n).start_step for n in ("l0", "l1", "l2", "l3")} == {"l0": 1, "l1": 2, "l2": 0, "l3": 0}
    assert retimed.node("l3").bias == 0.0
    assert ctx.reports["retime"].lines()[1:] == [
        "biases of 1 layer(s) moved onto constant sources so they start with their layer's first input: l3",
        "2 layer(s) not at rest held until their first input arrives (start step): l0 at step 1, l1 at step 2"]
    shifted(g, retimed)


def test_a_threshold_at_rest_keeps_its_bias_and_gets_a_start_step():
    """Moving the bias would leave '>=' at threshold 0 firing at rest (before the first input): a start step."""
    g = chain(O.LIF(shape=(4,), beta=0.8, bias=0.25, threshold=[0.0, 1.0, 1.0, 1.0], compare=">="))
    retimed = run_pipeline(g, ["retime"])
    assert retimed.node("l0").start_step == 1 and np.all(retimed.node("l0").bias == 0.25)
    shifted(g, retimed)


def test_an_existing_start_step_adds_to_the_offset():
    g = chain(O.LIF(shape=(4,), beta=0.8), O.LIF(shape=(4,), beta=0.8, start_step=2))
    retimed = run_pipeline(g, ["retime"])
    assert retimed.node("l1").start_step == 4 and retimed.node("l0").start_step == 0
    shifted(g, retimed)


def restless_network() -> Graph:
    return chain(O.LIF(shape=(6,), beta=0.8), O.LIF(shape=(9,), beta=0.7, v_init=[0, 0, 1.5, 0, 0, 0.2, 0.3, 0, 2]))


def test_loihi2_refuses_naming_the_neurons_that_cannot_wait():
    target = get_target("loihi2")
    x = (np.random.default_rng(0).random((20, 2, 8)) < 0.4).astype(np.float64)
    with pytest.raises(PassError, match=r"pass 'quantize' failed .*layer 'l1': holding 4 of 9 neurons \(2, 5, 6, 8\) "
                                        r"at their initial state until the layer's first input arrives at step 2 "
                                        r"\(a start step: they fire or leak before it\) is not supported by loihi2 "
                                        r"\(supported by: spinnaker2, fpga; loihi2 start_step_bits: 0\)"):
        run_pipeline(restless_network(), ["retime", "quantize"], PassContext(target=target, calibration=x))


@pytest.mark.parametrize("target", ["fpga", "spinnaker2"])
def test_targets_with_start_steps_keep_them_through_quantize(target):
    x = (np.random.default_rng(0).random((20, 2, 8)) < 0.4).astype(np.float64)
    q = run_pipeline(restless_network(), ["retime", "quantize"], PassContext(target=get_target(target), calibration=x))
    assert q.node("l1").kind == "QNeuron" and q.node("l1").start_step == 2 and q.node("l0").start_step == 0


def test_a_start_step_beyond_the_register_is_refused():
    g = chain(O.LIF(shape=(4,), beta=0.8, v_init=0.5, start_step=70_000))
    x = (np.random.default_rng(0).random((5, 1, 8)) < 0.4).astype(np.float64)
    with pytest.raises(PassError, match=r"layer 'l0': a start step of 70001 is not supported by fpga \(supported by: "
                                        r"spinnaker2; fpga start_step_bits: 16\)"):
        run_pipeline(g, ["retime", "quantize"], PassContext(target=get_target("fpga"), calibration=x))


def test_thresholds_below_rest_are_signed_where_the_target_has_them():
    """A folded MPBN threshold below 0 (reset to zero) fires at rest: a start step and a negative vth."""
    g = chain(O.LIF(shape=(4,), beta=0.8, threshold=[-0.5, 1.0, -0.2, 1.0]))
    x = (np.random.default_rng(0).random((20, 2, 8)) < 0.4).astype(np.float64)
    q = run_pipeline(g, ["retime", "quantize"], PassContext(target=get_target("fpga"), calibration=x))
    vth = np.broadcast_to(q.node("l0").vth, (4,))
    assert q.node("l0").start_step == 1 and vth[0] < vth[2] < 0 < vth[1] == vth[3]
    with pytest.raises(PassError, match=r"layer 'l0': a negative threshold \(neurons that fire at rest\) is not "
                                        r"supported by loihi2 \(supported by: spinnaker2, fpga; loihi2 "
                                        r"signed_threshold: False\)"):
        run_pipeline(g, ["retime", "quantize"], PassContext(target=get_target("loihi2"), calibration=x))
    subtract = chain(O.LIF(shape=(4,), beta=0.8, threshold=[-0.5, 1.0, 1.0, 1.0], reset_mode="subtract"))
    with pytest.raises(PassError, match="a negative threshold with reset by subtraction has no integer form on any "
                                        "target"):
        run_pipeline(subtract, ["retime", "quantize"], PassContext(target=get_target("spinnaker2"), calibration=x))
