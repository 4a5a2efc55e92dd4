"""Fused integer feed-forward chains (nmcompile.ir.chain) equal the numpy engine bit for bit: which nodes form a
chain, random chains (delays 0-2, int8 and 9-bit weights, weight exponents, '>' and '>=', every reset mode, bias,
decaying and clearing current), batches split over threads, chunk boundaries and start/feed streaming, non-binary
input falling back for a chunk and resuming, int16 sums at the 2^15 switch, sums past 2^31's guard, current wrap and
voltage clipping."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nmcompile.ir import chain, jit
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator


def chain_graph(rng: np.random.Generator, sizes: list[int], *, delays=(1, 1, 1), weight_max: int = 80,
                bits: int | tuple[int, ...] = 8, exps=(0, 0, 0), **neuron) -> Graph:
    """input (sizes[0]) -> (QLinear -> QNeuron) per later size -> output; `bits` per layer or for all."""
    g = Graph("chain")
    prev = g.add("in", O.Input(shape=(sizes[0],)))
    for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        weight = rng.integers(-weight_max, weight_max + 1, (n_out, n_in))
        layer_bits = bits[k] if isinstance(bits, tuple) else bits
        proj = g.add(f"fc{k}", O.QLinear(weight=weight, weight_exp=exps[k], num_weight_bits=layer_bits,
                                         delay=delays[k]))
        g.connect(prev, proj)
        params = {"du": 4095, "dv": 410, "vth": 100, **neuron}
        prev = g.add(f"lif{k}", O.QNeuron(shape=(n_out,), **params))
        g.connect(proj, prev)
    g.connect(prev, g.add("out", O.Output(shape=(sizes[-1],))))
    g.verify()
    return g


def spikes(rng: np.random.Generator, steps: int, batch: int, n: int, rate: float = 0.1) -> np.ndarray:
    return (rng.random((steps, batch, n)) < rate).astype(np.int64)


def assert_fused_equals_numpy(g: Graph, x: np.ndarray, chunk_steps: int | None = None) -> np.ndarray:
    """The compiled run (some chunk fused) equals the numpy engine's; returns the numpy engine's node values."""
    sim = Simulator(g, chunk_steps=chunk_steps)
    assert sim._chains(), "no chain was formed"
    fused_chunks = []
    for found in sim._chains().values():
        def run(x, step0, found=found, plain=found.run):
            out = plain(x, step0)
            fused_chunks.append(out is not None)
            return out
        found.run = run
    fused = sim.run(x).output
    assert any(fused_chunks), "no chunk ran fused"
    reference = Simulator(g, engine="numpy").run(x, record=True)
    np.testing.assert_array_equal(fused, reference.output)
    return reference.values


def test_a_stack_of_pairs_is_one_chain():
    g = chain_graph(np.random.default_rng(0), [50, 40, 30, 20])
    chains = Simulator(g)._chains()
    assert list(chains) == ["fc0"]
    assert chains["fc0"].source == "in" and chains["fc0"].last == "lif2"
    assert chains["fc0"].followers == ["lif0", "fc1", "lif1", "fc2", "lif2"]
    assert Simulator(g, engine="numpy")._chains() == {}


def test_a_node_with_two_consumers_ends_the_chain():
    g = chain_graph(np.random.default_rng(1), [30, 20, 20, 20])
    g.connect("lif0", g.add("tap", O.Output(shape=(20,))))     # lif0 is read twice: fc0 -> lif0 stands alone
    chains = Simulator(g)._chains()
    assert chains["fc0"].last == "lif0" and chains["fc1"].last == "lif2"
    x = spikes(np.random.default_rng(2), 25, 2, 30, 0.3)
    fused = Simulator(g).run(x).outputs
    reference = Simulator(g, engine="numpy").run(x).outputs
    for name in reference:
        np.testing.assert_array_equal(fused[name], reference[name])


@pytest.mark.parametrize("neuron", [{"refractory": 2}, {"reset_timing": "delayed"}, {"start_step": 3},
                                    {"spiking": False}])
def test_neurons_without_the_plain_update_are_not_fused(neuron):
    g = chain_graph(np.random.default_rng(3), [30, 20], **neuron)
    assert Simulator(g)._chains() == {}


def test_per_synapse_delays_are_not_fused():
    rng = np.random.default_rng(4)
    g = Graph("delays")
    g.add("in", O.Input(shape=(10,)))
    g.add("fc", O.QLinear(weight=rng.integers(-9, 9, (8, 10)), delay=rng.integers(1, 3, (8, 10))))
    g.add("lif", O.QNeuron(shape=(8,), du=4095, dv=0, vth=5))
    g.add("out", O.Output(shape=(8,)))
    g.connect("in", "fc")
    g.connect("fc", "lif")
    g.connect("lif", "out")
    assert Simulator(g)._chains() == {}


@pytest.mark.parametrize("seed", range(6))
def test_random_chains_equal_the_numpy_engine(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(20, 140, 3)]
    neuron = {"du": int(rng.choice([4095, 3000])), "dv": int(rng.integers(0, 4096)), "vth": int(rng.integers(20, 200)),
              "compare": str(rng.choice([">", ">="])), "reset_mode": str(rng.choice(["zero", "subtract", "none"])),
              "bias_mant": int(rng.integers(-20, 21)), "bias_exp": int(rng.integers(0, 3))}
    bits = int(rng.choice([8, 9]))
    g = chain_graph(rng, sizes, delays=[int(d) for d in rng.integers(0, 3, 2)], bits=bits,
                    weight_max=250 if bits == 9 else 80, exps=[int(e) for e in rng.integers(-2, 2, 2)], **neuron)
    x = spikes(rng, 40, int(rng.choice([1, 3])), sizes[0], float(rng.choice([0.05, 0.3])))
    values = assert_fused_equals_numpy(g, x, chunk_steps=int(rng.choice([1, 7, 64])))
    assert values["lif0"].any()


def test_batches_split_over_threads_equal_the_numpy_engine(monkeypatch):
    monkeypatch.setattr(chain, "PARALLEL_MIN_SYNAPSES", 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(chain, "ROWS_PER_PASS", 5)              # blocks of steps that end inside chunks
    rng = np.random.default_rng(7)
    g = chain_graph(rng, [60, 50, 40, 30], delays=(2, 0, 1))
    assert_fused_equals_numpy(g, spikes(rng, 33, 7, 60, 0.2), chunk_steps=11)


def test_int8_and_9_bit_layers_in_one_chain():
    """A 9-bit layer (int16 weight tiles) makes the whole chain run on int16 tiles."""
    rng = np.random.default_rng(14)
    g = chain_graph(rng, [70, 60, 50, 40], weight_max=200, bits=(8, 9, 8), delays=(1, 0, 2))
    assert [t.dtype for t in Simulator(g)._chains()["fc0"].tiles] == [np.int16] * 3
    assert_fused_equals_numpy(g, spikes(rng, 30, 3, 70, 0.2))


def test_parameters_per_neuron():
    """Thresholds, decays and biases given per neuron (read-only views in the kernels) beside scalar ones."""
    rng = np.random.default_rng(16)
    g = Graph("per-neuron")
    g.add("in", O.Input(shape=(40,)))
    g.add("fa", O.QLinear(weight=rng.integers(-20, 60, (30, 40)), num_weight_bits=9))
    g.add("l0", O.QNeuron(shape=(30,), du=3000, dv=rng.integers(0, 4096, 30), vth=rng.integers(20, 200, 30),
                          bias_mant=rng.integers(-30, 30, 30)))
    g.add("fb", O.QLinear(weight=rng.integers(-10, 30, (20, 30)), weight_exp=-1, num_weight_bits=9))
    g.add("l1", O.QNeuron(shape=(20,), du=4095, dv=800, vth=90))
    g.add("out", O.Output(shape=(20,)))
    for a, b in [("in", "fa"), ("fa", "l0"), ("l0", "fb"), ("fb", "l1"), ("l1", "out")]:
        g.connect(a, b)
    assert_fused_equals_numpy(g, spikes(rng, 30, 2, 40, 0.3))


def test_streamed_chunks_equal_one_run():
    rng = np.random.default_rng(8)
    g = chain_graph(rng, [40, 30, 20], delays=(2, 3))
    x = spikes(rng, 30, 2, 40, 0.3)
    whole = Simulator(g, engine="numpy").run(x).output
    sim = Simulator(g)
    sim.start(2)
    parts = [sim.feed(x[a:b])["out"] for a, b in [(0, 1), (1, 2), (2, 9), (9, 30)]]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("graded_step, unfused", [(9, [False, True, False]), (15, [False, True, True])])
def test_a_non_binary_chunk_runs_unfused_and_the_chain_resumes(monkeypatch, graded_step, unfused):
    """Chunks of 8 steps; a 2 at `graded_step` sends its chunk to the unfused kernels (which take over the delay
    lines the chain held), and the next chunk too when the 2 is still in the input's delay line (d = 2)."""
    rng = np.random.default_rng(9)
    g = chain_graph(rng, [40, 30, 20], delays=(2, 1))
    x = spikes(rng, 24, 2, 40, 0.3)
    x[graded_step, 1, 3] = 2
    answers = []
    run = chain.FusedChain.run
    monkeypatch.setattr(chain.FusedChain, "run", lambda self, *a: answers.append(run(self, *a)) or answers[-1])
    assert_fused_equals_numpy(g, x, chunk_steps=8)
    assert [a is None for a in answers] == unfused


