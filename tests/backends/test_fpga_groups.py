"""Neuron parameter groups and per-engine synapse depths of the FPGA design (nmcompile/backends/fpga/groups.py,
docs/formats/fpga.md): the encoding, what the compiler emits for them, and the RTL walking the groups under
Verilator with neurons whose parameters and initial states all differ, on two engines."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.backends.fpga.budget import design_tiles, engine_tiles
from nmcompile.backends.fpga.emit import DesignSize, memory_contents
from nmcompile.backends.fpga.groups import OPEN_END, NeuronGroup, neuron_groups
from nmcompile.backends.fpga.lower import lower
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.lowered import lower_network
from nmcompile.protocols.fpga_uart import WORD_BYTES, Region
from nmcompile.runtime.hil import verify_artifact
from nmcompile.targets import get_target
from tests.backends.test_fpga_storage import write_artifact

FPGA = get_target("fpga")


def test_groups_are_runs_of_equal_words():
    assert neuron_groups([5, 5, 5, 7, 7, 5], [0, 0, 1, 1, 1, 1]) == [
        NeuronGroup(1, 5, 0), NeuronGroup(2, 5, 1), NeuronGroup(4, 7, 1), NeuronGroup(OPEN_END, 5, 1)]
    assert neuron_groups([3] * 100, [9] * 100) == [NeuronGroup(OPEN_END, 3, 9)]
    assert neuron_groups([], []) == [NeuronGroup(OPEN_END, 0, 0)]
    assert NeuronGroup(4, 7, 1).param_word == 7 | 4 << 88


def mixed_network(rng) -> Graph:
    """in (40) -> l0 (96 neurons: thresholds, biases and initial states per neuron) -> l1 (70, shared) -> out; on
    two engines l0 is cut in two and l1 (the output) stays whole, so the engines hold different synapse counts."""
    g = Graph("groups")
    n = 96
    g.add("in", O.Input(shape=(40,)))
    g.add("fa", O.QLinear(weight=rng.integers(-20, 60, (n, 40)), num_weight_bits=9))
    g.add("l0", O.QNeuron(shape=(n,), du=3000, dv=500, vth=rng.integers(20, 200, n),
                          bias_mant=rng.integers(-40, 40, n), bias_exp=1, reset_mode="subtract",
                          u_init=rng.integers(-3000, 3000, n), v_init=rng.integers(-4000, 4000, n)))
    g.add("fb", O.QLinear(weight=rng.integers(-10, 30, (70, n)), weight_exp=-1, num_weight_bits=9))
    g.add("l1", O.QNeuron(shape=(70,), du=4095, dv=800, vth=90))
    g.add("out", O.Output(shape=(70,)))
    g.chain("in", "fa", "l0", "fb", "l1", "out")
    g.verify()
    return g


def test_emitted_groups_and_depths():
    view = lower_network(mixed_network(np.random.default_rng(0)))
    config = lower(view, FPGA, 2)
    size = DesignSize.for_config(config)
    pieces = config.layers["l0"].pieces
    assert len(pieces) == 2
    for engine in range(2):
        words = memory_contents(config, engine)[Region.PARAM]
        groups = [int.from_bytes(words[k:k + 13], "little") for k in range(0, len(words), WORD_BYTES[Region.PARAM])]
        lasts = [g >> 88 for g in groups]
        assert lasts[-1] == OPEN_END and lasts[:-1] == sorted(lasts[:-1])
        own = sum(p.size for p in pieces if p.engine == engine)
        assert len(groups) >= own, "l0's neurons differ: a group each"
    assert size.groups >= max(len(memory_contents(config, e)[Region.PARAM]) // 13 for e in range(2))
    used = [sum(p.stored.size for p in config.projections if p.engine == e) for e in range(2)]
    assert [size.engine_syn_depth(e) >= used[e] for e in range(2)] == [True, True]
    assert size.syn_depth == max(size.syn_depths)
    assert design_tiles(size) == sum(sum(engine_tiles(size, e).values()) for e in range(2))


@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed")
def test_groups_walked_by_the_rtl_on_two_engines(tmp_path):
    rng = np.random.default_rng(1)
    g = mixed_network(rng)
    x = (rng.random((30, 2, 40)) < 0.3).astype(np.int64)
    out = write_artifact(g, x, tmp_path / g.name, 2)
    layout = json.loads((out / "fpga" / "layout.json").read_text())
    assert layout["design"]["engines"] == 2 and layout["design"]["groups"] >= 48
    result = verify_artifact(out, "verilator://")          # program.bin over the UART pins, then the samples
    assert result.passed, "\n".join(result.lines())
    _, expected = artifact.read(out).reference()
    assert expected["out"].any(), "the reference network is silent: the comparison would be vacuous"
