"""Simulator structure: whole-sequence, step-by-step and streamed evaluation agree; kernels match torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.errors import ShapeError, UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir import simulate as simulate_module
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator, simulate
from tests.conftest import mlp, random_spikes


def stepwise(graph: Graph, x: np.ndarray, chunk: int) -> np.ndarray:
    sim = Simulator(graph)
    sim.start(x.shape[1])
    out = graph.outputs[0]
    parts = [sim.feed(x[t : t + chunk])[out] for t in range(0, x.shape[0], chunk)]
    return np.concatenate(parts)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["subtract", "zero", "none"]),
       st.sampled_from(["immediate", "delayed"]), st.booleans(), st.sampled_from(["LIF", "CubaLIF", "IF"]),
       st.integers(1, 7))
def test_bulk_equals_streamed(seed, mode, timing, recurrent, neuron, chunk):
    rng = np.random.default_rng(seed)
    g = mlp(rng, (5, 7, 3), reset_mode=mode, reset_timing=timing, recurrent=recurrent, neuron=neuron)
    x = random_spikes(rng, 20, 3, 5)
    np.testing.assert_array_equal(simulate(g, x).output, stepwise(g, x, chunk))


def test_recurrent_edge_reads_previous_step():
    g = Graph("r")
    g.add("in", O.Input(shape=(1,)))
    g.add("n", O.IF(shape=(1,), threshold=0.5))
    g.add("rec", O.Linear(weight=[[1.0]]))
    g.add("out", O.Output(shape=(1,)))
    g.chain("in", "n", "out")
    g.connect("n", "rec", recurrent=True)
    g.connect("rec", "n")
    x = np.zeros((5, 1, 1))
    x[0] = 1.0
    # spike at t=0 feeds back 1.0 at t=1, which refires, forever
    np.testing.assert_array_equal(simulate(g, x).output[:, 0, 0], [1, 1, 1, 1, 1])


def test_recurrent_only_projection_that_changes_width_streams(rng):
    """A projection read only through a recurrent edge gets nothing at step 0: zeros of its input's shape (3), not
    of its output's (5). Streamed in chunks and run whole alike."""
    g = Graph("widths")
    g.add("in", O.Input(shape=(4,)))
    g.add("a", O.Linear(weight=rng.normal(size=(3, 4))))
    g.add("n1", O.IF(shape=(3,), threshold=0.5))
    g.add("b", O.Linear(weight=rng.normal(size=(5, 3))))
    g.add("n2", O.IF(shape=(5,), threshold=0.5))
    g.add("c", O.Linear(weight=rng.normal(size=(3, 5))))
    g.add("out", O.Output(shape=(3,)))
    g.chain("in", "a", "n1", "out")
    g.connect("n1", "b", recurrent=True)
    g.chain("b", "n2", "c", "n1")
    x = random_spikes(rng, 12, 2, 4)
    whole = simulate(g, x).output
    assert whole.any()
    np.testing.assert_array_equal(stepwise(g, x, 5), whole)


def test_per_synapse_delays_in_float():
    g = Graph("d")
    g.add("in", O.Input(shape=(2,)))
    g.add("fc", O.Linear(weight=[[1.0, 10.0]], delays=[[0, 2]]))
    g.add("out", O.Output(shape=(1,)))
    g.chain("in", "fc", "out")
    x = np.zeros((4, 1, 2))
    x[0, 0] = [1, 1]
    np.testing.assert_array_equal(simulate(g, x).output[:, 0, 0], [1, 0, 10, 0])
    np.testing.assert_array_equal(stepwise(g, x, 1)[:, 0, 0], [1, 0, 10, 0])


def test_axonal_delay_op():
    g = Graph("d")
    g.add("in", O.Input(shape=(3,)))
    g.add("delay", O.Delay(delay=[0, 1, 3]))
    g.add("out", O.Output(shape=(3,)))
    g.chain("in", "delay", "out")
    x = np.zeros((5, 1, 3))
    x[0, 0] = 1
    expected = np.zeros((5, 3))
    expected[0, 0] = expected[1, 1] = expected[3, 2] = 1
    np.testing.assert_array_equal(simulate(g, x).output[:, 0], expected)


def conv_pool_net(rng) -> tuple[Graph, torch.nn.Module]:
    conv = torch.nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2).double()
    pool = torch.nn.AvgPool2d(2, stride=1, padding=1)
    g = Graph("cnn")
    g.add("in", O.Input(shape=(2, 7, 6)))
    g.add("conv", O.Conv2d(weight=conv.weight.detach().numpy(), bias=conv.bias.detach().numpy(), stride=(2, 1),
                           padding=(1, 0), dilation=(1, 2), groups=2))
    g.add("pool", O.AvgPool2d(kernel_size=2, stride=1, padding=1))
    g.add("flat", O.Flatten())
    g.add("out", O.Output(shape=(4 * 5 * 5,)))
    g.chain("in", "conv", "pool", "flat", "out")
    return g, torch.nn.Sequential(conv, pool, torch.nn.Flatten())


