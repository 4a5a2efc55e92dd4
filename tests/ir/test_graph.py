"""Graph structure, verification messages, ordering and the golden text dump."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.errors import GraphError, NumericError, ShapeError
from nmcompile.ir import ops as O
from nmcompile.ir.dump import dump
from nmcompile.ir.graph import Graph
from tests.conftest import assert_golden, mlp


def chain(*ops_by_name) -> Graph:
    g = Graph("g")
    for name, op in ops_by_name:
        g.add(name, op)
    g.chain(*(n for n, _ in ops_by_name))
    return g


def test_nan_weight_is_named():
    g = chain(("in", O.Input(shape=(2,))), ("fc", O.Linear(weight=[[1.0, np.nan]])), ("out", O.Output(shape=(1,))))
    with pytest.raises(NumericError, match=r"node 'fc' \(Linear\): parameter 'weight' contains NaN"):
        g.verify()


def test_inf_threshold_is_named():
    g = chain(("in", O.Input(shape=(2,))), ("n", O.LIF(shape=(2,), threshold=[1.0, np.inf])),
              ("out", O.Output(shape=(2,))))
    with pytest.raises(NumericError, match="'threshold' contains inf"):
        g.verify()


def test_shape_mismatch_names_node_and_shapes():
    g = chain(("in", O.Input(shape=(3,))), ("fc", O.Linear(weight=np.zeros((2, 4)))), ("out", O.Output(shape=(2,))))
    with pytest.raises(ShapeError, match=r"node 'fc' \(Linear\): weight expects input \(4,\) but receives \(3,\)"):
        g.verify()


def test_disagreeing_inputs_are_named():
    g = Graph("g")
    g.add("a", O.Input(shape=(3,)))
    g.add("b", O.Input(shape=(4,)))
    g.add("n", O.IF(shape=(3,)))
    g.add("out", O.Output(shape=(3,)))
    g.chain("a", "n", "out")
    g.connect("b", "n")
    with pytest.raises(ShapeError, match="inputs of 'n' disagree: 'a' gives \\(3,\\) but 'b' gives \\(4,\\)"):
        g.verify()


def test_cycle_without_delay_is_rejected():
    g = chain(("in", O.Input(shape=(2,))), ("fc", O.Linear(weight=np.eye(2))), ("n", O.IF(shape=(2,))),
              ("out", O.Output(shape=(2,))))
    g.connect("n", "fc")
    with pytest.raises(GraphError, match="cycle without a step of delay through 'fc', 'n'"):
        g.verify()


def test_cycle_without_projection_is_rejected():
    g = chain(("in", O.Input(shape=(2,))), ("fc", O.Linear(weight=np.eye(2))), ("n", O.IF(shape=(2,))),
              ("out", O.Output(shape=(2,))))
    g.connect("n", "n", recurrent=True)
    with pytest.raises(GraphError, match="has no projection"):
        g.verify()


def test_integer_cycle_broken_by_projection_delay():
    g = chain(("in", O.Input(shape=(2,))), ("fc", O.QLinear(weight=np.eye(2, dtype=int))),
              ("n", O.QNeuron(shape=(2,))), ("out", O.Output(shape=(2,))))
    g.connect("n", "fc")
    g.verify()
    assert g.order() == ["in", "fc", "n", "out"]


def test_structural_errors():
    g = Graph("g")
    g.add("in", O.Input(shape=(2,)))
    with pytest.raises(GraphError, match="no Output node"):
        g.verify()
    g.add("out", O.Output(shape=(2,)))
    g.add("n", O.IF(shape=(2,)))
    g.chain("in", "out")
    with pytest.raises(GraphError, match=r"node 'n' \(IF\) has no input"):
        g.verify()
    with pytest.raises(GraphError, match="already exists"):
        g.add("n", O.IF(shape=(2,)))
    with pytest.raises(GraphError, match="invalid node name"):
        g.add("a b", O.IF(shape=(2,)))
    with pytest.raises(GraphError, match="duplicate edge"):
        g.connect("in", "out")
    g.connect("in", "ghost")
    with pytest.raises(GraphError, match="'ghost' that does not exist"):
        g.verify()


def test_mixed_float_and_integer_rejected():
    g = chain(("in", O.Input(shape=(2,))), ("fc", O.Linear(weight=np.eye(2))), ("n", O.QNeuron(shape=(2,))),
              ("out", O.Output(shape=(2,))))
    with pytest.raises(GraphError, match="mixes float ops"):
        g.verify()


def test_bad_neuron_options_rejected():
    g = chain(("in", O.Input(shape=(2,))), ("n", O.LIF(shape=(2,), reset_mode="halve")), ("out", O.Output(shape=(2,))))
    with pytest.raises(GraphError, match="reset_mode must be one of"):
        g.verify()
    g = chain(("in", O.Input(shape=(2,))), ("n", O.LIF(shape=(2,), beta=[0.5, 0.5, 0.5])),
              ("out", O.Output(shape=(2,))))
    with pytest.raises(GraphError, match="'beta' of shape \\(3,\\) does not broadcast to \\(2,\\)"):
        g.verify()


def test_ops_are_immutable():
    op = O.Linear(weight=np.eye(2))
    with pytest.raises(ValueError):
        op.weight[0, 0] = 5
    with pytest.raises(AttributeError):
        op.weight = np.zeros((2, 2))


def test_golden_dump_mlp_with_recurrence():
    g = mlp(np.random.default_rng(7), (4, 12, 3), recurrent=True, neuron="CubaLIF", reset_timing="delayed")
    assert_golden("ir/mlp_recurrent.txt", dump(g))


def test_golden_dump_conv_integer():
    g = chain(("in", O.Input(shape=(2, 6, 6))),
              ("conv", O.QConv(weight=np.arange(2 * 2 * 3 * 3).reshape(2, 2, 3, 3) - 10, stride=1, padding=1)),
              ("lif", O.QNeuron(shape=(2, 6, 6), du=4095, dv=1024, vth=[[[80]], [[90]]], reset_mode="subtract")),
              ("pool", O.SumPool2d(kernel_size=2, stride=2)), ("flat", O.Flatten()),
              ("fc", O.QLinear(weight=np.ones((5, 18), dtype=int), weight_exp=-1, delay=2)),
              ("out", O.Output(shape=(5,))))
    g.verify()
    assert_golden("ir/conv_integer.txt", dump(g))
