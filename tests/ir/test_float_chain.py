"""Fused float32 chains (nmcompile.ir.float_chain): which nodes form one, and their results.

With integer-valued weights, biases and inputs every sum of the chain is exact in float32 in any order, and the neuron
updates are the same float32 operations, so a fused run must equal the unfused engines bit for bit, spikes and
states (random geometries: strides, padding, channel counts across 16 and 64 lanes, per-channel and per-neuron
parameters, every reset mode and timing, both comparisons, negative thresholds that make every real neuron fire, graded
inputs, chunks and streaming). With real weights the summation order differs, and rare spikes may flip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.ir import dense_chain, float_chain, window_table
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator


def neuron(rng: np.random.Generator, shape: tuple[int, ...], kind: str, per_neuron: bool):
    """A LIF or IF layer of `shape` with random parameters (per channel, or per neuron)."""
    channels = shape[0]
    grid = shape if per_neuron else (channels, *(1,) * (len(shape) - 1))
    reset_mode = str(rng.choice(["zero", "subtract", "none"]))
    timings = ["immediate", "delayed"] + (["snntorch_immediate"] if reset_mode == "subtract" else [])
    params = {"threshold": rng.choice([-0.5, 0.5, 1.0, 2.5, 4.0], grid),
              "reset_mode": reset_mode, "reset_timing": str(rng.choice(timings)),
              "compare": str(rng.choice([">", ">="])),
              "v_reset": rng.choice([0.0, -0.25], grid),
              "gain": rng.choice([1.0, 0.5, 2.0], grid),
              "bias": rng.choice([0.0, 0.25, -0.5], grid),
              "v_init": rng.choice([0.0, 0.5], grid)}
    if kind == "LIF":
        return O.LIF(shape=shape, beta=rng.choice([0.9, 0.5, 1.0], grid), **params)
    return O.IF(shape=shape, **params)


def conv_graph(rng: np.random.Generator, in_shape, layers, *, real: bool = False, per_neuron: bool = False) -> Graph:
    """input -> (Conv2d(c_out, k, stride, pad) -> LIF/IF) per conv layer -> Flatten -> (Linear -> LIF/IF) per
    linear layer -> output. `layers`: ("conv", c_out, k, stride, pad, kind) and ("linear", n, kind) items."""
    g = Graph("float_chain")
    prev = g.add("in", O.Input(shape=in_shape))
    shape = tuple(in_shape)
    for index, layer in enumerate(layers):
        if layer[0] == "conv":
            _, c_out, k, stride, pad, kind = layer
            size = (c_out, shape[0], k, k)
            weight = rng.normal(0, 0.6, size) if real else rng.integers(-3, 4, size)
            bias = rng.integers(-2, 3, c_out).astype(float) if rng.random() < 0.5 else None
            op = O.Conv2d(weight=weight.astype(float), bias=bias, stride=(stride, stride), padding=(pad, pad))
        else:
            _, n, kind = layer
            if len(shape) > 1:
                flat = g.add(f"flat{index}", O.Flatten())
                g.connect(prev, flat)
                prev, shape = flat, (int(np.prod(shape)),)
            weight = rng.normal(0, 0.4, (n, shape[0])) if real else rng.integers(-2, 3, (n, shape[0]))
            bias = rng.integers(-1, 2, n).astype(float) if rng.random() < 0.5 else None
            op = O.Linear(weight=weight.astype(float), bias=bias)
        projection = g.add(f"p{index}", op)
        g.connect(prev, projection)
        shape = tuple(g.shapes()[projection])
        prev = g.add(f"n{index}", neuron(rng, shape, kind, per_neuron))
        g.connect(projection, prev)
    g.connect(prev, g.add("out", O.Output(shape=shape)))
    g.verify()
    return g


def inputs(rng: np.random.Generator, steps: int, batch: int, shape, rate: float, graded: bool) -> np.ndarray:
    x = (rng.random((steps, batch, *shape)) < rate).astype(np.float32)
    if graded:
        x *= rng.integers(-2, 4, x.shape).astype(np.float32)
    return x


def assert_fused_equals_unfused(g: Graph, x: np.ndarray, chunk_steps: int | None = None) -> None:
    """The fused float32 run equals the numpy engine's float32 run: outputs and every neuron's final v, bit for bit."""
    fused = Simulator(g, "float32", chunk_steps=chunk_steps)
    assert fused._chains(), "no chain was formed"
    reference = Simulator(g, "float32", engine="numpy")
    fused_outputs, reference_outputs = fused.run(x).outputs, reference.run(x).outputs
    for name, value in reference_outputs.items():
        np.testing.assert_array_equal(fused_outputs[name], value, err_msg=name)
    for name, kernel in fused._kernels().items():
        if hasattr(kernel, "v") and kernel.v is not None:
            np.testing.assert_array_equal(np.asarray(kernel.v), reference._kernels()[name].v, err_msg=name)


def test_a_conv_stack_with_its_readout_is_one_chain():
    g = conv_graph(np.random.default_rng(0), (2, 12, 12),
                   [("conv", 12, 5, 1, 0, "LIF"), ("conv", 32, 3, 2, 1, "IF"), ("linear", 10, "LIF")])
    chains = Simulator(g, "float32")._chains()
    assert list(chains) == ["p0"]
    found = chains["p0"]
    assert found.source == "in" and found.last == "n2" and found.output == "out"
    assert found.followers == ["n0", "p1", "n1", "flat2", "p2", "n2"]
    assert list(found.geometry[:, float_chain.KIND]) == [float_chain.PLANES, float_chain.GATHER, float_chain.EVENTS]
    for mode, engine in (("float64", "compiled"), ("float32", "numpy")):
        assert Simulator(g, mode, engine=engine)._chains() == {}


@st.composite
def conv_chains(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    c_in = draw(st.integers(1, 3))
    size = draw(st.integers(9, 14))
    side, layers = size, []
    for _ in range(draw(st.integers(1, 2))):
        c_out = draw(st.sampled_from([1, 5, 16, 17, 40, 70]))
        stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 2))
        k = draw(st.integers(1, min(4, side + 2 * pad)))          # a kernel that fits the padded input
        layers.append(("conv", c_out, k, stride, pad, draw(st.sampled_from(["LIF", "IF"]))))
        side = (side + 2 * pad - k) // stride + 1
    for _ in range(draw(st.integers(0, 2))):
        layers.append(("linear", draw(st.integers(1, 40)), draw(st.sampled_from(["LIF", "IF"]))))
    return (seed, (c_in, size, size), layers, draw(st.booleans()), draw(st.sampled_from([0.05, 0.3])),
            draw(st.booleans()), draw(st.integers(1, 3)), draw(st.sampled_from([None, 4])))


@settings(max_examples=40, deadline=None)
@given(conv_chains())
def test_integer_weights_give_the_unfused_bits(case):
    seed, in_shape, layers, per_neuron, rate, graded, batch, chunk = case
    rng = np.random.default_rng(seed)
    g = conv_graph(rng, in_shape, layers, per_neuron=per_neuron)
    assert_fused_equals_unfused(g, inputs(rng, 9, batch, in_shape, rate, graded), chunk)


@pytest.mark.parametrize("sizes", [(30, 20, 10), (5, 70, 33, 16)])
def test_dense_layers_after_a_convolution(sizes):
    """Dense layers fuse behind a convolution (dense layers alone form a dense chain instead: test_dense_chain.py)."""
    rng = np.random.default_rng(sum(sizes))
    layers = [("linear", n, kind) for n, kind in zip(sizes[1:], ["LIF", "IF", "LIF"], strict=False)]
    alone = conv_graph(rng, (sizes[0],), layers)
    chains = list(Simulator(alone, "float32")._chains().values())
    assert len(chains) == 1 and isinstance(chains[0], dense_chain.DenseChain)
    g = conv_graph(rng, (2, 6, 6), [("conv", sizes[0], 3, 1, 0, "LIF"), *layers])
    assert Simulator(g, "float32")._chains()["p0"].last == f"n{len(layers)}"
    assert_fused_equals_unfused(g, inputs(rng, 20, 3, (2, 6, 6), 0.3, graded=True))


def test_every_real_neuron_firing_lists_no_padded_lane():
    """Thresholds below any drive: every real neuron fires every step; the padded lanes (12 -> 16 channels) must
    never fire, or the next layer would read events of channels that do not exist."""
    rng = np.random.default_rng(3)
    g = Graph("all fire")
    prev = g.add("in", O.Input(shape=(1, 8, 8)))
    for index, c_out in enumerate((12, 3)):
        conv = g.add(f"p{index}", O.Conv2d(weight=np.ones((c_out, 1 if index == 0 else 12, 3, 3))))
        g.connect(prev, conv)
        shape = tuple(g.shapes()[conv])
        prev = g.add(f"n{index}", O.IF(shape=shape, threshold=-1.0, reset_mode="none"))
        g.connect(conv, prev)
    g.connect(prev, g.add("out", O.Output(shape=shape)))
    g.verify()
    x = inputs(rng, 5, 2, (1, 8, 8), 0.5, graded=False)
    assert_fused_equals_unfused(g, x)
    assert Simulator(g, "float32").run(x).output.min() == 1.0


def test_streamed_chunks_and_repeated_runs_equal_one_run():
    rng = np.random.default_rng(4)
    g = conv_graph(rng, (2, 10, 10), [("conv", 8, 3, 1, 1, "LIF"), ("conv", 20, 3, 2, 0, "LIF"), ("linear", 7, "IF")])
    x = inputs(rng, 30, 4, (2, 10, 10), 0.2, graded=False)
    sim = Simulator(g, "float32")
    whole = sim.run(x).output
    np.testing.assert_array_equal(sim.run(x).output, whole)          # a second run starts from v_init again
    sim.start(4)
    streamed = np.concatenate([sim.feed(x[t:t + 7])["out"] for t in range(0, 30, 7)])
    np.testing.assert_array_equal(streamed, whole)
    np.testing.assert_array_equal(Simulator(g, "float32", chunk_steps=1).run(x).output, whole)
    np.testing.assert_array_equal(Simulator(g, "float32").run(x[:, 2:3]).output, whole[:, 2:3])  # samples alone


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("tabled", [True, False])
def test_a_chain_checks_its_input_for_nan_and_inf(value, tabled, monkeypatch):
    """A float32 input only chains read is checked by the chain as it reads it (no separate pass): a step that is
    not binary is checked before its products; NaN or inf anywhere, in any chunk, at any batch, is the same one-line
    error as elsewhere. Without the window table every step is checked; graded finite values still run."""
    from nmcompile.errors import ShapeError

    rng = np.random.default_rng(9)
    g = conv_graph(rng, (2, 8, 8), [("conv", 4, 3, 1, 1, "LIF"), ("linear", 3, "LIF")])
    if not tabled:
        monkeypatch.setattr(window_table, "TABLE_MAX_BYTES", 0)
    x = inputs(rng, 20, 5, (2, 8, 8), 0.3, graded=False)
    sim = Simulator(g, "float32", chunk_steps=6)
    assert sim._chain_inputs() == {"in"}
    assert sim._chains()["p0"].geometry[0, float_chain.ROW_TABLE] == tabled
    clean = sim.run(x).output
    for t, b in ((0, 0), (13, 4), (19, 2)):
        bad = x.copy()
        bad[t, b, 1, 3, 4] = value
        with pytest.raises(ShapeError, match="input 'in' holds NaN or inf"):
            sim.run(bad)
    np.testing.assert_array_equal(sim.run(x).output, clean)          # the next run starts afresh
    graded = x * np.float32(1.5)
    assert_fused_equals_unfused(g, graded)
    bad = x.copy()
    bad[13, 4, 1, 3, 4] = value
    sim.start(5)                                                      # a stream keeps the separate pass
    sim.feed(bad[:6])
    with pytest.raises(ShapeError, match="input 'in' holds NaN or inf"):
        sim.feed(bad[6:])
    wide = np.ascontiguousarray(np.concatenate([bad, bad], axis=3))[:, :, :, :8]   # not contiguous: the pass
    with pytest.raises(ShapeError, match="input 'in' holds NaN or inf"):
        sim.run(wide)


def test_a_float64_input_beyond_float32_is_not_refused_by_the_chain():
    """A float64 input is checked before its cast to float32 (as without chains): a finite value beyond float32's
    range becomes inf there and runs, fused or recorded alike."""
    rng = np.random.default_rng(10)
    g = conv_graph(rng, (2, 8, 8), [("conv", 4, 3, 1, 1, "LIF"), ("linear", 3, "LIF")])
    x = inputs(rng, 6, 2, (2, 8, 8), 0.3, graded=False).astype(np.float64)
    x[2, 1, 0, 4, 4] = 1e39
    sim = Simulator(g, "float32")
    np.testing.assert_array_equal(sim.run(x).output, sim.run(x, record=True).output)


def test_real_weights_flip_rare_spikes_only():
    """Real weights: another summation order than the unfused engine's, so a spike may flip where a sum lands
    within rounding of the threshold: rare."""
    rng = np.random.default_rng(5)
    layers = [("conv", 12, 5, 1, 0, "LIF"), ("conv", 32, 5, 2, 0, "LIF"), ("linear", 10, "LIF")]
    g = conv_graph(rng, (2, 16, 16), layers, real=True)
    x = inputs(rng, 40, 4, (2, 16, 16), 0.15, graded=False)
    fused = Simulator(g, "float32").run(x).output
    reference = Simulator(g, "float64").run(x).output
    assert fused.sum() > 0
    assert np.count_nonzero(fused != reference) <= 0.01 * fused.size


def test_what_does_not_fuse():
    rng = np.random.default_rng(6)
    g = conv_graph(rng, (2, 10, 10), [("conv", 8, 3, 1, 0, "LIF"), ("conv", 8, 3, 1, 0, "LIF"), ("linear", 5, "LIF")])
    g.connect("n0", g.add("tap", O.Output(shape=(8, 8, 8))))            # n0 read twice: the chain ends there
    chains = Simulator(g, "float32")._chains()
    assert chains["p0"].last == "n0" and chains["p1"].last == "n2"
    assert_fused_equals_unfused(g, inputs(rng, 8, 2, (2, 10, 10), 0.3, graded=False))

    dilated = Graph("dilated")
    prev = dilated.add("in", O.Input(shape=(2, 12, 12)))
    for index, dilation in enumerate(((1, 1), (2, 2))):
        conv = dilated.add(f"p{index}", O.Conv2d(weight=rng.integers(-2, 3, (4, 2 if index == 0 else 4, 3, 3)),
                                                 dilation=dilation))
        dilated.connect(prev, conv)
        prev = dilated.add(f"n{index}", O.LIF(shape=tuple(dilated.shapes()[conv]), beta=0.9))
        dilated.connect(conv, prev)
    dilated.connect(prev, dilated.add("out", O.Output(shape=tuple(dilated.shapes()[prev]))))
    chains = Simulator(dilated, "float32")._chains()
    assert chains["p0"].last == "n0" and "p1" not in chains     # no dilation after the first layer; alone: unfused
    assert_fused_equals_unfused(dilated, inputs(rng, 8, 2, (2, 12, 12), 0.3, graded=False))

    cuba = Graph("cuba")                                                 # a synaptic current: not fused
    prev = cuba.add("in", O.Input(shape=(1, 6, 6)))
    cuba.connect(prev, cuba.add("conv", O.Conv2d(weight=np.ones((4, 1, 3, 3)))))
    cuba.connect("conv", cuba.add("n", O.CubaLIF(shape=(4, 4, 4), alpha=0.5, beta=0.9)))
    cuba.connect("n", cuba.add("out", O.Output(shape=(4, 4, 4))))
    assert Simulator(cuba, "float32")._chains() == {}


def test_a_cpu_without_avx512_takes_the_portable_listing(tmp_path):
    """Compiled for a CPU without AVX-512 (NUMBA_CPU_NAME=generic, a fresh cache), the neuron update lists its
    events with LLVM's masked compress-store (expanded into scalar code) and the vector sums split into narrower
    registers: the same bits."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys, numpy as np\n"
        "sys.path.insert(0, 'tests/ir')\n"
        "from nmcompile.ir import vector_ops\n"
        "assert not vector_ops.REGISTER_COMPRESS\n"
        "from test_float_chain import conv_graph, inputs, assert_fused_equals_unfused\n"
        "rng = np.random.default_rng(7)\n"
        "g = conv_graph(rng, (2, 10, 10), [('conv', 12, 3, 1, 1, 'LIF'), ('conv', 20, 3, 2, 0, 'IF'),"
        " ('linear', 6, 'LIF')])\n"
        "assert_fused_equals_unfused(g, inputs(rng, 12, 3, (2, 10, 10), 0.3, graded=True))\n"
        "print('same')\n")
    env = {**os.environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "same"


def test_neuron_flags_name_only_updates_that_exist():
    """neuron_vector's switch runs no loop for a flags word outside its 36 variants: neuron_flags refuses to make
    one."""
    from nmcompile.ir import jit
    from nmcompile.ir.neuron_vector import neuron_flags

    assert neuron_flags(True, False, jit.RESET_ZERO, jit.TIMING_SNNTORCH, True) > 0
    for reset_mode, timing in ((3, jit.TIMING_IMMEDIATE), (jit.RESET_ZERO, 3)):
        with pytest.raises(ValueError, match="no neuron update"):
            neuron_flags(False, False, reset_mode, timing, False)


def test_binary_input_steps_take_the_first_convolutions_table():
    """A DVS-like first layer (2 channels, 5 wide) has a window table (nmcompile.ir.window_table) and a 3-channel
    one has not; a run whose steps are binary in some samples and graded in others gives the unfused bits (integer
    weights: exact in either order)."""
    rng = np.random.default_rng(3)
    for channels, has_table in ((2, 1), (3, 0)):
        g = conv_graph(rng, (channels, 12, 12), [("conv", 12, 5, 1, 1, "LIF"), ("linear", 10, "LIF")])
        chain = Simulator(g, "float32")._chains()["p0"]
        assert chain.geometry[0, float_chain.ROW_TABLE] == has_table
        x = inputs(rng, 8, 3, (channels, 12, 12), 0.2, False)
        x[::2, 1] *= rng.integers(-2, 4, x[::2, 1].shape).astype(np.float32)    # sample 1: every other step graded
        assert_fused_equals_unfused(g, x)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(0, 2), st.integers(1, 4),
       st.sampled_from([3, 12, 40]), st.sampled_from([5, 16, 32, 40, 70]), st.sampled_from([0.05, 0.6]))
