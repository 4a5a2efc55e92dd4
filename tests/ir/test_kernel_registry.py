"""Simulator kernels are registered per op class and found along the MRO; a missing kernel is a clear error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from nmcompile.errors import UnsupportedError
from nmcompile.ir import kernels
from nmcompile.ir import ops as O
from nmcompile.ir.base import OP_TYPES, Op, Shape
from nmcompile.ir.graph import Graph
from nmcompile.ir.kernels import Kernel, MapKernel, find_kernel, make_kernel, register_kernel
from nmcompile.ir.plasticity import PlasticLinear
from nmcompile.ir.simulate import simulate


@pytest.fixture
def scratch_registries():
    ops, registered = dict(OP_TYPES), dict(kernels._KERNELS)
    yield
    OP_TYPES.clear()
    OP_TYPES.update(ops)
    kernels._KERNELS.clear()
    kernels._KERNELS.update(registered)


def _same_shape(self, in_shape: Shape | None) -> Shape:
    return tuple(in_shape)


@pytest.fixture
def times(scratch_registries):
    """A test op y = k * x (neutral: exact on integers too) with one kernel for both modes."""

    @dataclass(frozen=True, kw_only=True, eq=False)
    class Times(Op):
        numeric = "neutral"
        k: int = 2
        out_shape = _same_shape

    @register_kernel(Times)
    def _times(op: Times, in_shape, out_shape, dtype) -> Kernel:
        return MapKernel(in_shape, out_shape, dtype, lambda x: x * dtype.type(op.k))

    return Times


def _graph(op: Op, n: int = 3) -> Graph:
    g = Graph("g")
    g.add("in", O.Input(shape=(n,)))
    g.add("op", op)
    g.add("out", O.Output(shape=(n,)))
    g.chain("in", "op", "out")
    return g


def test_a_registered_kernel_simulates_in_every_mode(times):
    x = np.arange(2 * 4 * 3).reshape(2, 4, 3) % 5
    for mode in ("float64", "float32", "integer"):
        result = simulate(_graph(times(k=3)), x, mode=mode).output
        assert result.dtype == (np.int64 if mode == "integer" else np.dtype(mode))
        np.testing.assert_array_equal(result, 3 * x)


def test_a_subclass_inherits_its_parents_kernel_unless_it_registers_its_own(times):
    @dataclass(frozen=True, kw_only=True, eq=False)
    class Thrice(times):
        k: int = 3

    @dataclass(frozen=True, kw_only=True, eq=False)
    class Zero(times):
        pass

    @register_kernel(Zero, mode="float")
    def _zero(op, in_shape, out_shape, dtype) -> Kernel:
        return MapKernel(in_shape, out_shape, dtype, lambda x: x * 0)

    x = np.ones((1, 1, 3))
    np.testing.assert_array_equal(simulate(_graph(Thrice()), x).output, 3 * x)
    assert find_kernel(Zero, "float").__name__ == "_zero"                    # its own, for its mode
    assert find_kernel(Zero, "integer").__name__ == "_times"                 # the parent's 'any' kernel otherwise
    np.testing.assert_array_equal(simulate(_graph(Zero()), x).output, 0 * x)
    np.testing.assert_array_equal(simulate(_graph(Zero()), x, mode="integer").output, 2 * x)


def test_an_op_without_a_kernel_is_named(scratch_registries):
    @dataclass(frozen=True, kw_only=True, eq=False)
    class Mystery(Op):
        out_shape = _same_shape

    with pytest.raises(UnsupportedError, match=r"the float simulator has no kernel for Mystery; register one with "
                                               r"@register_kernel\(Mystery, mode='float'\)"):
        simulate(_graph(Mystery()), np.zeros((1, 1, 3)))


def test_integer_and_float_ops_in_the_wrong_mode_say_what_to_do():
    with pytest.raises(UnsupportedError, match="QNeuron is an integer op; simulate this graph with --integer"):
        make_kernel(O.QNeuron(shape=(3,)), (3,), (3,), "float64")
    with pytest.raises(UnsupportedError, match="LIF has no integer semantics; quantize the graph for a target before "
                                               "simulating it as integers"):
        make_kernel(O.LIF(shape=(3,)), (3,), (3,), "integer")
    with pytest.raises(UnsupportedError, match="Linear has no integer semantics; quantize the graph"):
        simulate(_graph(O.Linear(weight=np.eye(3))), np.zeros((1, 1, 3)), mode="integer")


def test_the_plastic_projection_has_its_own_kernel_not_qlinears():
    op = O.QPlasticLinear(weight=np.eye(3, dtype=np.int64), num_weight_bits=9, delay=1)
    assert isinstance(make_kernel(op, (3,), (3,), "integer"), PlasticLinear)


def test_registration_is_checked(times):
    with pytest.raises(ValueError, match="kernel mode must be one of"):
        register_kernel(times, mode="fixed")
    with pytest.raises(ValueError, match="Times already has a kernel for mode .any."):
        @register_kernel(times)
        def _other(op, in_shape, out_shape, dtype) -> Kernel:
            raise AssertionError
