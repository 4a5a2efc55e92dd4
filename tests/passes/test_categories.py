"""Passes read op categories (removed_by, numeric, weighted, transparent) and walk with Graph.trace_*."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import plastic_pairs, simulate
from nmcompile.passes import PassContext, PassError, run_pipeline
from nmcompile.targets import get_target


def _quantize(g: Graph, target: str = "loihi2", passes=("quantize",)) -> Graph:
    return run_pipeline(g, list(passes), PassContext(target=get_target(target)))


def _layer(g: Graph, *names_ops: tuple[str, O.Op]) -> Graph:
    for name, op in names_ops:
        g.add(name, op)
    g.chain(*(n for n, _ in names_ops))
    return g


@pytest.mark.parametrize(("op", "hint"), [
    (O.BatchNorm(mean=np.zeros(3), var=np.ones(3), weight=np.ones(3), bias=np.zeros(3)), "fold_bn"),
    (O.Scale(scale=0.5), "fuse_projections"),
])
def test_quantize_names_the_pass_that_removes_an_op(op, hint):
    g = _layer(Graph("g"), ("in", O.Input(shape=(3,))), ("fc", O.Linear(weight=np.eye(3))), ("x", op),
               ("n", O.LIF(shape=(3,), beta=0.5)), ("out", O.Output(shape=(3,))))
    with pytest.raises(PassError, match=rf"'x' \({op.kind}\) has no integer form; run {hint} before quantize"):
        _quantize(g)


def test_quantize_refuses_an_integer_graph():
    g = _layer(Graph("g"), ("in", O.Input(shape=(3,))), ("fc", O.QLinear(weight=np.eye(3, dtype=np.int64))),
               ("n", O.QNeuron(shape=(3,))), ("out", O.Output(shape=(3,))))
    with pytest.raises(PassError, match=r"'fc' \(QLinear\) has no integer form; run an earlier pass before quantize"):
        _quantize(g)


def test_per_channel_delays_before_a_flatten_become_per_synapse_delays():
    """Trace.delay spreads a Delay over the elements Flatten makes of it (C order)."""
    g = _layer(Graph("g"), ("in", O.Input(shape=(2, 2, 2))), ("d", O.Delay(delay=np.array([1, 3]).reshape(2, 1, 1))),
               ("flat", O.Flatten()), ("fc", O.Linear(weight=np.full((3, 8), 0.4))),
               ("n", O.LIF(shape=(3,), beta=0.5)), ("out", O.Output(shape=(3,))))
    q = _quantize(g)
    assert "d" not in q                                                     # merged into the projection
    np.testing.assert_array_equal(q.node("fc").delay, np.broadcast_to([1] * 4 + [3] * 4, (3, 8)))
    x = (np.random.default_rng(0).random((12, 2, 2, 2, 2)) < 0.5).astype(np.int64)
    float_spikes = simulate(g, x).output
    integer_spikes = simulate(q, x).output
    assert np.mean(float_spikes == integer_spikes) > 0.95


def test_a_projection_summing_two_inputs_is_refused_by_name():
    g = Graph("g")
    g.add("in", O.Input(shape=(4,)))
    for k in "ab":
        g.add(f"p{k}", O.Linear(weight=np.eye(4)))
        g.add(k, O.LIF(shape=(4,), beta=0.5))
        g.chain("in", f"p{k}", k)
    _layer(g, ("sum", O.Linear(weight=np.full((4, 4), 0.3))), ("c", O.LIF(shape=(4,), beta=0.5)),
           ("out", O.Output(shape=(4,))))
    g.connect("a", "sum")
    g.connect("b", "sum")
    with pytest.raises(PassError, match="projection 'sum' sums 2 inputs"):
        _quantize(g, passes=("fuse_projections", "retime", "quantize"))


def test_a_scale_folds_into_a_projection_behind_flatten_and_delay():
    g = _layer(Graph("g"), ("in", O.Input(shape=(2, 2))), ("s", O.Scale(scale=0.5)), ("flat", O.Flatten()),
               ("d", O.Delay(delay=2)), ("fc", O.Linear(weight=np.ones((3, 4)))),
               ("n", O.LIF(shape=(3,), beta=0.5)), ("out", O.Output(shape=(3,))))
    fused = run_pipeline(g, ["fuse_projections"], PassContext())
    assert "s" not in fused
    np.testing.assert_array_equal(fused.node("fc").weight, np.full((3, 4), 0.5))


def _plastic(between: list[tuple[str, O.Op]]) -> Graph:
    weight = np.array([[3, 1], [0, 2]], dtype=np.int64)
    return _layer(Graph("g"), ("in", O.Input(shape=(2,))),
                  ("p", O.QPlasticLinear(weight=weight, num_weight_bits=9, delay=1)), *between,
                  ("n", O.QNeuron(shape=(2,), vth=1)), ("out", O.Output(shape=(2,))))


def test_a_plastic_projection_may_feed_its_layer_through_a_flatten():
    x = (np.random.default_rng(1).random((20, 3, 2)) < 0.5).astype(np.int64)
    direct, flat = _plastic([]), _plastic([("flat", O.Flatten())])
    assert plastic_pairs(flat) == [("p", "n")]
    a, b = simulate(direct, x, record=True), simulate(flat, x, record=True)
    np.testing.assert_array_equal(a.output, b.output)
    np.testing.assert_array_equal(a.weights["p"], b.weights["p"])


def test_a_plastic_projection_with_a_step_before_its_layer_is_refused():
    with pytest.raises(UnsupportedError, match="plastic projection 'p' must feed exactly one neuron layer directly"):
        plastic_pairs(_plastic([("d", O.Delay(delay=1))]))
