"""Reused output arrays (nmcompile.ir.spare): an array comes back only once nothing references it, so no result a
caller holds is ever overwritten by a later call or run."""

from __future__ import annotations

import numpy as np

from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator
from nmcompile.ir.spare import SPARES, SpareOutputs
from tests.conftest import mlp, random_spikes


def test_an_array_comes_back_only_when_nothing_holds_it_or_a_view_of_it():
    spares, shape, dtype = SpareOutputs(), (4, 3), np.dtype(np.float32)
    first = spares.take(shape, dtype)
    second = spares.take(shape, dtype)
    assert second is not first                          # `first` is still held
    view = first[1:]
    del first
    third = spares.take(shape, dtype)                   # `first` is held through its view, `second` directly
    assert third is not second and third is not view.base
    second_id = id(second)
    del view, second
    reused = spares.take(shape, dtype)                  # `third` is held, `second` no longer
    assert id(reused) == second_id and reused is not third and len(spares._arrays) == SPARES
    assert spares.take((4, 4), dtype).shape == (4, 4)                 # another shape or dtype: a new array
    assert spares.take(shape, np.dtype(np.float64)).dtype == np.float64


def test_results_held_by_the_caller_survive_later_runs_and_feeds(rng):
    """Runs, streamed chunks and recorded values the caller keeps are never reused: float32 (event-driven
    convolution and neuron outputs) and float64 alike."""
    g = Graph("conv")
    g.add("input", O.Input(shape=(2, 12, 12)))
    g.add("conv", O.Conv2d(weight=rng.normal(0, 1, (4, 2, 3, 3)), bias=rng.normal(0, 0.1, 4)))
    g.add("lif", O.LIF(shape=(4, 10, 10), beta=0.9, threshold=0.5))
    g.add("output", O.Output(shape=(4, 10, 10)))
    g.chain("input", "conv", "lif", "output")
    g.verify()
    for mode in ("float32", "float64"):
        sim = Simulator(g, mode)
        inputs = [(rng.random((6, 1, 2, 12, 12)) < 0.1).astype(np.float32) for _ in range(3)]
        runs = [sim.run(x) for x in inputs]
        recorded = sim.run(inputs[0], record=True)
        kept = [r.output.copy() for r in runs] + [recorded.values["lif"].copy(), recorded.values["conv"].copy()]
        sim.run(inputs[1])
        sim.start(1)
        fed = [sim.feed(x)["output"] for x in inputs]
        fed_copies = [f.copy() for f in fed]
        sim.feed(inputs[2])
        for held, copy in zip([r.output for r in runs] + [recorded.values["lif"], recorded.values["conv"]], kept,
                              strict=True):
            np.testing.assert_array_equal(held, copy)
        for held, copy in zip(fed, fed_copies, strict=True):
            np.testing.assert_array_equal(held, copy)
        np.testing.assert_array_equal(runs[0].output, recorded.output)


def test_chunked_runs_with_reused_outputs_equal_one_chunk(rng):
    g = mlp(rng, (30, 40, 5))
    x = random_spikes(rng, 40, 2, 30).astype(np.float32)
    whole = Simulator(g, "float32").run(x).output
    chunked = Simulator(g, "float32", chunk_steps=3)
    for _ in range(3):
        np.testing.assert_array_equal(chunked.run(x).output, whole)
