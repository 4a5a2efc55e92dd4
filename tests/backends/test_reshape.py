"""A layer made flat by a sparse (CSR) pool projection, read by convolutions through Reshapes (the conformance
network 'reshape' runs it bit-exactly on every board): the fpga still stores such a conv as its kernel, with the
geometry of the map the Reshape gives it."""

from __future__ import annotations

import numpy as np

from nmcompile import artifact
from nmcompile.lowered import lower_network
from tests.backends.networks import compile_graph, sparse_pool_conv


def test_the_fpga_stores_a_conv_reading_a_flat_layer_through_a_reshape_as_its_kernel(tmp_path):
    rng = np.random.default_rng(0)
    graph = sparse_pool_conv(rng)
    calibration = (rng.random((20, 2, *graph.node("in").shape)) < 0.3).astype(np.int64)
    out = compile_graph(graph, tmp_path, calibration, "fpga")
    view = lower_network(artifact.read(out).graph)
    conv2d, conv1d = view.projection("c2"), view.projection("c3")
    assert view.layers["l1"].shape == (36,)
    assert (conv2d.source, conv2d.source_shape, conv2d.weights.in_shape) == ("l1", (36,), (4, 3, 3))
    assert (conv1d.source, conv1d.source_shape, conv1d.weights.in_shape) == ("l1", (36,), (4, 9))
    report = (out / "report.md").read_text()
    assert "convolutions stored as kernels: c2;" in report      # c3's dilation has no kernel form on the fpga