def test_gathered_sums_follow_the_documented_order(seed, stride, pad, k, c_in, c_out, rate):
    """The inner convolution's sums with real weights, bit for bit, against float32 sums taken in the documented
    order: from the bias, rows of the window in order, each row's events in (column, channel) order. Channel counts
    across 1 to 5 vectors of lanes (blocks of 4), stride and padding, and rows of more than 16 events (rate 0.6)."""
    from nmcompile.ir.float_chain import _gathered_products

    rng = np.random.default_rng(seed)
    side = 9
    g = conv_graph(rng, (1, side, side), [("conv", c_in, 1, 1, 0, "IF"), ("conv", c_out, k, stride, pad, "IF")],
                   real=True)
    chain = Simulator(g, "float32")._chains()["p0"]
    row = chain.geometry[1]
    assert row[float_chain.KIND] == float_chain.GATHER
    in_lanes, lanes = int(chain.geometry[0, float_chain.LANES]), int(row[float_chain.LANES])
    out_h, out_w = int(row[float_chain.OUT_H]), int(row[float_chain.OUT_W])
    fire = rng.random((side * side, c_in)) < rate
    positions, channels = np.nonzero(fire)
    count = len(positions)
    listed = np.zeros(side * side * in_lanes + 16, np.int32)
    listed[:count] = (positions << 16) | channels
    starts = np.searchsorted(positions, np.arange(side * side + 1)).astype(np.int32)
    sums = np.full(out_h * out_w * lanes + 16, np.nan, np.float32)
    scratch = [np.zeros(side * side * in_lanes + 16, np.int32) for _ in range(2)]
    _gathered_products(sums, np.int64(0), chain.weights[1], chain.biases[1], row, listed, np.int64(count), starts,
                       *scratch)

    op = g.node("p1")
    weight, bias = np.asarray(op.weight, np.float32), np.asarray(chain.biases[1][:c_out])
    expected = np.empty((out_h, out_w, c_out), np.float32)
    for oy in range(out_h):
        for ox in range(out_w):
            total = bias.copy()
            for ky in range(k):
                y = oy * stride - pad + ky
                for x in range(max(ox * stride - pad, 0), min(ox * stride - pad + k, side)):
                    if 0 <= y < side:
                        for c in np.flatnonzero(fire[y * side + x]):
                            total = total + weight[:, c, ky, x - (ox * stride - pad)]     # float32, in order
            expected[oy, ox] = total
    got = sums[:out_h * out_w * lanes].reshape(out_h, out_w, lanes)
    np.testing.assert_array_equal(got[:, :, :c_out], expected)      # == : an added exact zero may turn -0 into 0
