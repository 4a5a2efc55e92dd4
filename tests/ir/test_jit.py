"""The compiled engine (nmcompile.ir.jit) equals the numpy engine bit for bit: neuron updates over random and extreme
states and inputs (int64 wrap, 24-bit wrap of u, clipping of v, every option), event-driven integer products, and
whole networks streamed in chunks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.ir import arraymath, fixed
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.kernels import FloatNeuron, IntegerNeuron
from nmcompile.ir.simulate import Simulator, simulate
from tests.conftest import mlp, random_spikes

M = fixed.UV_LIMIT
INT64 = np.iinfo(np.int64)


def both_engines(kernel_of, x: np.ndarray, batch: int):
    """(outputs, recorded states, step-by-step outputs, final states) per engine; run() without recording (the
    compiled engine's plain loop, where it applies) must give the recorded run's outputs."""
    results = {}
    for engine in ("numpy", "compiled"):
        kernel = kernel_of()
        kernel.set_engine(engine)
        out = kernel.run(x, record=True)
        states = {k: v.copy() for k, v in kernel.states().items()}
        assert_same_bits(kernel.run(x), out)
        kernel.reset(batch)
        stepped = np.stack([kernel.step(x[t]) for t in range(x.shape[0])])
        final = {k: np.array(getattr(kernel, k)) for k in kernel.state_names}
        results[engine] = (out, states, stepped, final)
    return results


def assert_same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8)) if a.size else True


def assert_engines_agree(results) -> None:
    numpy_side, compiled_side = results["numpy"], results["compiled"]
    assert_same_bits(numpy_side[0], compiled_side[0])
    assert numpy_side[1].keys() == compiled_side[1].keys()
    for key in numpy_side[1]:
        assert_same_bits(numpy_side[1][key], compiled_side[1][key])
    assert_same_bits(numpy_side[2], compiled_side[2])
    for key in numpy_side[3]:
        assert_same_bits(numpy_side[3][key], compiled_side[3][key])


# -- integer neuron -------------------------------------------------------------------------------------------
per_neuron = st.integers(1, 5)
extreme_int = st.sampled_from([0, 1, -1, M - 1, M, M + 1, -M, -M + 1, -M - 1, 2 * M, INT64.max, INT64.min,
                               INT64.max >> 6, -(INT64.max >> 6), 1 << 57, -(1 << 57)])


@st.composite
def integer_layers(draw):
    n = draw(per_neuron)
    ints = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))  # noqa: E731
    spiking = draw(st.booleans())
    timing = draw(st.sampled_from(["immediate", "delayed"]))
    refractory = draw(st.integers(0, 3)) if timing == "immediate" and spiking else 0
    neuron = O.QNeuron(
        shape=(n,), du=ints(-1, 4095), dv=ints(0, 4096), vth=ints(0, (1 << 17) - 1),
        bias_mant=ints(-(1 << 12), (1 << 12) - 1), bias_exp=ints(-3, 10),
        compare=draw(st.sampled_from([">", ">="])), reset_mode=draw(st.sampled_from(["zero", "subtract", "none"])),
        reset_timing=timing, refractory=refractory, spiking=spiking,
        u_init=ints(-(M - 1), M - 1), v_init=ints(-(M - 1), M - 1))
    steps, batch = draw(st.integers(1, 12)), draw(st.integers(1, 3))
    scale = draw(st.sampled_from(["spikes", "small", "large", "extreme"]))
    size = (steps, batch, n)
    if scale == "extreme":
        values = draw(st.lists(st.one_of(extreme_int, st.integers(INT64.min, INT64.max)),
                               min_size=steps * batch * n, max_size=steps * batch * n))
        x = np.array(values, dtype=np.int64).reshape(size)
    else:
        top = {"spikes": 1, "small": 300, "large": 1 << 20}[scale]
        seed = draw(st.integers(0, 2**32 - 1))
        x = np.random.default_rng(seed).integers(-top if scale != "spikes" else 0, top + 1, size)
    return neuron, x


@settings(max_examples=120, deadline=None)
@given(integer_layers())
def test_integer_neuron_compiled_equals_numpy(case):
    neuron, x = case
    assert_engines_agree(both_engines(lambda: IntegerNeuron(neuron, neuron.shape), x, x.shape[1]))


def test_integer_neuron_wraps_and_saturates_like_numpy():
    """The edges named in fixed.py, hit on purpose: u wrapping at +-2^23, v clipping, int64 overflow of a << 6
    and of the decay product."""
    neuron = O.QNeuron(shape=(4,), du=[0, 4095, -1, 100], dv=[0, 4096, 1, 2000], vth=[0, 1, (1 << 17) - 1, 5],
                       bias_mant=[4095, -4096, 1, 0], bias_exp=[10, 10, 0, -2], reset_mode="subtract",
                       u_init=[M - 1, -(M - 1), 0, 5], v_init=[M - 1, -(M - 1), M - 1, 0])
    x = np.array([[[M, -M, INT64.max, INT64.min]], [[1 << 17, -(1 << 17), 1 << 57, -(1 << 57)]],
                  [[0, 0, 0, 0]], [[INT64.max >> 6, INT64.min >> 6, 3, -3]]], dtype=np.int64)
    assert_engines_agree(both_engines(lambda: IntegerNeuron(neuron, neuron.shape), x, 1))


def test_decay_of_the_most_negative_product_matches_numpy():
    from nmcompile.ir import jit

    x = np.array([-(1 << 51), 1 << 51], dtype=np.int64)     # x * (4096 - 0) = -2^63 (the second one wraps to it)
    expected = fixed.decay(x, np.array([0, 0]))
    np.testing.assert_array_equal(expected, [1 << 51, 1 << 51])
    assert [int(jit._decay(v, np.int64(0))) for v in x] == [1 << 51, 1 << 51]


# -- float neuron ---------------------------------------------------------------------------------------------
@st.composite
def float_layers(draw):
    kind = draw(st.sampled_from(["LIF", "IF", "CubaLIF", "LI", "CubaLI", "MPBNLIF"]))
    n = draw(per_neuron)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    vec = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    fields: dict = dict(shape=(n,), gain=vec(0.5, 2.0) if draw(st.booleans()) else 1.0,
                        bias=vec(-0.2, 0.2) if draw(st.booleans()) else 0.0, v_init=vec(-1, 1))
    spiking = kind not in ("LI", "CubaLI")
    if spiking:
        timing = "immediate" if kind == "MPBNLIF" else draw(st.sampled_from(
            ["immediate", "delayed", "snntorch_immediate"]))
        mode = "subtract" if timing == "snntorch_immediate" else draw(st.sampled_from(["zero", "subtract", "none"]))
        refractory = draw(st.integers(0, 2)) if timing == "immediate" else 0
        fields.update(threshold=vec(0.2, 1.5), compare=draw(st.sampled_from([">", ">="])), reset_mode=mode,
                      reset_timing=timing, refractory=refractory, v_reset=vec(-0.3, 0.3))
    else:
        fields.update(reset_mode="none")
    if kind != "IF":
        fields["beta"] = vec(0.3, 1.0)
    if kind in ("CubaLIF", "CubaLI"):
        fields.update(alpha=vec(0.0, 0.9), syn_gain=vec(0.5, 1.5), i_init=vec(-0.5, 0.5))
    if kind == "MPBNLIF":
        fields.update(bn_mean=vec(-0.2, 0.2), bn_var=vec(0.5, 2.0), bn_weight=vec(0.5, 1.5), bn_bias=vec(-0.1, 0.1),
                      reset_amount=vec(0.5, 1.5))
    op = getattr(O, kind)(**fields)
    steps, batch = draw(st.integers(1, 12)), draw(st.integers(1, 3))
    x = rng.normal(0.4, 0.8, (steps, batch, n))
    if draw(st.booleans()):
        x = (x > 0.5).astype(np.float64)
    return op, x, draw(st.sampled_from(["float64", "float32"]))


@settings(max_examples=120, deadline=None)
@given(float_layers())
def test_float_neuron_compiled_equals_numpy_bit_for_bit(case):
    op, x, precision = case
    dtype = np.dtype(precision)
    results = both_engines(lambda: FloatNeuron(op, op.shape, dtype), x.astype(dtype), x.shape[1])
    assert_engines_agree(results)


@pytest.mark.parametrize("size", [2, 10, 31, 32])
@pytest.mark.parametrize("threads", [1, 2])
def test_short_rows_run_as_one_row_per_batch_with_the_same_bits(size, threads, monkeypatch):
    """Below jit.SHORT_ROW neurons the plain float loop runs a range of samples as one row with the parameters
    repeated per sample (kept per batch size): per-neuron parameters, batch sizes in turn, samples on one thread or
    split over two, against the numpy engine."""
    if threads > 1:
        from nmcompile.ir import jit

        monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
        monkeypatch.setattr(jit, "PARALLEL_MIN_FLOAT_UPDATES", 0)
    rng = np.random.default_rng(size)
    vec = lambda lo, hi: rng.uniform(lo, hi, size)  # noqa: E731
    op = O.LIF(shape=(size,), beta=vec(0.3, 1.0), gain=vec(0.5, 2.0), bias=vec(-0.2, 0.2), threshold=vec(0.2, 1.5),
               v_reset=vec(-0.3, 0.3), v_init=vec(-1, 1), reset_mode="zero", compare=">=")
    compiled, numpy_engine = (FloatNeuron(op, op.shape, np.dtype(np.float32)) for _ in range(2))
    numpy_engine.set_engine("numpy")
    for batch in (3, 7, 2):           # a parameter array kept for a smaller batch would be too short
        x = rng.normal(0.4, 0.8, (9, batch, size)).astype(np.float32)
        for kernel in (compiled, numpy_engine):
            kernel.reset(batch)
        assert_same_bits(compiled.run_chunk(x), numpy_engine.run_chunk(x))
        assert_same_bits(compiled.v, numpy_engine.v)


def test_a_subclass_that_overrides_step_keeps_its_own_update():
    """docs/extending.md's pattern: a kernel subclass changing `step` is run through its step, not the loop."""

    class Doubling(FloatNeuron):
        def step(self, x):
            return super().step(2 * x)

    op = O.LIF(shape=(3,), beta=0.5, threshold=1.0)
    x = np.full((4, 1, 3), 0.6)
    kernel = Doubling(op, op.shape, np.dtype(np.float64))
    assert not kernel.fused
    np.testing.assert_array_equal(kernel.run(x)[:, 0, 0], [1, 1, 1, 1])


# -- event-driven products ------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.02, 0.2]), st.sampled_from(["spikes", "graded", "huge"]),
       st.integers(-4, 3))