def test_conv_avgpool_flatten_match_torch(rng):
    g, module = conv_pool_net(rng)
    x = rng.normal(size=(3, 2, 2, 7, 6))
    ours = simulate(g, x).output
    theirs = module(torch.from_numpy(x.reshape(6, 2, 7, 6))).detach().numpy().reshape(3, 2, -1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_conv1d_and_sumpool_match_torch(rng):
    conv = torch.nn.Conv1d(3, 2, 3, stride=2, padding=1, dilation=2).double()
    g = Graph("c1")
    g.add("in", O.Input(shape=(3, 9)))
    g.add("conv", O.Conv1d(weight=conv.weight.detach().numpy(), bias=conv.bias.detach().numpy(), stride=2,
                           padding=1, dilation=2))
    g.add("out", O.Output(shape=(2, 4)))
    g.chain("in", "conv", "out")
    x = rng.normal(size=(2, 2, 3, 9))
    np.testing.assert_allclose(simulate(g, x).output,
                               conv(torch.from_numpy(x.reshape(4, 3, 9))).detach().numpy().reshape(2, 2, 2, 4))
    g = Graph("sp")
    g.add("in", O.Input(shape=(1, 4, 4)))
    g.add("pool", O.SumPool2d(kernel_size=2, stride=2))
    g.add("out", O.Output(shape=(1, 2, 2)))
    g.chain("in", "pool", "out")
    x = np.arange(16.0).reshape(1, 1, 1, 4, 4)
    np.testing.assert_array_equal(simulate(g, x).output[0, 0, 0], [[10, 18], [42, 50]])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 2), st.integers(1, 2))
def test_conv2d_shape_rule_matches_torch(h, w, kh, kw, sh, sw, pad, dil):
    conv = torch.nn.Conv2d(1, 1, (kh, kw), stride=(sh, sw), padding=pad, dilation=dil)
    op = O.Conv2d(weight=np.zeros((1, 1, kh, kw)), stride=(sh, sw), padding=pad, dilation=dil)
    try:
        expected = tuple(conv(torch.zeros(1, 1, h, w)).shape[1:])
    except RuntimeError:
        with pytest.raises(ValueError):
            op.out_shape((1, h, w))
        return
    assert op.out_shape((1, h, w)) == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
def test_flatten_shape_rule_matches_torch(shape, data):
    n = len(shape)
    start = data.draw(st.integers(-n, n - 1))
    end = data.draw(st.integers(-n, n - 1))
    op = O.Flatten(start_dim=start, end_dim=end)
    s, e = start % n, end % n
    if s > e:
        with pytest.raises(ValueError):
            op.out_shape(tuple(shape))
        return
    expected = tuple(torch.zeros(1, *shape).flatten(s + 1, e + 1).shape[1:])
    assert op.out_shape(tuple(shape)) == expected


def test_batchnorm_matches_torch_eval(rng):
    bn = torch.nn.BatchNorm1d(4).double().eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.from_numpy(rng.normal(size=4)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2, size=4)))
        bn.weight.copy_(torch.from_numpy(rng.normal(size=4)))
        bn.bias.copy_(torch.from_numpy(rng.normal(size=4)))
    g = Graph("bn")
    g.add("in", O.Input(shape=(4,)))
    g.add("bn", O.BatchNorm(mean=bn.running_mean.numpy(), var=bn.running_var.numpy(), weight=bn.weight.detach().numpy(),
                            bias=bn.bias.detach().numpy(), eps=bn.eps))
    g.add("out", O.Output(shape=(4,)))
    g.chain("in", "bn", "out")
    x = rng.normal(size=(2, 3, 4))
    np.testing.assert_allclose(simulate(g, x).output, bn(torch.from_numpy(x.reshape(6, 4))).detach().numpy()
                               .reshape(2, 3, 4), rtol=1e-13, atol=1e-14)


def test_float32_mode_runs_in_float32(rng):
    g = mlp(rng)
    out = simulate(g, random_spikes(rng, 10, 2, 6), mode="float32").output
    assert out.dtype == np.float32


def test_record_gives_every_layer_and_state(rng):
    g = mlp(rng, neuron="CubaLIF", recurrent=True)
    r = simulate(g, random_spikes(rng, 10, 2, 6), record=True)
    assert set(r.states["lif0"]) == {"v", "i"} and r.states["lif0"]["v"].shape == (10, 2, 8)
    assert r.values["fc1"].shape == (10, 2, 4)


