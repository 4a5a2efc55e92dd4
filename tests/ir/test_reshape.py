"""The Reshape op: same values in C order under a new shape. Its shape rule, the one-line refusal of a size that
differs, float and integer simulation, the walk over it, the lowered view of a conv reading a flat layer through it,
and NIR export (a flat Reshape only)."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.errors import GraphError, ShapeError, UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.ir.simulate import simulate
from nmcompile.lowered import ConvWeights, lower_network
from tests.cli.test_cli import cli_error


def flat_layer_into_conv(integer: bool) -> Graph:
    """in (12,) -> fc -> l1 (12,) -> Reshape (3, 2, 2) -> conv 2x2 (padded) -> l2 (2, 3, 3) -> Flatten -> out."""
    rng = np.random.default_rng(4)
    g = Graph("flat_conv")
    g.add("in", O.Input(shape=(12,)))
    if integer:
        g.add("fc", O.QLinear(weight=rng.integers(-20, 60, (12, 12))))
        g.add("l1", O.QNeuron(shape=(12,), vth=30))
        g.add("conv", O.QConv(weight=rng.integers(-10, 50, (2, 3, 2, 2)), padding=1))
        g.add("l2", O.QNeuron(shape=(2, 3, 3), vth=40))
    else:
        g.add("fc", O.Linear(weight=rng.normal(0.3, 0.6, (12, 12))))
        g.add("l1", O.LIF(shape=(12,), beta=0.8, threshold=1.0))
        g.add("conv", O.Conv2d(weight=rng.normal(0.3, 0.6, (2, 3, 2, 2)), padding=1))
        g.add("l2", O.LIF(shape=(2, 3, 3), beta=0.9, threshold=1.0))
    g.add("map", O.Reshape(shape=(3, 2, 2)))
    g.add("flat", O.Flatten())
    g.add("out", O.Output(shape=(18,)))
    g.chain("in", "fc", "l1", "map", "conv", "l2", "flat", "out")
    g.verify()
    return g


def _unflattened_twin(integer: bool) -> Graph:
    """The same network with l1 laid out as (3, 2, 2) from the start: fc's rows and l1's neurons in C order."""
    flat = flat_layer_into_conv(integer)
    g = Graph("twin")
    for name, op in flat.nodes.items():
        if name == "map":
            continue
        if name == "l1":
            op = op.replace(shape=(3, 2, 2))
        g.add(name, op)
    g.add("unflat", O.Reshape(shape=(3, 2, 2)))
    g.chain("in", "fc", "unflat", "l1", "conv", "l2", "flat", "out")
    return g


def test_shape_rule_keeps_the_element_count():
    op = O.Reshape(shape=[2, 3])
    assert op.shape == (2, 3) and op.transparent and op.numeric == "neutral" and not op.weighted
    assert op.out_shape((6,)) == (2, 3) and op.out_shape((3, 1, 2)) == (2, 3)


def test_a_reshape_of_another_size_is_refused_in_one_line():
    g = Graph("g")
    g.add("in", O.Input(shape=(3, 4)))
    g.add("map", O.Reshape(shape=(5, 2)))
    g.add("out", O.Output(shape=(5, 2)))
    g.chain("in", "map", "out")
    with pytest.raises(ShapeError, match=r"^node 'map' \(Reshape\): cannot lay out the 12 elements of input \(3, 4\) "
                                         r"as \(5, 2\) \(10 elements\)$"):
        g.verify()


def test_a_reshape_of_another_size_in_a_file_is_one_cli_error(tmp_path):
    g = Graph("g")
    g.add("in", O.Input(shape=(3, 4)))
    g.add("map", O.Reshape(shape=(5, 2)))
    g.add("out", O.Output(shape=(5, 2)))
    g.chain("in", "map", "out")
    line = cli_error("inspect", str(save(g, tmp_path / "bad.nmir")))
    assert "node 'map' (Reshape): cannot lay out the 12 elements" in line


@pytest.mark.parametrize("shape", [(), (4, 0), (-2, -3)])
def test_a_shape_without_elements_is_refused(shape):
    g = Graph("g")
    g.add("in", O.Input(shape=(6,)))
    g.add("map", O.Reshape(shape=shape))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "map", "out")
    with pytest.raises(GraphError, match=r"node 'map' \(Reshape\): "):
        g.verify()


@pytest.mark.parametrize("integer", [False, True])
def test_a_conv_reads_a_flat_layer_through_a_reshape_as_its_unflattened_twin(integer):
    """A flat layer read through a Reshape equals the same layer laid out as the conv's map (float and integer)."""
    x = (np.random.default_rng(1).random((12, 3, 12)) < 0.4).astype(np.int64 if integer else np.float64)
    flat, twin = flat_layer_into_conv(integer), _unflattened_twin(integer)
    ours = simulate(flat, x, record=True)
    theirs = simulate(twin, x, record=True)
    np.testing.assert_array_equal(ours.output, theirs.output)
    np.testing.assert_array_equal(ours.values["l1"], theirs.values["l1"].reshape(ours.values["l1"].shape))
    assert 0 < ours.output.mean() < 1 and 0 < ours.values["l1"].mean() < 1