def test_event_driven_product_equals_blas_product(seed, density, values, exp):
    rng = np.random.default_rng(seed)
    n_out, n_in, rows = rng.integers(1, 40), rng.integers(1, 60), rng.integers(1, 30)
    weight = rng.integers(-256, 256, (n_out, n_in))
    if values == "huge":
        weight = weight * (1 << 40)                         # int64 accumulation that wraps, as numpy's does
    x = (rng.random((rows, n_in)) < density).astype(np.int64)
    if values != "spikes":
        x *= rng.integers(-(1 << 20), 1 << 20, x.shape)
    product = arraymath.ExactProduct(weight, exp)
    expected = fixed.floor_shift(x @ weight.T, exp)
    np.testing.assert_array_equal(fixed.floor_shift(product.event_product(x), exp), expected)
    np.testing.assert_array_equal(product(x), expected)


# -- networks -------------------------------------------------------------------------------------------------
def integer_net(rng: np.random.Generator) -> Graph:
    """Input -> QLinear (per-synapse delays 0..2) -> QNeuron with a recurrent QLinear -> QLinear -> readout."""
    g = Graph("q")
    g.add("in", O.Input(shape=(12,)))
    g.add("fc0", O.QLinear(weight=rng.integers(-120, 120, (10, 12)), delay=rng.integers(0, 3, (10, 12)),
                           weight_exp=-1))
    g.add("n0", O.QNeuron(shape=(10,), du=300, dv=200, vth=40, reset_mode="subtract"))
    g.add("rec", O.QLinear(weight=rng.integers(-60, 60, (10, 10)), delay=1))
    g.add("fc1", O.QLinear(weight=rng.integers(-120, 120, (4, 10))))
    g.add("n1", O.QNeuron(shape=(4,), du=4095, dv=100, spiking=False))
    g.add("out", O.Output(shape=(4,)))
    g.chain("in", "fc0", "n0", "fc1", "n1", "out")
    g.connect("n0", "rec", recurrent=True)
    g.connect("rec", "n0")
    g.verify()
    return g


