"""The float neuron update against traces published for snnTorch (snnTorch 1.0.0, snntorch/_neurons/leaky.py)."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate

X = np.array([0.6, 0.6, 0.6, 0.6, 0.0, 0.0, 1.5, 0.0])


def run_single(neuron: O.NeuronOp, x=X):
    g = Graph("one")
    g.add("in", O.Input(shape=(1,)))
    g.add("n", neuron)
    g.add("out", O.Output(shape=(1,)))
    g.chain("in", "n", "out")
    r = simulate(g, x.reshape(-1, 1, 1), record=True)
    return r.output[:, 0, 0], r.states["n"]["v"][:, 0, 0]


LEAKY = [
    # (reset_mode, timing, spikes, membrane) with beta=0.9, threshold=1
    ("subtract", "delayed", [0, 1, 0, 1, 0, 0, 1, 0], [.6, 1.14, .626, 1.1634, .0471, .0424, 1.5381, .3843]),
    ("subtract", "snntorch_immediate", [0, 1, 0, 1, 0, 0, 1, 0], [.6, .14, .726, .2534, .2281, .2053, .6847, .6163]),
    ("zero", "immediate", [0, 1, 0, 1, 0, 0, 1, 0], [.6, 0, .6, 0, 0, 0, 0, 0]),
]


@pytest.mark.parametrize(("mode", "timing", "spikes", "mem"), LEAKY)
def test_leaky_traces(mode, timing, spikes, mem):
    s, v = run_single(O.LIF(shape=(1,), beta=0.9, threshold=1.0, reset_mode=mode, reset_timing=timing))
    np.testing.assert_array_equal(s, spikes)
    np.testing.assert_allclose(v, mem, atol=1e-4)


SYNAPTIC = [
    ("subtract", "delayed", [0, 1, 1, 1, 0, 0, 1, 1], [.6, 1.44, 1.346, 1.3364, .7653, .97, 2.5136, 2.0826]),
    ("zero", "delayed", [0, 1, 0, 1, 0, 0, 1, 0], [.6, 1.44, 0, 1.125, 0, .2812, 1.8937, 0]),
]


@pytest.mark.parametrize(("mode", "timing", "spikes", "mem"), SYNAPTIC)
def test_synaptic_traces(mode, timing, spikes, mem):
    s, v = run_single(O.CubaLIF(shape=(1,), alpha=0.5, beta=0.9, threshold=1.0, reset_mode=mode,
                                reset_timing=timing))
    np.testing.assert_array_equal(s, spikes)
    np.testing.assert_allclose(v, mem, atol=1e-4)


def test_exactly_at_threshold_strict_and_inclusive():
    x = np.array([0.5, 0.5, 0.0])
    s_gt, _ = run_single(O.IF(shape=(1,), threshold=1.0), x)
    s_ge, _ = run_single(O.IF(shape=(1,), threshold=1.0, compare=">="), x)
    np.testing.assert_array_equal(s_gt, [0, 0, 0])
    np.testing.assert_array_equal(s_ge, [0, 1, 0])


def test_reset_to_value_and_initial_state():
    neuron = O.LIF(shape=(1,), beta=0.5, gain=0.5, bias=-0.25, threshold=1.0, v_reset=-0.5, v_init=-0.5)
    s, v = run_single(neuron, np.array([3.0, 0.0, 3.0]))
    # h0 = 0.5*-0.5 + 1.5 - 0.25 = 1.0 (not > 1); h1 = 0.5 - 0.25 = 0.25; h2 = 0.125 + 1.5 - 0.25 = 1.375 -> spike
    np.testing.assert_array_equal(s, [0, 0, 1])
    np.testing.assert_allclose(v, [1.0, 0.25, -0.5])


def test_refractory_holds_membrane_and_blocks_spikes():
    s, v = run_single(O.IF(shape=(1,), threshold=1.0, refractory=2), np.array([2.0, 2.0, 2.0, 2.0, 2.0]))
    np.testing.assert_array_equal(s, [1, 0, 0, 1, 0])
    np.testing.assert_allclose(v, [0, 0, 0, 0, 0])


def test_cuba_current_uses_new_input():
    readout, _ = run_single(O.CubaLI(shape=(1,), alpha=0.5, syn_gain=2.0, beta=1.0, gain=1.0, reset_mode="none"),
                            np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(readout, [2.0, 3.0, 3.5])  # a readout's output is its membrane


def test_mpbn_fires_on_normalised_membrane_and_resets_raw():
    neuron = O.MPBNLIF(shape=(1,), beta=0.25, threshold=0.5, bn_mean=1.0, bn_var=4.0 - 2**-10, bn_weight=2.0,
                       bn_bias=0.0, bn_eps=2**-10)
    s, v = run_single(neuron, np.array([1.0, 1.2, 1.6, 0.0]))
    # y = (h - 1) / 2 * 2 = h - 1; fires when h > 1.5
    np.testing.assert_array_equal(s, [0, 0, 1, 0])
    np.testing.assert_allclose(v, [1.0, 1.45, 0.0, 0.0])
