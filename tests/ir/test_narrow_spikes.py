"""Spikes in one byte (Simulator's spike_dtype='int8' and bool/int8/uint8 inputs): the same spikes as the int64
default, on the fused chain's path and on every fallback (non-binary input, an input read by another node, record,
streaming, the numpy engine, float modes refused)."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.errors import ShapeError, UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.neurons import LIF
from nmcompile.ir.simulate import Simulator
from tests.ir.test_chain import chain_graph, spikes

NARROW = (np.int8, np.uint8, np.bool_)


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(11)
    g = chain_graph(rng, [60, 50, 40, 30])
    x = spikes(rng, 40, 3, 60, 0.2)
    return g, x, Simulator(g, engine="numpy").run(x).output


@pytest.mark.parametrize("narrow", NARROW)
@pytest.mark.parametrize("spike_dtype", ["int64", "int8"])
def test_narrow_inputs_and_int8_outputs_give_the_same_spikes(case, narrow, spike_dtype):
    g, x, reference = case
    sim = Simulator(g, spike_dtype=spike_dtype, chunk_steps=16)
    read = []
    for found in sim._chains().values():
        def run(x, step0, out=None, plain=found.run):
            read.append(x.dtype)
            return plain(x, step0, out)
        found.run = run
    out = sim.run(x.astype(narrow)).output
    assert out.dtype == np.dtype(spike_dtype)
    np.testing.assert_array_equal(out, reference)
    assert read and all(d.itemsize == 1 for d in read), "the chain was given a widened copy"


def test_a_non_binary_narrow_input_runs_unfused(case):
    g, x, _ = case
    graded = x.astype(np.int8)
    graded[5, 1, :10] = 3                      # currents, not spikes: the chain refuses this chunk
    expected = Simulator(g, engine="numpy").run(graded.astype(np.int64)).output
    sim = Simulator(g, spike_dtype="int8", chunk_steps=16)
    head, given = sim._kernels()["fc0"], []

    def run_chunk(x, record=False, plain=head.run_chunk):
        given.append(x.dtype)
        return plain(x, record)
    head.run_chunk = run_chunk
    out = sim.run(graded).output
    assert given == [np.int64], "the unfused kernels take the mode's dtype"
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, expected)


def test_an_input_read_by_another_node_is_widened(case):
    _, x, _ = case
    tap = chain_graph(np.random.default_rng(11), [60, 50, 40, 30])
    tap.connect("in", tap.add("tap", O.Output(shape=(60,))))    # the input itself is an output too
    sim = Simulator(tap, spike_dtype="int8")
    assert "in" not in sim._chain_inputs()
    result = sim.run(x.astype(np.uint8)).outputs
    reference = Simulator(tap, engine="numpy").run(x).outputs
    assert result["tap"].dtype == np.int64 and result["out"].dtype == np.int8
    for name in reference:
        np.testing.assert_array_equal(result[name], reference[name])


def test_record_streaming_and_the_numpy_engine(case):
    g, x, reference = case
    recorded = Simulator(g, spike_dtype="int8").run(x.astype(np.int8), record=True)
    assert recorded.output.dtype == np.int8
    np.testing.assert_array_equal(recorded.output, reference)
    numpy_engine = Simulator(g, engine="numpy", spike_dtype="int8").run(x.astype(np.bool_)).output
    assert numpy_engine.dtype == np.int8
    np.testing.assert_array_equal(numpy_engine, reference)
    stream = Simulator(g, spike_dtype="int8")
    stream.start(x.shape[1])
    parts = [stream.feed(x[t : t + 13].astype(np.int8))["out"] for t in range(0, x.shape[0], 13)]
    assert all(part.dtype == np.int8 for part in parts)
    np.testing.assert_array_equal(np.concatenate(parts), reference)


def test_only_spiking_outputs_become_int8():
    g = chain_graph(np.random.default_rng(3), [20, 10])
    readout = g.add("readout", O.QNeuron(shape=(10,), du=4095, dv=0, vth=1, spiking=False))
    g.connect(g.add("fc_r", O.QLinear(weight=np.ones((10, 20), dtype=np.int64))), readout)
    g.connect("in", "fc_r")
    g.connect(readout, g.add("potential", O.Output(shape=(10,))))
    sim = Simulator(g, spike_dtype="int8")
    assert sim.output_dtype("out") == np.int8 and sim.output_dtype("potential") == np.int64


def test_bad_spike_dtypes_are_refused():
    g = chain_graph(np.random.default_rng(4), [8, 4])
    with pytest.raises(UnsupportedError, match="unknown spike dtype 'int16'"):
        Simulator(g, spike_dtype="int16")
    f = Graph("float")
    f.connect(f.add("in", O.Input(shape=(4,))), f.add("lif", LIF(shape=(4,), beta=0.5)))
    f.connect("lif", f.add("out", O.Output(shape=(4,))))
    with pytest.raises(UnsupportedError, match="integer-mode option"):
        Simulator(f, "float32", spike_dtype="int8")


def test_a_plastic_network_returns_int8_spikes_too():
    rng = np.random.default_rng(5)
    g = Graph("stdp")
    g.add("in", O.Input(shape=(9,)))
    g.add("fc", O.QPlasticLinear(weight=rng.integers(-30, 31, (6, 9)), num_weight_bits=9, w_min=-30, w_max=30))
    g.add("n", O.QNeuron(shape=(6,), du=3000, dv=500, vth=20))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc", "n", "out")
    x = (rng.random((20, 2, 9)) < 0.4).astype(np.int64)
    out = Simulator(g, spike_dtype="int8").run(x).output
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, Simulator(g).run(x).output)


def test_a_step_without_the_sample_axis_is_named():
    g = chain_graph(np.random.default_rng(6), [8, 4])
    with pytest.raises(ShapeError, match=r"must be \[T, B, \*\(8,\)\] \(steps, samples, values\), got an array of "
                                        r"shape \(5, 8\)"):
        Simulator(g).run(np.zeros((5, 8), dtype=np.int64))