@pytest.mark.parametrize("chunk", [1, 3, 7, None])
def test_integer_network_engines_and_chunks_agree(chunk):
    rng = np.random.default_rng(chunk or 0)
    g = integer_net(rng)
    x = random_spikes(rng, 40, 3, 12).astype(np.int64)
    reference = simulate(g, x, engine="numpy")
    recorded = simulate(g, x, record=True)
    np.testing.assert_array_equal(recorded.output, reference.output)
    out = Simulator(g, chunk_steps=chunk).run(x).output
    np.testing.assert_array_equal(out, reference.output)
    numpy_states = simulate(g, x, record=True, engine="numpy").states
    for name, states in numpy_states.items():
        for key, value in states.items():
            np.testing.assert_array_equal(recorded.states[name][key], value)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("chunk", [2, 5, None])
def test_float_network_engines_and_chunks_agree(precision, chunk):
    rng = np.random.default_rng(3)
    g = mlp(rng, (6, 9, 4), reset_timing="delayed", recurrent=True, neuron="CubaLIF")
    x = random_spikes(rng, 30, 2, 6)
    reference = simulate(g, x, mode=precision, engine="numpy").output
    out = Simulator(g, precision, chunk_steps=chunk).run(x).output
    assert_same_bits(out, reference)


def test_unknown_engine_is_refused():
    from nmcompile.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="engine"):
        Simulator(mlp(np.random.default_rng(0)), engine="gpu")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 1 << 10, 1 << 14, 1 << 30]), st.booleans())