def test_sums_at_the_int16_edge():
    """Rows whose bound count * |w|max is 2^15 - 255, 2^15 (int32 lanes) and past it, in the first and a later layer."""
    weight = 255
    count = (1 << 15) // weight
    g = Graph("edge")
    g.add("in", O.Input(shape=(4 * count,)))
    w1 = np.full((count + 2, 4 * count), weight)
    w1[1] = -weight
    g.add("fc0", O.QLinear(weight=w1, num_weight_bits=9, delay=0))
    g.add("lif0", O.QNeuron(shape=(count + 2,), du=4095, dv=4095, vth=0, compare=">=", reset_mode="none"))
    w2 = np.full((70, count + 2), -weight)
    w2[::3] = weight
    g.add("fc1", O.QLinear(weight=w2, num_weight_bits=9, delay=0))
    g.add("lif1", O.QNeuron(shape=(70,), du=4095, dv=4095, vth=0, compare=">=", reset_mode="none"))
    g.add("out", O.Output(shape=(70,)))
    for a, b in [("in", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"), ("fc1", "lif1"), ("lif1", "out")]:
        g.connect(a, b)
    x = np.zeros((4, 1, 4 * count), dtype=np.int64)
    for t, active in enumerate([count - 1, count, count + 1, 3]):
        x[t, 0, :active] = 1
    values = assert_fused_equals_numpy(g, x)
    assert values["lif0"][:3].sum(axis=-1).min() >= count  # the second layer's rows reach the edge as well


def test_sums_that_could_reach_2_to_31_run_unfused(monkeypatch):
    """With the 2^31 guard lowered, the later layer may not join the chain (static bound) and the first layer's
    chunks whose rows could reach it run unfused (checked per chunk): the bits stay the numpy engine's."""
    monkeypatch.setattr(chain, "SUM_LIMIT", 2000)
    rng = np.random.default_rng(10)
    g = chain_graph(rng, [60, 50, 40], weight_max=60)
    chains = Simulator(g)._chains()
    assert sorted(chains) == ["fc0", "fc1"] and chains["fc0"].last == "lif0"
    x = spikes(rng, 30, 2, 60, 0.03)                           # rows of 0-5 active inputs: at most 33 * 60 < 2000
    x[10:19] = spikes(rng, 9, 2, 60, 0.5)                      # the second chunk's rows could reach it
    x[19, :, :40] = 1                                           # and its last row, in the third chunk's delay line
    answers = []
    run = chain.FusedChain.run
    monkeypatch.setattr(chain.FusedChain, "run", lambda self, *a: answers.append(run(self, *a)) or answers[-1])
    assert_fused_equals_numpy(g, x, chunk_steps=10)
    assert [a is None for a in answers[::2]] == [False, True, True]   # answers of fc0's chain (fc1's alternate)


def test_current_wrap_and_voltage_clipping():
    """Large weights shifted left drive u past 2^23 (single conditional wrap) and v into its clip."""
    rng = np.random.default_rng(11)
    g = chain_graph(rng, [80, 60, 40], weight_max=255, bits=9, exps=(6, 5), du=100, dv=10, vth=1 << 16,
                    bias_mant=4000, bias_exp=7, reset_mode="subtract", compare=">=")
    values = assert_fused_equals_numpy(g, spikes(rng, 30, 2, 80, 0.4))
    assert np.abs(values["fc0"]).max() << jit.ACT_SHIFT > jit.UV_LIMIT


@pytest.mark.parametrize("steps, batch", [(0, 2), (5, 0)])
def test_empty_runs(steps, batch):
    g = chain_graph(np.random.default_rng(15), [30, 20, 10])
    x = np.zeros((steps, batch, 30), dtype=np.int64)
    np.testing.assert_array_equal(Simulator(g).run(x).output, Simulator(g, engine="numpy").run(x).output)


def test_record_runs_node_by_node():
    rng = np.random.default_rng(12)
    g = chain_graph(rng, [30, 20, 10])
    x = spikes(rng, 10, 2, 30, 0.3)
    result = Simulator(g).run(x, record=True)
    reference = Simulator(g, engine="numpy").run(x, record=True)
    for name in ("fc0", "lif0", "fc1", "lif1"):
        np.testing.assert_array_equal(result.values[name], reference.values[name])
    np.testing.assert_array_equal(result.states["lif1"]["v"], reference.states["lif1"]["v"])


def test_spike_lists_of_any_length_and_value():
    rng = np.random.default_rng(13)
    for n in (0, 5, 16, 17, 1000, 1003):
        for rate in (0.0, 0.1, 0.5, 1.0):
            x = (rng.random(n) < rate) * rng.choice(np.array([1, -3, 7], dtype=np.int8), n)
            listed = np.full(n + 1, -1, dtype=np.int32)
            count = chain.list_spikes(x.astype(np.int8), listed)
            np.testing.assert_array_equal(listed[:count], np.flatnonzero(x))
            rows = np.stack([x, np.abs(x) > 0]).astype(np.int64)
            active, counts = np.empty((2, n + 1), dtype=np.int32), np.empty(2, dtype=np.int64)
            assert chain.list_rows(rows, active, counts) == (not np.any(np.abs(x) > 1))
            for row, listed_row, found in zip(rows, active, counts, strict=True):
                np.testing.assert_array_equal(listed_row[:found], np.flatnonzero(row))
