"""The stacked layout (passes/partition_stack.py): a stack of convolution layers, one neuron-bound and two
memory-bound, partitioned for loihi2 within 1.2x of the lower bound, every core within every limit (routes
included), each core holding one tile of every layer over the same region; fewer cores and less traffic than the
first-fit layout; networks with a non-convolution layer keep the first-fit layout."""

from __future__ import annotations

import numpy as np

from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.passes import PassContext, run_pipeline
from nmcompile.passes.partition import capacity, layer_costs, layout
from nmcompile.passes.partition_stack import stacked_layout
from nmcompile.targets import get_target
from tests.conftest import mlp


def conv_stack(size: int = 20, channels: int = 16) -> Graph:
    """2 x size x size -> 3x3 conv (padded) -> LIF, then two stride-2 3x3 convs -> LIF (18 and 144 synapses per
    neuron)."""
    rng = np.random.default_rng(0)
    g = Graph("stack")
    prev = g.add("input", O.Input(shape=(2, size, size)))
    cin, s = 2, size
    for k, stride in enumerate((1, 2, 2)):
        conv = g.add(f"conv{k}", O.Conv2d(weight=rng.normal(0, 0.1, (channels, cin, 3, 3)), stride=stride, padding=1))
        g.connect(prev, conv)
        s = (s + 2 - 3) // stride + 1
        prev = g.add(f"lif{k}", O.LIF(shape=(channels, s, s), beta=0.9))
        g.connect(conv, prev)
        cin = channels
    g.connect(prev, g.add("output", O.Output(shape=(channels, s, s))))
    return g


def test_conv_stack_within_its_bound_one_tile_of_each_layer_per_core():
    target = get_target("loihi2", chips=16)
    mapping = run_pipeline(conv_stack(), ["partition"], PassContext(target=target)).mapping
    bound = max(mapping.lower_bound.values())
    assert bound <= mapping.cores <= 1.2 * bound, "\n".join(mapping.lines())
    assert np.all(mapping.core_use <= mapping.capacity + 1e-9)
    assert mapping.fan_out.max() <= target.fan_out_axons
    layers_of = {}
    for t in mapping.tiles:
        layers_of.setdefault(t.core, []).append(t.layer)
    assert all(sorted(v) == ["lif0", "lif1", "lif2"] for v in layers_of.values())
    costs, projs = layer_costs(conv_stack(), target, {})
    _, first_fit = layout(costs, projs, capacity(target), True)
    assert mapping.cores < first_fit
    assert mapping.traffic < mapping.naive["traffic"]


def test_a_core_count_out_of_reach_gives_no_stack():
    target = get_target("loihi2", chips=16)
    costs, projs = layer_costs(conv_stack(), target, {})
    assert stacked_layout(costs, projs, 1, 2) is None            # one core cannot hold 8,400 neurons


def test_dense_layers_keep_the_first_fit_layout():
    target = get_target("loihi2")
    costs, projs = layer_costs(mlp(np.random.default_rng(0), (10, 20, 20, 5)), target, {})
    assert stacked_layout(costs, projs, 1, 10) is None