def test_input_errors(rng, monkeypatch):
    g = mlp(rng)
    with pytest.raises(ShapeError, match="expects shape"):
        simulate(g, np.zeros((5, 1, 7)))
    with pytest.raises(ShapeError, match=r"must be \[T, B, \*\(6,\)\] \(steps, samples, values\)"):
        simulate(g, np.zeros(6))
    with pytest.raises(ShapeError, match="NaN or inf"):
        simulate(g, np.full((2, 1, 6), np.nan))
    for mode in ("float32", "float64"):                 # the compiled check of large inputs, made to apply here
        bad = np.zeros((3, 2, 6))
        bad[2, 1, 5] = -np.inf
        with monkeypatch.context() as m:
            m.setattr(simulate_module, "FINITE_JIT_MIN", 0)
            with pytest.raises(ShapeError, match="NaN or inf"):
                simulate(g, bad.astype(mode), mode=mode)
    with pytest.raises(UnsupportedError, match="mode"):
        simulate(g, np.zeros((2, 1, 6)), mode="float16")
    with pytest.raises(UnsupportedError, match="integer"):
        simulate(g, np.zeros((2, 1, 6)), mode="integer")


def test_flattened_input_is_reshaped():
    g = Graph("c")
    g.add("in", O.Input(shape=(1, 2, 2)))
    g.add("flat", O.Flatten())
    g.add("out", O.Output(shape=(4,)))
    g.chain("in", "flat", "out")
    x = np.arange(4.0).reshape(1, 1, 4)
    np.testing.assert_array_equal(simulate(g, x).output, x)


@pytest.mark.parametrize("batch", [1, 7, 300])
def test_float32_chunks_are_bounded_in_bytes_and_equal_in_length(rng, batch, monkeypatch):
    """A float32 run takes as many steps per chunk as keep each node's values under FLOAT32_CHUNK_BYTES (at least
    one), in chunks of equal length: memory stays bounded whatever T, and no short last chunk pays the per-chunk
    costs for a few steps. The chunked run equals the same run in single steps. (Unfused: a dense chain's inner
    nodes hold no values.)"""
    from nmcompile.ir import dense_chain
    from nmcompile.ir.simulate import FLOAT32_CHUNK_BYTES

    monkeypatch.setattr(dense_chain, "MAX_WEIGHT_BYTES", 0)
    g = mlp(rng, (40, 900, 3))
    sim = Simulator(g, "float32")
    per_step = batch * 900 * 4
    longest = max(1, FLOAT32_CHUNK_BYTES // per_step)
    for steps in (1, 5, 100, 10_000, 1_000_003):
        chunk = sim._chunk(steps, batch, False)
        count = -(-steps // chunk)
        assert chunk <= longest and count == -(-steps // longest)
        assert count * chunk - steps < count               # every chunk but the last is full, the last nearly so
    x = random_spikes(rng, 50, batch, 40).astype(np.float32)
    whole = sim.run(x).output
    np.testing.assert_array_equal(whole, Simulator(g, "float32", chunk_steps=1).run(x).output)
    assert sim._chunk(50, batch, False) == min(50, longest)


@pytest.mark.parametrize("mode", ["float32", "float64"])
def test_an_input_of_the_mode_dtype_is_read_in_place_and_left_unchanged(rng, mode):
    """A C-contiguous input already of the mode's dtype is not copied (a batch of N-MNIST-sized frames is hundreds
    of MB); no kernel, fused or not, writes to it."""
    from tests.ir.test_float_chain import conv_graph

    conv = conv_graph(rng, (2, 9, 9), [("conv", 5, 3, 1, 0, "LIF"), ("conv", 7, 3, 2, 1, "LIF"),
                                       ("linear", 4, "IF")], real=True)
    for g in (mlp(rng, (6, 8, 4), recurrent=True), conv):
        x = random_spikes(rng, 9, 3, tuple(g.shapes()[g.inputs[0]])).astype(mode)
        before = x.copy()
        out = Simulator(g, mode, chunk_steps=4).run(x).output
        np.testing.assert_array_equal(x, before)
        assert out.dtype == mode


def test_a_float32_chain_takes_the_fused_chunk_bound():
    """With a fused float32 chain only the nodes outside it hold values, bounded by FUSED_CHUNK_BYTES (a chain loads
    each sample's state once per chunk); without one, FLOAT32_CHUNK_BYTES."""
    from nmcompile.ir.simulate import FLOAT32_CHUNK_BYTES, FUSED_CHUNK_BYTES
    from tests.ir.test_float_chain import conv_graph

    g = conv_graph(np.random.default_rng(0), (2, 34, 34), [("conv", 12, 5, 1, 0, "LIF"), ("linear", 10, "LIF")])
    per_step = 128 * 2 * 34 * 34 * 4                          # the input is the widest node outside the chain
    steps = 1000
    longest = FUSED_CHUNK_BYTES // per_step
    assert Simulator(g, "float32")._chunk(steps, 128, False) == -(-steps // -(-steps // longest))
    unfused = max(1, FLOAT32_CHUNK_BYTES // (128 * 12 * 30 * 30 * 4))     # the convolution's values count then
    assert Simulator(g, "float32", engine="numpy")._chunk(steps, 128, False) == -(-steps // -(-steps // unfused))
