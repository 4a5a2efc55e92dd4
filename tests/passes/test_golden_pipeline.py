"""The IR after every pass of a small hand-built network, as golden text (a refactor shows its diff)."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.backends import get_backend
from nmcompile.ir import ops as O
from nmcompile.ir.dump import dump
from nmcompile.ir.graph import Graph
from nmcompile.passes import PassContext, run_pipeline
from nmcompile.targets import get_target
from tests.conftest import assert_golden


def network() -> Graph:
    rng = np.random.default_rng(11)
    g = Graph("golden")
    g.add("in", O.Input(shape=(2, 6, 6)))
    g.add("conv", O.Conv2d(weight=rng.normal(0.2, 0.3, (3, 2, 3, 3)), bias=rng.normal(0, 0.1, 3), padding=1))
    g.add("bn", O.BatchNorm(mean=rng.normal(0, 0.1, 3), var=rng.uniform(0.5, 1.5, 3), weight=rng.uniform(0.5, 1.5, 3),
                            bias=rng.normal(0, 0.1, 3)))
    g.add("l1", O.MPBNLIF(shape=(3, 6, 6), beta=0.5, threshold=0.5, bn_mean=0.1, bn_var=1.2, bn_weight=0.9,
                          bn_bias=0.05))
    g.add("pool", O.AvgPool2d(kernel_size=2, stride=2))
    g.add("flat", O.Flatten())
    g.add("fc", O.Linear(weight=rng.normal(0.1, 0.3, (4, 27)), bias=rng.normal(0, 0.1, 4)))
    g.add("l2", O.LIF(shape=(4,), beta=0.8, threshold=0.9))
    g.add("rec", O.Linear(weight=rng.normal(0, 0.2, (4, 4))))
    g.add("out", O.Output(shape=(4,)))
    g.chain("in", "conv", "bn", "l1", "pool", "flat", "fc", "l2", "out")
    g.connect("l2", "rec", recurrent=True)
    g.connect("rec", "l2")
    g.verify()
    return g


@pytest.mark.parametrize("target", ["loihi2", "fpga"])
def test_golden_ir_after_every_pass(target):
    dumps: list[str] = []
    ctx = PassContext(target=get_target(target))
    run_pipeline(network(), list(get_backend(target).pipeline), ctx, print_ir_after_all=True, emit=dumps.append)
    assert len(dumps) == len(get_backend(target).pipeline)
    assert_golden(f"passes/{target}.txt", "".join(dumps))
    assert dumps[-1].split("\n", 1)[1] == dumps[-2].split("\n", 1)[1]  # analyse does not change the graph


def test_golden_input():
    assert_golden("passes/input.txt", dump(network()))
