"""SparseLinear quantization: the integer CSR projection carries exactly the integers, exponent and sign mode the
dense Linear with the same synapses gets, for every target, and simulates to the same spikes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from nmcompile.errors import NmcError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.targets import TARGETS
from tests.backends.networks import sparse
from tests.passes.test_quantize import quantize


def as_dense(graph: Graph) -> Graph:
    """The same network with every SparseLinear written out as a dense Linear (absent synapses are zeros)."""
    dense = graph.copy()
    for name in graph.of_kind("SparseLinear"):
        op = graph.node(name)
        matrix = csr_matrix((op.values, op.indices, op.indptr), shape=(op.out_features, op.in_features)).toarray()
        dense.replace_node(name, O.Linear(weight=matrix))
    return dense


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_quantizes_like_its_dense_twin(target, seed):
    graph = sparse(np.random.default_rng(seed))
    x = (np.random.default_rng(seed + 10).random((40, 4, 20)) < 0.3).astype(np.int64)
    q_sparse, ctx = quantize(graph, target, x)
    q_dense, _ = quantize(as_dense(graph), target, x)
    for name in graph.of_kind("SparseLinear"):
        ours, theirs = q_sparse.node(name), q_dense.node(name)
        assert ours.kind == "QSparseLinear" and theirs.kind == "QLinear"
        matrix = csr_matrix((ours.values, ours.indices, ours.indptr), shape=theirs.weight.shape).toarray()
        np.testing.assert_array_equal(matrix, theirs.weight)
        assert (ours.weight_exp, ours.sign_mode, ours.num_weight_bits, ours.delay) == (
            theirs.weight_exp, theirs.sign_mode, theirs.num_weight_bits, int(theirs.delay))
    assert {q_sparse.node(n).sign_mode for n in graph.of_kind("SparseLinear")} >= (
        {"excitatory"} if TARGETS[target].sign_modes else {"mixed"})
    ours, theirs = simulate(q_sparse, x, record=True), simulate(q_dense, x, record=True)
    assert theirs.output.any()
    np.testing.assert_array_equal(ours.output, theirs.output)
    for layer in ("l1", "l2"):
        np.testing.assert_array_equal(ours.values[layer], theirs.values[layer])
    assert "spike agreement" in "\n".join(ctx.reports["quantize"].lines())


def test_sparse_projection_with_differing_input_delays_is_refused():
    graph = sparse(np.random.default_rng(0))
    graph.add("lag", O.Delay(delay=np.arange(20) % 2))
    graph.remove_edge(graph.in_edges("fc1")[0])
    graph.chain("in", "lag", "fc1")
    with pytest.raises(NmcError, match="sparse projection 'fc1': its inputs arrive with different delays"):
        quantize(graph, "fpga")
