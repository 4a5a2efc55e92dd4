"""Op categories live on the op classes (role, numeric, weighted, transparent, removed_by); OP_TYPES fills itself."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from nmcompile.errors import GraphError
from nmcompile.ir import kernels
from nmcompile.ir import ops as O
from nmcompile.ir import simulate as _simulate  # noqa: F401  (registers every kernel, the plastic one included)
from nmcompile.ir.base import NUMERICS, OP_TYPES, ROLES, Op, Shape
from nmcompile.ir.graph import Graph
from nmcompile.passes import REGISTRY

BUILT_IN = {   # at least these, under these names (.nmir files name them)
    "Input", "Constant", "Output", "Linear", "SparseLinear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten",
    "Scale", "Delay", "BatchNorm", "LIF", "CubaLIF", "IF", "LI", "CubaLI", "MPBNLIF", "QLinear", "QConv", "QNeuron",
    "QPlasticLinear",
}


def package_ops() -> dict[str, type[Op]]:
    return {name: cls for name, cls in OP_TYPES.items() if cls.__module__.startswith("nmcompile.")}


@pytest.fixture
def scratch_registries():
    """Ops and kernels a test defines are forgotten afterwards."""
    ops, registered = dict(OP_TYPES), dict(kernels._KERNELS)
    yield
    OP_TYPES.clear()
    OP_TYPES.update(ops)
    kernels._KERNELS.clear()
    kernels._KERNELS.update(registered)


def test_op_types_holds_every_op_of_the_package_by_its_kind():
    assert set(package_ops()) >= BUILT_IN
    assert O.OP_TYPES is OP_TYPES
    for name, cls in package_ops().items():
        assert cls.__name__ == name
    for name in BUILT_IN:
        assert getattr(O, name) is OP_TYPES[name]                            # still re-exported by ir/ops.py
    assert "NeuronOp" not in OP_TYPES and "_Pool2d" not in OP_TYPES       # abstract bases


@pytest.mark.parametrize("name", sorted(package_ops()))
def test_every_op_declares_consistent_categories(name):
    cls = OP_TYPES[name]
    assert cls.role in ROLES and cls.numeric in NUMERICS
    if cls.weighted:
        assert cls.role == "projection"
    if cls.transparent:
        assert cls.numeric == "neutral" and not cls.weighted
    if cls.removed_by is not None:
        assert cls.removed_by in REGISTRY and cls.numeric != "integer"


@pytest.mark.parametrize("name", sorted(package_ops()))
def test_every_op_has_a_kernel_wherever_its_numeric_category_allows_it(name):
    cls = OP_TYPES[name]
    modes = {"float": ["float"], "integer": ["integer"], "neutral": ["float", "integer"]}[cls.numeric]
    for mode in modes:
        assert kernels.find_kernel(cls, mode) is not None, f"{name} has no {mode} kernel"


def test_the_categories_of_the_built_in_ops():
    ops = {name: OP_TYPES[name] for name in BUILT_IN}
    assert {n for n, c in ops.items() if c.numeric == "neutral"} == {"Input", "Constant", "Output", "Flatten",
                                                                       "SumPool2d", "Delay"}
    assert {n for n, c in ops.items() if c.numeric == "integer"} == {"QLinear", "QConv", "QNeuron", "QPlasticLinear"}
    assert {n for n, c in ops.items() if c.weighted} == {"Linear", "SparseLinear", "Conv1d", "Conv2d", "QLinear",
                                                         "QConv", "QPlasticLinear"}
    assert {n for n, c in ops.items() if c.transparent} == {"Flatten", "Delay"}
    assert {n: c.removed_by for n, c in ops.items() if c.removed_by} == {
        "BatchNorm": "fold_bn", "MPBNLIF": "fold_mpbn", "AvgPool2d": "fuse_projections",
        "SumPool2d": "fuse_projections", "Scale": "fuse_projections"}


def test_a_graph_mixing_float_and_integer_ops_is_refused():
    g = Graph("mixed")
    g.add("in", O.Input(shape=(2,)))
    g.add("fc", O.QLinear(weight=np.eye(2, dtype=np.int64)))
    g.add("n", O.LIF(shape=(2,), beta=0.5))
    g.add("out", O.Output(shape=(2,)))
    g.chain("in", "fc", "n", "out")
    with pytest.raises(GraphError, match=r"graph 'mixed' mixes float ops \(LIF\) with integer ops \(QLinear\); "
                                         "quantize the whole graph"):
        g.verify()


def test_neutral_ops_fit_either_graph():
    g = Graph("neutral")
    g.add("in", O.Input(shape=(2, 2, 2)))
    g.add("pool", O.SumPool2d(kernel_size=2, stride=2))
    g.add("flat", O.Flatten())
    g.add("delay", O.Delay(delay=1))
    g.add("fc", O.QLinear(weight=np.ones((2, 2), dtype=np.int64)))
    g.add("n", O.QNeuron(shape=(2,)))
    g.add("out", O.Output(shape=(2,)))
    g.chain("in", "pool", "flat", "delay", "fc", "n", "out")
    g.verify()
    assert g.is_integer
    g.replace_node("fc", O.Linear(weight=np.ones((2, 2))))
    g.replace_node("n", O.LIF(shape=(2,), beta=0.5))
    g.verify()
    assert not g.is_integer


def test_a_new_op_registers_itself_and_inherits_defaults(scratch_registries):
    @dataclass(frozen=True, kw_only=True, eq=False)
    class Negate(Op):
        """y = -x."""

        def out_shape(self, in_shape: Shape | None) -> Shape:
            return tuple(in_shape)

    assert OP_TYPES["Negate"] is Negate
    assert (Negate.role, Negate.numeric, Negate.weighted, Negate.transparent, Negate.removed_by) == (
        "structural", "float", False, False, None)


def test_inconsistent_categories_are_refused_when_the_class_is_defined(scratch_registries):
    with pytest.raises(TypeError, match="a weighted op must have role 'projection'"):
        class Weighted(Op):
            weighted = True

    with pytest.raises(TypeError, match="a transparent op must be unweighted and numeric 'neutral'"):
        class Passing(Op):
            transparent = True

    with pytest.raises(TypeError, match="role must be one of"):
        class Odd(Op):
            numeric = "fixed"

    assert not {"Weighted", "Passing", "Odd"} & set(OP_TYPES)


def test_two_ops_cannot_share_a_name(scratch_registries):
    with pytest.raises(TypeError, match="op Linear .* has the name of nmcompile.ir.ops.Linear"):
        class Linear(Op):
            pass