def test_integer_conv_through_torch_equals_numpy(seed, scale, one_d):
    """Integer convolutions through torch's float kernels (below 2^24 in float32, below 2^53 in float64) and
    beyond (int64) equal the numpy product exactly."""
    rng = np.random.default_rng(seed)
    c_in, c_out, groups = 2, 4, int(rng.choice([1, 2]))
    kernel = (3,) if one_d else (3, 2)
    weight = rng.integers(-255, 256, (c_out, c_in // groups, *kernel))
    x = rng.integers(-scale, scale + 1, (3, c_in, *((9,) if one_d else (7, 6))))
    x[rng.random(x.shape) < 0.5] = 0
    stride, padding, dilation = ((2,), (1,), (1,)) if one_d else ((2, 1), (1, 0), (1, 2))
    expected = arraymath.int_conv(x, weight, stride, padding, dilation, groups)
    conv = arraymath.Convolution(weight, stride, padding, dilation, groups, np.dtype(np.int64))
    np.testing.assert_array_equal(conv(x), expected)


def test_float32_conv_through_torch_is_close_and_float64_is_unchanged():
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 1, (4, 2, 3, 3))
    x = rng.normal(0, 1, (3, 2, 8, 8))
    args = ((1, 1), (1, 1), (1, 1), 1)
    reference = arraymath.conv(x, weight, *args)
    assert_same_bits(arraymath.Convolution(weight, *args, np.dtype(np.float64))(x), reference)
    fast = arraymath.Convolution(weight, *args, np.dtype(np.float32))(x.astype(np.float32))
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("one_d", [False, True])
def test_torch_convolution_split_over_threads_fills_one_output(monkeypatch, one_d):
    """torch's convolution split into shares over threads, each share copied into one output on its own thread:
    integer convolutions stay exact, float32 ones close to float64 numpy (with the bias)."""
    from nmcompile.ir import jit

    rng = np.random.default_rng(8)
    kernel, size = ((3,), (11,)) if one_d else ((3, 2), (7, 6))
    stride, padding, dilation = ((2,), (1,), (1,)) if one_d else ((2, 1), (1, 0), (1, 1))
    weight = rng.integers(-255, 256, (5, 3, *kernel))
    x = rng.integers(-3, 4, (13, 3, *size))
    monkeypatch.setattr(jit, "PARALLEL_MIN_ADDS", 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    conv = arraymath.Convolution(weight, stride, padding, dilation, 1, np.dtype(np.int64))
    np.testing.assert_array_equal(conv(x), arraymath.int_conv(x, weight, stride, padding, dilation, 1))
    bias = rng.normal(0, 1, (5,) + (1,) * len(size))
    reference = arraymath.conv(x.astype(np.float64), weight.astype(np.float64), stride, padding, dilation, 1) + bias
    conv32 = arraymath.Convolution(weight.astype(np.float32), stride, padding, dilation, 1, np.dtype(np.float32),
                                   bias.astype(np.float32))
    fast = conv32._torch(x.astype(np.float32), with_bias=True)
    assert fast.dtype == np.float32 and fast.shape == reference.shape
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-3)


def test_nonzero_estimate_counts_at_most_sixteen_rows():
    """Exact up to ESTIMATE_ROWS rows; beyond, the sampled rows' count scaled to all rows (exact when every row has
    the same count); -0.0 counts, as in count_nonzero_bits."""
    x = np.zeros((10, 3, 4), np.float32)
    x[2, 1, 1], x[7, 0, 0] = 1.0, -0.0
    assert arraymath.estimate_nonzero(x) == 2
    rows = np.zeros((100, 50), np.float32)
    rows[:, :7] = 1.0
    assert arraymath.estimate_nonzero(rows) == 700
    rows[1::2] = 0.0        # the sampled rows 0, 7, 14, ... alternate between full and empty
    assert 0 < arraymath.estimate_nonzero(rows) < 700
    assert arraymath.estimate_nonzero(rows.T) == np.count_nonzero(rows)      # not contiguous: counted whole


def test_row_parallel_accumulation_equals_one_thread(monkeypatch):
    from nmcompile.ir import jit

    rng = np.random.default_rng(5)
    weight = rng.integers(-256, 256, (33, 50))
    x = (rng.random((41, 50)) < 0.1).astype(np.int64)
    monkeypatch.setattr(jit, "PARALLEL_MIN_ADDS", 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    np.testing.assert_array_equal(arraymath.ExactProduct(weight, 0).event_product(x), x @ weight.T)


def test_neuron_ranges_split_over_threads_equal_numpy(monkeypatch):
    """integer_neuron_plain over disjoint neuron ranges in several threads: the numpy engine's bits."""
    from nmcompile.ir import jit

    rng = np.random.default_rng(6)
    op = O.QNeuron(shape=(37,), du=rng.integers(0, 4096, 37), dv=rng.integers(0, 4097, 37), vth=50,
                   reset_mode="subtract")
    x = rng.integers(-(1 << 12), 1 << 12, (9, 3, 37))
    monkeypatch.setattr(jit, "PARALLEL_MIN_UPDATES", 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    outputs = []
    for engine in ("numpy", "compiled"):
        kernel = IntegerNeuron(op, (37,))
        kernel.set_engine(engine)
        outputs.append((kernel.run(x), kernel.u.copy(), kernel.v.copy()))
    for numpy_side, compiled_side in zip(*outputs, strict=True):
        assert_same_bits(numpy_side, compiled_side)
    assert outputs[0][0].any()


def test_compiled_kernels_are_cached_in_the_user_cache_directory(tmp_path):
    """A fresh process compiles into XDG_CACHE_HOME/nmcompile/numba/sources-<digest of nmcompile/ir> (platformdirs),
    never into the package; the caches of other sources unused for a week are removed."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import nmcompile
    from nmcompile.ir import jit

    code = ("import numpy as np, numba\n"
            "from nmcompile.ir import jit\n"
            "x = np.zeros((1, 1, 2), np.int64); s = np.zeros((1, 2), np.int64); p = np.zeros(2, np.int64)\n"
            "o = np.empty((1, 1, 2), np.int64)\n"
            "jit.integer_neuron_plain(x, s, s.copy(), p, p, p, p, True, False, 1, o, 0, 2)\n"
            "print(jit.cache_dir()); print(numba.config.CACHE_DIR)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    base = tmp_path / "cache" / "nmcompile" / "numba"
    stale, recent = base / "sources-0123456789abcdef", base / "sources-fedcba9876543210"
    for other, age_days in ((stale, 8), (recent, 1)):
        other.mkdir(parents=True)
        os.utime(other, (os.path.getatime(other), os.path.getmtime(other) - age_days * 86400))
    package = Path(nmcompile.__file__).parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=package.parent).stdout.split()
    expected = base / f"sources-{jit.sources_key()}"
    assert out == [str(expected), str(expected)]
    assert not stale.exists() and recent.exists()
    assert list(expected.rglob("*.nbi")) and list(expected.rglob("*.nbc"))
    assert not list(package.rglob("*.nbi"))


def test_the_cache_key_follows_every_compiled_module(tmp_path, monkeypatch):
    """numba checks a cached function against its own file only; the key covers every module of nmcompile/ir, so an
    edit of a module whose intrinsics another inlines (window_sums into float_chain) gives a cache of its own."""
    import shutil
    from pathlib import Path

    from nmcompile.ir import jit

    copy = tmp_path / "ir"
    shutil.copytree(Path(jit.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(jit, "__file__", str(copy / "jit.py"))
    before = jit.sources_key()
    assert before == jit.sources_key() and len(before) == 16
    with open(copy / "window_sums.py", "a") as f:
        f.write("# an edit\n")
    assert jit.sources_key() != before


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_start_steps_cross_chunk_boundaries(chunk):
    """A layer held until step 4 (tests/ir/test_start_step.py's semantics) gives the same run in chunks of any size,
    with either engine."""
    from tests.ir.test_start_step import NEURONS, one_layer

    rng = np.random.default_rng(chunk)
    x = (rng.random((13, 2, 4)) < 0.4).astype(np.float64)
    for name in ("integer", "lif-tonic", "cuba-delayed"):
        graph = one_layer(NEURONS[name].replace(start_step=4))
        expected = simulate(graph, x, engine="numpy").output
        out = Simulator(graph, chunk_steps=chunk).run(x).output
        assert not out[:4].any() and out[4:].any()
        assert_same_bits(out, expected)


# -- STDP ---------------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 7), st.integers(0, 7), st.integers(0, 255), st.booleans())
def test_compiled_stdp_equals_numpy(seed, decay, shift, increment, graded):
    """The compiled plastic projection (product and learning step in place) gives the numpy engine's spikes, final
    weights [B, out, in] and traces, for every sample of a batch; weights hit both bounds."""
    rng = np.random.default_rng(seed)
    g = Graph("stdp")
    g.add("in", O.Input(shape=(9,)))
    g.add("fc", O.QPlasticLinear(weight=rng.integers(-30, 31, (6, 9)), num_weight_bits=9, delay=int(rng.integers(1, 3)),
                                 pre_decay=decay, post_decay=7 - decay, ltp_shift=shift, ltd_shift=7 - shift,
                                 pre_increment=increment, post_increment=255 - increment, w_min=-30, w_max=30,
                                 weight_exp=int(rng.integers(-2, 2))))
    g.add("n", O.QNeuron(shape=(6,), du=3000, dv=500, vth=20))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc", "n", "out")
    g.verify()
    x = (rng.random((25, 3, 9)) < 0.4).astype(np.int64)
    if graded:
        x *= rng.integers(1, 4, x.shape)
    reference = simulate(g, x, engine="numpy", record=True)
    compiled = simulate(g, x, record=True)
    np.testing.assert_array_equal(compiled.output, reference.output)
    np.testing.assert_array_equal(compiled.weights["fc"], reference.weights["fc"])
    for key, value in reference.states["n"].items():
        np.testing.assert_array_equal(compiled.states["n"][key], value)


def test_worker_threads_count_other_work_now_not_this_process_past_minute(monkeypatch):
    """The threads of the row-parallel loops: OMP_NUM_THREADS, else the CPUs less the threads runnable elsewhere now
    (/proc/loadavg's running count less the calling thread): a minute of this process's own two-thread work, which
    lifts the load average to 1.6 on 2 cores, must not halve the next chunks."""
    from nmcompile.ir import jit

    assert jit.busy_elsewhere("1.62 1.20 0.90 1/412 9093") == 0      # only the caller runs: its own past is no load
    assert jit.busy_elsewhere("7.00 6.90 6.50 8/412 9093") == 7
    assert jit.busy_elsewhere("garbage") >= 0                         # unreadable: the load average instead
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(jit.os, "sched_getaffinity", lambda _: {0, 1})
    for busy, threads in ((0, 2), (1, 1), (7, 1)):
        monkeypatch.setattr(jit, "busy_elsewhere", lambda busy=busy: busy)
        assert jit.worker_threads() == threads
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert jit.worker_threads() == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_equals_numpy_wherever_the_bad_value_is(monkeypatch, dtype):
    """One pass over the bits, split over threads (every value position reaches a piece: the first, the last, a
    piece boundary); a non-contiguous view is read as its values."""
    from nmcompile.ir import jit

    monkeypatch.setattr(jit, "FINITE_PARALLEL_MIN", 64)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1e30 if dtype == np.float32 else 1e300, 1001).astype(dtype)
    assert jit.all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        for where in (0, 333, 334, 667, 1000):
            y = x.copy()
            y[where] = bad
            assert jit.all_finite(y) == bool(np.all(np.isfinite(y))) is False
    y = x.copy()
    y[1::2] = np.nan
    assert jit.all_finite(y[::2]) and not jit.all_finite(y[1::2])
    assert jit.all_finite(np.array([np.finfo(dtype).max, -np.finfo(dtype).max, 0.0, -0.0], dtype))
