"""Start steps (docs/semantics.md): a layer with start step s is held at its initial state, drops its inputs and
outputs 0 (no spikes; a readout too) for t < s, then runs as from step 0, so its output at t + s is its unheld
output at t. The driver holds it the same way in whole-sequence, step-by-step (recurrent) and streamed runs."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.ir import ops as O
from nmcompile.ir.dump import dump
from nmcompile.ir.graph import Graph
from nmcompile.ir.rest import at_rest, restless_neurons
from nmcompile.ir.serialize import load, save
from nmcompile.ir.simulate import Simulator, simulate


def one_layer(neuron, recurrent: bool = False) -> Graph:
    n = neuron.shape[0]
    g = Graph("one")
    g.add("in", O.Input(shape=(4,)))
    weight = np.random.default_rng(3).normal(0.4, 0.6, (n, 4))
    integer = neuron.numeric == "integer"
    g.add("fc", O.QLinear(weight=np.rint(weight * 60).astype(np.int64), num_weight_bits=9, delay=0) if integer
          else O.Linear(weight=weight))
    g.add("n", neuron)
    g.add("out", O.Output(shape=neuron.shape))
    g.chain("in", "fc", "n", "out")
    if recurrent:
        g.add("rec", O.QLinear(weight=np.full((n, n), -20), num_weight_bits=9, delay=0) if integer
              else O.Linear(weight=np.full((n, n), -0.3)))
        g.connect("n", "rec", recurrent=True)
        g.connect("rec", "n")
    return g


NEURONS = {
    "lif-tonic": O.LIF(shape=(6,), beta=0.8, bias=0.45, threshold=1.0, v_init=np.linspace(-0.5, 1.5, 6)),
    "cuba-delayed": O.CubaLIF(shape=(6,), alpha=0.5, beta=0.9, bias=0.3, threshold=1.0, reset_mode="subtract",
                              reset_timing="delayed", v_init=1.2, i_init=0.2),
    "refractory": O.LIF(shape=(6,), beta=0.9, bias=0.6, threshold=1.0, refractory=2, v_init=0.9),
    "readout": O.LI(shape=(6,), beta=0.7, bias=0.2, reset_mode="none", v_init=np.arange(6.0)),
    "integer": O.QNeuron(shape=(6,), du=3000, dv=500, vth=40, bias_mant=300, bias_exp=2, u_init=np.arange(6) * 900,
                         v_init=np.arange(-3, 3) * 1500, refractory=1),
    "integer-readout": O.QNeuron(shape=(6,), du=4095, dv=200, vth=0, bias_mant=-50, spiking=False,
                                 reset_mode="none", v_init=np.arange(6) * 1000),
}


@pytest.mark.parametrize("recurrent", [False, True], ids=["feed-forward", "recurrent"])
@pytest.mark.parametrize("name", sorted(NEURONS))
def test_a_late_layer_is_the_same_layer_shifted(name, recurrent):
    rng = np.random.default_rng(0)
    op, s, steps = NEURONS[name], 3, 25
    x = (rng.random((steps, 2, 4)) < 0.4).astype(np.float64)
    free = simulate(one_layer(op, recurrent), x, record=True)
    late_input = np.concatenate([rng.random((s, 2, 4)) < 0.5, x[: steps - s]]).astype(np.float64)   # dropped
    late = simulate(one_layer(op.replace(start_step=s), recurrent), late_input, record=True)
    assert free.output.any()
    assert not late.output[:s].any()
    np.testing.assert_array_equal(late.output[s:], free.output[: steps - s])
    for var, values in late.states["n"].items():
        np.testing.assert_array_equal(values[s:], free.states["n"][var][: steps - s], err_msg=var)
        first = values[0]
        assert all(np.array_equal(values[t], first) for t in range(s)), f"{var} changed while held"


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_streamed_chunks_count_steps_across_chunks(chunk):
    op = NEURONS["integer"].replace(start_step=4)
    g = one_layer(op, recurrent=True)
    x = (np.random.default_rng(1).random((17, 3, 4)) < 0.4).astype(np.int64)
    sim = Simulator(g)
    sim.start(3)
    parts = [sim.feed(x[t:t + chunk])["out"] for t in range(0, 17, chunk)]
    np.testing.assert_array_equal(np.concatenate(parts), simulate(g, x).output)
    g_ff = one_layer(op)
    sim = Simulator(g_ff)
    sim.start(3)
    parts = [sim.feed(x[t:t + chunk])["out"] for t in range(0, 17, chunk)]
    np.testing.assert_array_equal(np.concatenate(parts), simulate(g_ff, x).output)


def test_a_start_beyond_the_run_holds_every_step():
    op = NEURONS["lif-tonic"].replace(start_step=50)
    x = np.ones((10, 1, 4))
    result = simulate(one_layer(op), x, record=True)
    assert not result.output.any()
    np.testing.assert_array_equal(result.states["n"]["v"], np.broadcast_to(op.v_init, (10, 1, 6)))


def test_start_step_is_carried_by_files_and_dumps_only_when_set(tmp_path):
    plain = one_layer(NEURONS["integer"])
    assert "start_step" not in dump(plain)
    late = one_layer(NEURONS["integer"].replace(start_step=7))
    assert "start_step=7" in dump(late)
    back = load(save(late, tmp_path / "late.nmir"))
    assert back.node("n").start_step == 7 and back.equals(late)
    assert load(save(plain, tmp_path / "plain.nmir")).node("n").start_step == 0
    with pytest.raises(Exception, match="start_step must be >= 0"):
        one_layer(NEURONS["integer"].replace(start_step=-1)).verify()


def test_rest_is_a_fixed_point_of_the_layer_without_input():
    assert at_rest(O.LIF(shape=(3,), beta=0.9), (3,))
    assert at_rest(O.IF(shape=(3,), v_init=0.7), (3,))                          # no leak: v_init is a fixed point
    assert list(restless_neurons(O.LIF(shape=(4,), beta=0.9, v_init=[0.0, 0.5, 0.0, 2.0]), (4,))) == [1, 3]
    assert list(restless_neurons(O.LIF(shape=(3,), threshold=[1.0, -0.5, 0.0], compare=">="), (3,))) == [1, 2]
    assert list(restless_neurons(O.QNeuron(shape=(3,), vth=[5, 0, 5], compare=">=", v_init=[0, 0, 400]),
                                 (3,))) == [1, 2]
    assert at_rest(O.QNeuron(shape=(2,), du=4095, dv=0, vth=3, v_init=100), (2,))   # dv = 0: v does not leak
