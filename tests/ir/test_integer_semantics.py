"""The integer golden model against Lava 0.10's measured behaviour (PyLifModelBitAcc, PyDenseModelBitAcc).

Each network is Input -> QLinear (delay 1, like Lava's Dense) -> QNeuron -> Output, the shape of the
RingBuffer -> Dense -> LIF benchmark those traces were measured on.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.ir import fixed
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate


def dense_lif(weight, neuron: O.QNeuron, **dense) -> Graph:
    weight = np.atleast_2d(np.asarray(weight))
    g = Graph("q")
    g.add("in", O.Input(shape=(weight.shape[1],)))
    g.add("dense", O.QLinear(weight=weight, **dense))
    g.add("lif", neuron)
    g.add("out", O.Output(shape=(weight.shape[0],)))
    g.chain("in", "dense", "lif", "out")
    return g


def trace(g: Graph, x: np.ndarray):
    r = simulate(g, x, record=True)
    return r.output, r.states["lif"]["u"], r.states["lif"]["v"], r.values["dense"] if r.values else None


def spikes_at(steps: int, n_in: int, times: dict[int, list[int]]) -> np.ndarray:
    x = np.zeros((steps, 1, n_in), dtype=np.int64)
    for t, idx in times.items():
        x[t, 0, idx] = 1
    return x


def test_one_step_latency_and_du_4095_clears_current():
    # §2.7: w=10, du=4095, a spike at the first step reaches u one step later: u = [0, 640, 0, 0]
    g = dense_lif([[10]], O.QNeuron(shape=(1,), du=4095, dv=0, vth=1000))
    _, u, _, _ = trace(g, spikes_at(4, 1, {0: [0]}))
    np.testing.assert_array_equal(u[:, 0, 0], [0, 640, 0, 0])


def test_q1_du_zero_still_decays_current():
    # Q1: du=0 decays u by 4095/4096 per step: 6400 -> 6398 -> 6396
    g = dense_lif([[100]], O.QNeuron(shape=(1,), du=0, dv=0, vth=100000))
    _, u, _, _ = trace(g, spikes_at(4, 1, {0: [0]}))
    np.testing.assert_array_equal(u[1:, 0, 0], [6400, 6398, 6396])


def test_q1_du_minus_one_holds_and_dv_4096_makes_v_follow_u():
    g = dense_lif([[100]], O.QNeuron(shape=(1,), du=-1, dv=4096, vth=100000))
    _, u, v, _ = trace(g, spikes_at(4, 1, {0: [0]}))
    np.testing.assert_array_equal(u[1:, 0, 0], [6400, 6400, 6400])
    np.testing.assert_array_equal(v[1:, 0, 0], [6400, 6400, 6400])


def test_q3_mixed_sign_mode_drops_the_lsb():
    # Q3: weights [3, -3, (101, -1)] in MIXED mode with 8 bits deliver [2, -4, 98]
    weight = np.array([[3, 0, 0], [-3, 0, 0], [0, 101, -1]])
    op = O.QLinear(weight=weight, sign_mode="mixed", num_weight_bits=8)
    np.testing.assert_array_equal(op.effective_weight() @ np.array([1, 1, 1]), [2, -4, 98])
    g = dense_lif(weight, O.QNeuron(shape=(3,), du=4095, vth=100000), sign_mode="mixed")
    _, u, _, _ = trace(g, spikes_at(2, 3, {0: [0, 1, 2]}))
    np.testing.assert_array_equal(u[1, 0], np.array([2, -4, 98]) << 6)


def test_q5_negative_weight_exp_floors_the_sum():
    # Q5: w = 2,2,2 with weight_exp -2 gives 6 >> 2 = 1; w = -2,-2,-2 gives -6 >> 2 = -2
    for weight, mode, expect in (([[2, 2, 2]], "excitatory", 1), ([[-2, -2, -2]], "inhibitory", -2)):
        g = dense_lif(weight, O.QNeuron(shape=(1,), du=4095, vth=100000), sign_mode=mode, weight_exp=-2)
        _, u, _, _ = trace(g, spikes_at(2, 3, {0: [0, 1, 2]}))
        assert u[1, 0, 0] == expect << 6


def test_q7_no_activation_saturation_and_single_wrap():
    # Q7: graded inputs are not saturated to 16 bits; u wraps once only, so it can leave 24 bits
    g = dense_lif([[255]], O.QNeuron(shape=(1,), du=4095, dv=0, vth=131071), sign_mode="excitatory")
    x = np.zeros((2, 1, 1), dtype=np.int64)
    x[0, 0, 0] = 20000  # graded payload
    _, u, _, _ = trace(g, x)
    raw = 255 * 20000 << 6
    assert raw > 2 * fixed.UV_LIMIT
    assert u[1, 0, 0] == raw - 2 * fixed.UV_LIMIT  # one conditional wrap, still above 2^23


def test_q8_bias_overflow_fixed_and_negative_bias_exp():
    # Q8: bias_mant=4095, bias_exp=5 gives v = 131040 (no overflow to a negative value)
    g = dense_lif([[0]], O.QNeuron(shape=(1,), du=4095, dv=0, vth=5000, bias_mant=4095, bias_exp=5))
    _, _, v, _ = trace(g, np.zeros((2, 1, 1), dtype=np.int64))
    np.testing.assert_array_equal(v[:, 0, 0], [131040, 262080])
    assert fixed.effective_bias(np.array(-5), np.array(-1)) == -3


def test_voltage_clips_and_spike_is_strict_then_resets_to_zero():
    g = dense_lif([[0]], O.QNeuron(shape=(1,), du=4095, dv=0, vth=131071, bias_mant=-4096, bias_exp=7))
    s, _, v, _ = trace(g, np.zeros((40, 1, 1), dtype=np.int64))
    assert v.min() == -(fixed.UV_LIMIT - 1) and not s.any()
    g = dense_lif([[0]], O.QNeuron(shape=(1,), du=4095, dv=0, vth=131071, bias_mant=4095, bias_exp=7))
    s, _, v, _ = trace(g, np.zeros((18, 1, 1), dtype=np.int64))
    # 16 steps reach 8386560 < 131071 << 6 = 8388544; the 17th clips to 2^23 - 1, which exceeds it
    assert v[15, 0, 0] == 16 * 524160 and s[16, 0, 0] == 1 and s[:16].sum() == 0
    g = dense_lif([[0]], O.QNeuron(shape=(1,), du=4095, dv=0, vth=2, bias_mant=64, bias_exp=0))
    s, _, v, _ = trace(g, np.zeros((4, 1, 1), dtype=np.int64))
    # v: 64, 128 (== 2 << 6: no spike), 192 -> spike, reset to 0
    np.testing.assert_array_equal(s[:, 0, 0], [0, 0, 1, 0])
    np.testing.assert_array_equal(v[:, 0, 0], [64, 128, 0, 64])


def test_extension_options_subtract_delayed_refractory():
    base = dict(shape=(1,), du=4095, dv=0, vth=2, bias_mant=100, bias_exp=0)
    g = dense_lif([[0]], O.QNeuron(**base, reset_mode="subtract"))
    s, _, v, _ = trace(g, np.zeros((4, 1, 1), dtype=np.int64))
    np.testing.assert_array_equal(s[:, 0, 0], [0, 1, 1, 1])
    np.testing.assert_array_equal(v[:, 0, 0], [100, 72, 44, 16])
    g = dense_lif([[0]], O.QNeuron(**base, reset_mode="subtract", reset_timing="delayed"))
    s, _, v, _ = trace(g, np.zeros((4, 1, 1), dtype=np.int64))
    np.testing.assert_array_equal(s[:, 0, 0], [0, 1, 1, 1])
    np.testing.assert_array_equal(v[:, 0, 0], [100, 200, 172, 144])
    g = dense_lif([[0]], O.QNeuron(**base, refractory=1))
    s, _, v, _ = trace(g, np.zeros((5, 1, 1), dtype=np.int64))
    np.testing.assert_array_equal(s[:, 0, 0], [0, 1, 0, 0, 1])


def test_per_synapse_delays_shift_each_group_separately():
    # two synapses onto one neuron with delays 1 and 3; weight_exp -1 floors each delay group on its own
    weight = np.array([[3, 3]])
    op = O.QLinear(weight=weight, sign_mode="excitatory", weight_exp=-1, delay=np.array([[1, 3]]))
    g = dense_lif(weight, O.QNeuron(shape=(1,), du=4095, vth=100000), sign_mode="excitatory", weight_exp=-1,
                  delay=np.array([[1, 3]]))
    assert op.delay.shape == (1, 2)
    _, u, _, _ = trace(g, spikes_at(5, 2, {0: [0, 1]}))
    np.testing.assert_array_equal(u[:, 0, 0] >> 6, [0, 1, 0, 1, 0])


def test_conv_wraps_output_to_24_bits():
    g = Graph("c")
    g.add("in", O.Input(shape=(1, 1, 2)))
    g.add("conv", O.QConv(weight=np.full((1, 1, 1, 2), 1 << 22)))
    g.add("out", O.Output(shape=(1, 1, 1)))
    g.chain("in", "conv", "out")
    r = simulate(g, np.ones((2, 1, 1, 1, 2), dtype=np.int64))
    assert r.output[1, 0, 0, 0, 0] == fixed.wrap_signed(np.array(1 << 23), 24) == -(1 << 23)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(-3, 3), st.sampled_from([0, 6, 10, 24]), st.sampled_from([1, 3, 200]),
       st.sampled_from(["numpy", "compiled"]))
def test_conv_shift_and_wrap_follow_their_definition(seed, exp, bits, xmax, engine):
    """wrap_signed(floor_shift(conv(x, W), exp), bits), whichever steps the kernel can prove to be the identity."""
    from nmcompile.ir.arraymath import conv
    from nmcompile.ir.simulate import Simulator

    rng = np.random.default_rng(seed)
    weight = rng.integers(-60, 61, (3, 2, 3, 3))
    g = Graph("c")
    g.add("in", O.Input(shape=(2, 6, 6)))
    g.add("conv", O.QConv(weight=weight, weight_exp=exp, wrap_bits=bits, delay=0))
    g.add("out", O.Output(shape=(3, 4, 4)))
    g.chain("in", "conv", "out")
    x = rng.integers(-xmax, xmax + 1, (3, 2, 2, 6, 6)) * (rng.random((3, 2, 2, 6, 6)) < 0.3)
    expected = fixed.floor_shift(conv(x.reshape(6, 2, 6, 6), weight, (1, 1), (0, 0), (1, 1), 1), exp)
    if bits:
        expected = fixed.wrap_signed(expected, bits)
    out = Simulator(g, engine=engine).run(x).output
    np.testing.assert_array_equal(out, expected.reshape(out.shape))


@settings(max_examples=60, deadline=None)
@given(st.integers(-300, 300), st.sampled_from(fixed.SIGN_MODES), st.integers(1, 8))
def test_prepared_weights_stay_in_their_declared_range(w, mode, bits):
    low, high, step = fixed.weight_range(mode, bits)
    p = int(fixed.prepared_weights(np.array([w]), mode, bits)[0])
    assert low <= p <= high and p % step == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(1 << 17), 1 << 17), min_size=1, max_size=30), st.integers(-1, 4095),
       st.integers(0, 4096), st.integers(-4096, 4095), st.integers(0, 7))
def test_state_stays_within_24_bits_when_input_fits(inputs, du, dv, bias_mant, bias_exp):
    """u stays in (-2^23, 2^23] whenever one step's input fits in the wrap range; v is always clipped."""
    g = dense_lif([[1]], O.QNeuron(shape=(1,), du=du, dv=dv, vth=131071, bias_mant=bias_mant, bias_exp=bias_exp),
                  sign_mode="excitatory", num_weight_bits=8)
    x = np.array(inputs, dtype=np.int64).reshape(-1, 1, 1)
    _, u, v, _ = trace(g, x)
    assert np.all(np.abs(v) <= fixed.UV_LIMIT - 1)
    assert np.all(u <= fixed.UV_LIMIT) and np.all(u > -fixed.UV_LIMIT)


@pytest.mark.parametrize("exp", [-3, 0, 2])
def test_floor_shift_matches_python_shift(exp):
    values = np.arange(-20, 21)
    expected = [v << exp if exp > 0 else v >> -exp for v in values.tolist()]
    np.testing.assert_array_equal(fixed.floor_shift(values, exp), expected)
    np.testing.assert_array_equal(fixed.trunc_shift(np.array([-7, 7]), 1), [-3, 3])
