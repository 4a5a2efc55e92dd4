"""fuse_projections and retime: the rewritten float graph computes the same spikes (retime: shifted by L)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.passes import PassError, run_pipeline
from tests.conftest import mlp

SETTINGS = settings(max_examples=25, deadline=None)


def cnn(rng, pool: str, padding: int, size: int = 8) -> Graph:
    """Conv -> LIF -> pool -> Conv -> LIF -> pool -> Flatten -> Linear -> LIF, plus a residual scale path."""
    g = Graph("cnn")
    g.add("in", O.Input(shape=(2, size, size)))
    g.add("c1", O.Conv2d(weight=rng.normal(0.1, 0.5, (4, 2, 3, 3)), bias=rng.normal(0, 0.1, 4), padding=1))
    g.add("l1", O.LIF(shape=(4, size, size), beta=0.8, threshold=0.6))
    pool_op = O.AvgPool2d if pool == "avg" else O.SumPool2d
    g.add("p1", pool_op(kernel_size=2, stride=2))
    h = size // 2
    g.add("c2", O.Conv2d(weight=rng.normal(0.1, 0.4, (3, 4, 3, 3)), bias=None, padding=padding))
    h2 = h + 2 * padding - 2
    g.add("l2", O.LIF(shape=(3, h2, h2), beta=0.9, threshold=0.8, reset_mode="subtract"))
    g.add("p2", pool_op(kernel_size=(2, 1), stride=(2, 1)))
    g.add("flat", O.Flatten())
    n = 3 * (h2 // 2) * h2
    g.add("fc", O.Linear(weight=rng.normal(0.1, 0.5, (5, n)), bias=rng.normal(0, 0.1, 5)))
    g.add("l3", O.IF(shape=(5,), threshold=1.0))
    g.add("out", O.Output(shape=(5,)))
    g.chain("in", "c1", "l1", "p1", "c2", "l2", "p2", "flat", "fc", "l3", "out")
    g.verify()
    return g


def same_spikes(a: Graph, b: Graph, x: np.ndarray, shift: int = 0) -> None:
    """Outputs of b lag a's by `shift`; every neuron layer lags by its own offset tau (0 without retiming)."""
    from nmcompile.passes.retime import offsets

    ra, rb = simulate(a, x, record=True), simulate(b, x, record=True)
    steps = x.shape[0]
    assert any(ra.values[n].any() for n, op in a.nodes.items() if op.role == "neuron"), "vacuous: nothing fired"
    np.testing.assert_array_equal(rb.output[shift:], ra.output[: steps - shift])
    tau = offsets(a)[1] if shift else {}
    for name, op in a.nodes.items():
        if op.role == "neuron" and name in rb.values:
            lag = tau.get(name, 0)
            after = rb.values[name][lag:]   # a layer made flat by a sparse projection keeps its C-order values
            np.testing.assert_array_equal(after, ra.values[name][: steps - lag].reshape(after.shape), err_msg=name)


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from(["avg", "sum"]), st.sampled_from([0, 1]))
def test_fuse_projections_keeps_spikes(seed, pool, padding):
    rng = np.random.default_rng(seed)
    g = cnn(rng, pool, padding)
    fused = run_pipeline(g, ["fuse_projections"])
    assert not fused.of_kind("AvgPool2d", "SumPool2d", "Scale")
    x = (rng.random((25, 3, 2, 8, 8)) < 0.4).astype(np.float64)
    same_spikes(g, fused, x)


def test_neuron_to_neuron_paths_get_identity_projections():
    g = Graph("skip")
    g.add("in", O.Input(shape=(4,)))
    g.add("a", O.IF(shape=(4,), threshold=0.5))
    g.add("s", O.Scale(scale=[1.0, 2.0, 0.5, 1.5]))
    g.add("b", O.LIF(shape=(4,), beta=0.5, threshold=0.9))
    g.add("out", O.Output(shape=(4,)))
    g.chain("in", "a", "s", "b", "out")
    fused = run_pipeline(g, ["fuse_projections"])
    kinds = [fused.node(n).kind for n in fused.order()]
    assert kinds == ["Input", "Linear", "IF", "Linear", "LIF", "Output"]
    same_spikes(g, fused, (np.random.default_rng(0).random((20, 2, 4)) < 0.5).astype(float))


@SETTINGS
@given(st.integers(0, 10_000), st.booleans(), st.sampled_from(["LIF", "CubaLIF", "IF"]))
def test_retime_shifts_by_the_latency(seed, recurrent, neuron):
    rng = np.random.default_rng(seed)
    g = mlp(rng, (6, 9, 7, 4), recurrent=recurrent, neuron=neuron, reset_mode="subtract")
    retimed = run_pipeline(g, ["fuse_projections", "retime"])
    assert retimed.latency == 3 and not any(e.recurrent for e in retimed.edges)
    x = (rng.random((30, 3, 6)) < 0.5).astype(np.float64)
    same_spikes(g, retimed, x, shift=3)


def test_retime_balances_a_skip_connection():
    rng = np.random.default_rng(4)
    g = Graph("skip")
    g.add("in", O.Input(shape=(5,)))
    g.add("f1", O.Linear(weight=rng.normal(0.3, 0.5, (5, 5))))
    g.add("a", O.LIF(shape=(5,), beta=0.7, threshold=0.5))
    g.add("f2", O.Linear(weight=rng.normal(0.3, 0.5, (5, 5))))
    g.add("b", O.LIF(shape=(5,), beta=0.7, threshold=0.5))
    g.add("f3", O.Linear(weight=rng.normal(0.3, 0.5, (5, 5))))
    g.add("skip", O.Linear(weight=rng.normal(0.3, 0.5, (5, 5))))
    g.add("c", O.LIF(shape=(5,), beta=0.7, threshold=0.5))
    g.add("out", O.Output(shape=(5,)))
    g.chain("in", "f1", "a", "f2", "b", "f3", "c", "out")
    g.connect("a", "skip")
    g.connect("skip", "c")
    retimed = run_pipeline(g, ["retime"])
    assert retimed.latency == 3
    def delay_between(src: str, dst: str) -> int:
        total, node = 0, dst
        while node != src:
            (edge,) = [e for e in retimed.in_edges(node) if node != dst or e.src.startswith(("skip", "c."))]
            node = edge.src
            if retimed.node(node).kind == "Delay":
                total += int(retimed.node(node).delay)
        return total

    assert delay_between("a", "c") == 2  # one step for the projection, one to wait for the longer path
    assert [int(retimed.node(e.src).delay) for e in retimed.in_edges("f3")] == [1]
    same_spikes(g, retimed, (rng.random((30, 2, 5)) < 0.5).astype(float), shift=3)


def test_loop_with_two_projections_cannot_be_retimed():
    rng = np.random.default_rng(5)
    g = Graph("loop")
    g.add("in", O.Input(shape=(3,)))
    g.add("f", O.Linear(weight=np.eye(3)))
    g.add("a", O.LIF(shape=(3,), beta=0.5))
    g.add("g1", O.Linear(weight=rng.normal(size=(3, 3))))
    g.add("b", O.LIF(shape=(3,), beta=0.5))
    g.add("g2", O.Linear(weight=rng.normal(size=(3, 3))))
    g.add("out", O.Output(shape=(3,)))
    g.chain("in", "f", "a", "g1", "b", "out")
    g.connect("b", "g2", recurrent=True)
    g.connect("g2", "a")
    with pytest.raises(PassError, match="pass 'retime' failed .*recurrent loop through .* add more than one step"):
        run_pipeline(g, ["retime"])
