"""Placing layers on the FPGA design's engines and choosing their number for a part (the RTL runs of several engines
are in test_fpga_storage.py and test_fpga_nmnist.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nmcompile.backends.fpga.budget import choose_engines, design_tiles, ram_tiles
from nmcompile.backends.fpga.emit import DesignSize, emit
from nmcompile.backends.fpga.engines import busiest_share, place
from nmcompile.backends.fpga.lower import lower
from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.lowered import lower_network
from nmcompile.targets import get_target

FPGA = get_target("fpga")


def conv_net(rng) -> Graph:
    """in (2, 18, 18) -> 3x3 conv -> l1 (16, 16, 16) -> 3x3 conv -> l2 (8, 14, 14) -> dense -> l3 (10,)."""
    g = Graph("engines")
    g.add("in", O.Input(shape=(2, 18, 18)))
    g.add("ca", O.QConv(weight=rng.integers(-20, 60, (16, 2, 3, 3)), wrap_bits=0))
    g.add("l1", O.QNeuron(shape=(16, 16, 16), du=4095, dv=600, vth=60))
    g.add("cb", O.QConv(weight=rng.integers(-8, 20, (8, 16, 3, 3)), weight_exp=-1, wrap_bits=0))
    g.add("l2", O.QNeuron(shape=(8, 14, 14), du=4095, dv=600, vth=60))
    g.add("flat", O.Flatten())
    g.add("fc", O.QLinear(weight=rng.integers(-4, 8, (10, 8 * 14 * 14)), num_weight_bits=9))
    g.add("l3", O.QNeuron(shape=(10,), du=4095, dv=600, vth=60))
    g.add("out", O.Output(shape=(10,)))
    g.chain("in", "ca", "l1", "cb", "l2", "flat", "fc", "l3", "out")
    return g


def test_ram_tiles_follow_the_block_ram_shapes():
    assert ram_tiles(72, 512) == 1 and ram_tiles(36, 1024) == 1 and ram_tiles(32, 16384) == 16
    assert ram_tiles(9, 2048) == 0.5 and ram_tiles(8, 64) == 0


@pytest.mark.parametrize("engines", [2, 4, 8])
def test_pieces_cover_every_layer_at_channel_boundaries(engines):
    view = lower_network(conv_net(np.random.default_rng(0)))
    pieces, slots = place(view, engines)
    assert slots % 32 == 0
    used: dict[int, list[tuple[int, int]]] = {}
    for name, layer in view.layers.items():
        parts = sorted(pieces[name], key=lambda p: p.start)
        assert sum(p.size for p in parts) == layer.size
        assert all(a.start + a.size == b.start for a, b in itertools.pairwise(parts))
        plane = int(np.prod(layer.shape[1:])) if len(layer.shape) > 1 else 1
        assert all(p.start % plane == 0 and p.size % plane == 0 for p in parts)
        for p in parts:
            assert p.local + p.size <= slots
            used.setdefault(p.engine, []).append((p.local, p.local + p.size))
    for ranges in used.values():                    # no two pieces share a slot of an engine
        ranges.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges))
    assert len(pieces["l3"]) == 1, "the output layer stays whole"
    assert busiest_share(view, pieces, engines) < 1.5 / engines


def test_engines_chosen_for_the_part():
    view = lower_network(conv_net(np.random.default_rng(0)))
    small, large = choose_engines(view, FPGA, "xc7a35t"), choose_engines(view, FPGA, "xc7a200t")
    assert 1 <= small <= large and large > 1
    size = DesignSize.for_config(lower(view, FPGA, large))
    assert design_tiles(size) * 1.05 <= 365


def test_tiny_network_keeps_one_engine():
    g = Graph("tiny")
    g.add("in", O.Input(shape=(8,)))
    g.add("fc", O.QLinear(weight=np.ones((12, 8), dtype=np.int64), num_weight_bits=9))
    g.add("l", O.QNeuron(shape=(12,), vth=3))
    g.add("out", O.Output(shape=(12,)))
    g.chain("in", "fc", "l", "out")
    assert choose_engines(lower_network(g), FPGA, "xc7a200t") == 1


@pytest.mark.parametrize("value", ["0", "9", "two"])
def test_bad_engine_count_is_refused(value):
    view = lower_network(conv_net(np.random.default_rng(0)))
    with pytest.raises(UnsupportedError, match="--fpga-engines must be an integer 1..8"):
        emit(view, FPGA, {"fpga_engines": value}, lambda m: None)
