"""fold_bn and fold_mpbn: spike-identical before and after, in float64, on random networks (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.passes import PassContext, PassError, run_pipeline

SETTINGS = settings(max_examples=30, deadline=None)


def bn_op(rng, c):
    return O.BatchNorm(mean=rng.normal(0, 0.3, c), var=rng.uniform(0.3, 2.0, c), weight=rng.normal(1.0, 0.7, c),
                       bias=rng.normal(0, 0.3, c), eps=1e-5)


def conv_bn_net(rng, order: str, padding: int) -> Graph:
    g = Graph("bn")
    g.add("in", O.Input(shape=(3, 6, 6)))
    conv = O.Conv2d(weight=rng.normal(0, 0.6, (4, 3, 3, 3)), bias=rng.normal(0, 0.2, 4), padding=padding)
    if order == "after":
        g.add("conv", conv)
        g.add("bn", bn_op(rng, 4))
        g.chain("in", "conv", "bn")
        last = "bn"
    else:
        g.add("bn", bn_op(rng, 3))
        g.add("conv", conv)
        g.chain("in", "bn", "conv")
        last = "conv"
    shape = g.shapes()[last]
    g.add("lif", O.LIF(shape=shape, beta=0.8, threshold=0.7))
    g.add("flat", O.Flatten())
    n = int(np.prod(shape))
    g.add("fc", O.Linear(weight=rng.normal(0, 0.3, (5, n)), bias=None))
    g.add("bn2", bn_op(rng, 5))
    g.add("lif2", O.LIF(shape=(5,), beta=0.9, reset_mode="subtract"))
    g.add("out", O.Output(shape=(5,)))
    g.chain(last, "lif", "flat", "fc", "bn2", "lif2", "out")
    g.verify()
    return g


def spikes_equal(before: Graph, after: Graph, rng, shape) -> None:
    x = (rng.random((30, 4, *shape)) < 0.4).astype(np.float64)
    a, b = simulate(before, x, record=True), simulate(after, x, record=True)
    np.testing.assert_array_equal(a.output, b.output)
    active = 0
    for name, op in after.nodes.items():
        if op.role == "neuron" and name in a.values:
            np.testing.assert_array_equal(a.values[name], b.values[name], err_msg=name)
            active += int(a.values[name].any())
    assert active, "no neuron layer fired; the comparison would be vacuous"


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from([("after", 0), ("after", 1), ("before", 0)]))
def test_fold_bn_is_spike_identical(seed, case):
    rng = np.random.default_rng(seed)
    g = conv_bn_net(rng, *case)
    folded = run_pipeline(g, ["fold_bn"])
    assert not folded.of_kind("BatchNorm")
    spikes_equal(g, folded, rng, (3, 6, 6))


def test_fold_bn_refuses_padded_border():
    g = conv_bn_net(np.random.default_rng(0), "before", 1)
    with pytest.raises(PassError, match="pass 'fold_bn' failed \\(the first pass\\): BatchNorm 'bn' sits before "
                                        "the zero-padded convolution 'conv'"):
        run_pipeline(g, ["fold_bn"])


def mpbn_net(rng, reset: str, elementwise: bool, negative: bool, dead: bool) -> Graph:
    g = Graph("mpbn")
    g.add("in", O.Input(shape=(2, 5, 5)))
    g.add("conv", O.Conv2d(weight=rng.normal(0, 0.8, (3, 2, 3, 3)), bias=rng.normal(0, 0.1, 3), padding=1))
    shape_c = (3, 1, 1)
    gamma = rng.uniform(0.5, 1.5, shape_c)
    if negative:
        gamma[1] = -gamma[1]
    if dead:
        gamma[2] = 0.0
    g.add("mp", O.MPBNLIF(shape=(3, 5, 5), beta=0.25, threshold=0.5, reset_mode="zero",
                          bn_mean=rng.normal(0, 0.3, shape_c), bn_var=rng.uniform(0.5, 2, shape_c), bn_weight=gamma,
                          bn_bias=rng.normal(0, 0.2, shape_c)))
    g.add("flat", O.Flatten())
    g.add("fc", O.Linear(weight=rng.normal(0, 0.4, (6, 75)), bias=rng.normal(0, 0.1, 6)))
    g.add("rec", O.Linear(weight=rng.normal(0, 0.3, (6, 6))))
    n = 6
    bshape = (n,)
    gamma2 = rng.uniform(0.5, 1.5, bshape)
    if negative and reset == "zero":
        gamma2[::2] *= -1
    g.add("mp2", O.MPBNLIF(shape=(n,), beta=rng.uniform(0.5, 1.0, n), threshold=0.3, reset_mode=reset,
                           reset_amount=rng.uniform(0.5, 1.5, n), bn_mean=rng.normal(0, 0.3, bshape),
                           bn_var=rng.uniform(0.5, 2, bshape), bn_weight=gamma2, bn_bias=rng.normal(0, 0.2, bshape)))
    g.add("out", O.Output(shape=(n,)))
    g.chain("in", "conv", "mp", "flat", "fc", "mp2", "out")
    g.connect("mp2", "rec", recurrent=True)
    g.connect("rec", "mp2")
    g.verify()
    return g


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from(["zero", "subtract"]), st.booleans(), st.booleans())
def test_fold_mpbn_is_spike_identical(seed, reset, negative, dead):
    rng = np.random.default_rng(seed)
    g = mpbn_net(rng, reset, False, negative, dead)
    ctx = PassContext()
    folded = run_pipeline(g, ["fold_mpbn"], ctx)
    assert not folded.of_kind("MPBNLIF") and len(folded.of_kind("LIF")) == 2
    spikes_equal(g, folded, rng, (2, 5, 5))
    assert "thresholds folded" in " ".join(ctx.reports["fold_mpbn"].lines())


def test_fold_mpbn_negative_gamma_with_subtract_reset_is_refused():
    rng = np.random.default_rng(1)
    g = mpbn_net(rng, "subtract", False, False, False)
    op = g.node("mp2")
    g.replace_node("mp2", op.replace(bn_weight=-op.bn_weight))
    with pytest.raises(PassError, match="'mp2' resets by subtraction and has gamma < 0 for 6 neuron"):
        run_pipeline(g, ["fold_mpbn"])


def test_fold_mpbn_elementwise_negative_gamma_on_conv_is_refused():
    rng = np.random.default_rng(2)
    g = mpbn_net(rng, "zero", False, False, False)
    op = g.node("mp")
    gamma = np.ones((3, 5, 5))
    gamma[0, 0, 0] = -1.0
    g.replace_node("mp", op.replace(bn_weight=gamma))
    with pytest.raises(PassError, match="element-wise MPBN cannot be folded into shared kernels"):
        run_pipeline(g, ["fold_mpbn"])


def test_unknown_pass_and_failing_pass_are_named():
    g = mpbn_net(np.random.default_rng(3), "zero", False, False, False)
    with pytest.raises(UnsupportedError, match="unknown pass 'fold_everything'"):
        run_pipeline(g, ["fold_everything"])