def test_the_lowered_view_gives_the_conv_its_map_and_reads_the_flat_layer():
    view = lower_network(flat_layer_into_conv(integer=True))
    conv = view.projection("conv")
    assert (conv.source, conv.dest, conv.source_shape, conv.in_shape) == ("l1", "l2", (12,), (3, 2, 2))
    assert isinstance(conv.weights, ConvWeights) and conv.weights.in_shape == (3, 2, 2)
    assert conv.effective_matrix().shape == (18, 12)
    box = ((0, 2), (0, 1), (0, 1))               # output (y, x) = (0, 0) reads input (0, 0) of each channel
    np.testing.assert_array_equal(conv.flat_sources(box), [0, 4, 8])


def test_nir_export_writes_a_flat_reshape_and_refuses_a_map():
    from nmcompile.frontend.nir import graph_to_nir

    g = Graph("g")
    g.add("in", O.Input(shape=(2, 3)))
    g.add("map", O.Reshape(shape=(6,)))
    g.add("fc", O.Linear(weight=np.ones((2, 6))))
    g.add("n", O.IF(shape=(2,)))
    g.add("out", O.Output(shape=(2,)))
    g.chain("in", "map", "fc", "n", "out")
    assert type(graph_to_nir(g).nodes["map"]).__name__ == "Flatten"
    g = Graph("g")
    g.add("in", O.Input(shape=(2, 3)))
    g.add("map", O.Reshape(shape=(3, 2)))
    g.add("n", O.IF(shape=(3, 2)))
    g.add("out", O.Output(shape=(3, 2)))
    g.chain("in", "map", "n", "out")
    with pytest.raises(UnsupportedError, match=r"^node 'map' \(Reshape to \(3, 2\)\) cannot be written to NIR: NIR 1.0 "
                                               r"has Flatten but no reshape to several dimensions$"):
        graph_to_nir(g)


def test_a_conv_reading_a_map_as_another_map_takes_its_sources_in_c_order():
    """l1 (2, 4, 2) read as (4, 2, 2): output (y, x) = (0, 0) of a 1x1 conv reads unit (c, 0, 0) of the new map, i.e.
    flat unit 4c of l1, not a box of l1's own geometry."""
    g = Graph("map_map")
    g.add("in", O.Input(shape=(2, 4, 2)))
    g.add("id", O.QConv(weight=np.ones((2, 1, 1, 1)), groups=2))
    g.add("l1", O.QNeuron(shape=(2, 4, 2), vth=1))
    g.add("map", O.Reshape(shape=(4, 2, 2)))
    g.add("conv", O.QConv(weight=np.ones((3, 4, 1, 1))))
    g.add("l2", O.QNeuron(shape=(3, 2, 2), vth=1))
    g.add("out", O.Output(shape=(3, 2, 2)))
    g.chain("in", "id", "l1", "map", "conv", "l2", "out")
    conv = lower_network(g).projection("conv")
    np.testing.assert_array_equal(conv.flat_sources(((0, 3), (0, 1), (0, 1))), [0, 4, 8, 12])
    assert conv.synapses(((0, 3), (0, 2), (0, 2))) == 3 * 4 * 4
