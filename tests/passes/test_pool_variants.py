"""Pool variants (1-D, padding, count_include_pad, ceil_mode, divisor_override) before and after neurons: the
frontend graph and the fused graph equal the snnTorch model spike for spike in float64, the fused graph holds no
pool, they compile for every target with the rewrite in report.md; variants without a convolution form become one
sparse (CSR) projection, refused naming the module and its options only where that cannot apply; the layer such a
projection makes flat feeds a conv (or the output) through a Reshape."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.errors import UnsupportedError
from nmcompile.frontend.check import compare, float64_model
from nmcompile.frontend.trace import graph_from_module
from nmcompile.ir import ops as O
from nmcompile.ir.simulate import simulate
from nmcompile.passes import PassError, run_pipeline
from tests.passes import pool_models as P
from tests.passes.test_retime_fuse import same_spikes

POOL_KINDS = ("AvgPool1d", "AvgPool2d", "SumPool1d", "SumPool2d", "Scale")


def _exact(model: nn.Module, shape: tuple[int, ...], seed: int = 0):
    graph, trace = graph_from_module(model, shape)
    x = (np.random.default_rng(seed).random((25, 3, *shape)) < 0.35).astype(np.float64)
    fused = run_pipeline(graph, ["fuse_projections"])
    assert not fused.of_kind(*POOL_KINDS)
    same_spikes(graph, fused, x)
    with float64_model(model) as m64:
        agreement = compare(m64, fused, trace, x, "float64")
    assert agreement.mismatches == 0, agreement
    assert 0 < simulate(fused, x).output.mean() < 1
    return graph, fused


@pytest.mark.parametrize("factory", ["pools_1d", "pools_1d_ceil"])
def test_1d_pools_are_exact(factory):
    _exact(getattr(P, factory)(), P.SHAPE_1D)


@pytest.mark.parametrize("options", [
    {"padding": 1}, {"padding": 1, "count_include_pad": False}, {"ceil_mode": True},
    {"padding": 1, "ceil_mode": True}, {"padding": 1, "ceil_mode": True, "count_include_pad": False},
    {"padding": 1, "divisor_override": 5}, {"ceil_mode": True, "divisor_override": 2}])
def test_avgpool2d_options_before_a_linear_are_exact(options):
    _exact(P.avgpool_2d(**options), P.SHAPE_2D)


def test_padded_pool_into_an_unpadded_conv_is_exact():
    _exact(P.padded_pool_into_conv(), P.SHAPE_2D)


def test_maxpool2d_ceil_mode_over_spikes_is_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), P._leaky(0.8), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 5), P._leaky(0.9))
    _exact(P._gain(model, 1.5), P.SHAPE_2D)


SPARSE = ("padded_pool_on_currents", "ceil_pool_on_currents", "padded_pool_on_currents_1d", "divisor_pool_into_conv",
          "padded_pool_into_padded_conv")


@pytest.mark.parametrize("factory", SPARSE)
def test_variants_without_a_conv_form_become_one_exact_sparse_projection(factory):
    _, fused = _exact(getattr(P, factory)(), P.SHAPE_1D if factory.endswith("1d") else P.SHAPE_2D)
    assert len(fused.of_kind("SparseLinear")) == 1


def test_sparse_projection_is_the_composed_matrix_and_bias():
    """One unit spike on the flat input of the composed map equals the chain Conv -> padded AvgPool in torch."""
    from nmcompile.passes.fuse_sparse import composed_map

    model = P.padded_pool_on_currents()
    graph, _ = graph_from_module(model, P.SHAPE_2D)
    avg, shapes = graph.node("1"), graph.shapes()
    pool = O.SumPool2d(kernel_size=avg.kernel_size, stride=avg.stride, padding=avg.padding)
    chain = [graph.node("0"), pool, O.Scale(scale=np.array(1 / 9))]
    indptr, indices, values, bias = composed_map(chain, [P.SHAPE_2D, shapes["0"], shapes["1"]])
    dense = np.zeros((indptr.size - 1, int(np.prod(P.SHAPE_2D))))
    dense[np.repeat(np.arange(indptr.size - 1), np.diff(indptr)), indices] = values
    torch_conv, torch_pool = model[:2]
    x = torch.from_numpy(np.random.default_rng(1).random((1, *P.SHAPE_2D)))
    with torch.no_grad():
        want = torch_pool(torch_conv.double()(x)).reshape(-1).numpy()
    np.testing.assert_allclose(dense @ x.numpy().reshape(-1) + bias, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("factory", ["sparse_pool_into_conv", "sparse_pool_into_conv_1d"])
def test_a_layer_made_flat_by_a_sparse_projection_feeds_a_conv_through_a_reshape(factory):
    """Conv -> AvgPool(2, padding 1) -> Leaky -> padded Conv: float64 spikes equal snnTorch's own forward."""
    shape = P.SHAPE_1D if factory.endswith("1d") else P.SHAPE_2D
    _, fused = _exact(getattr(P, factory)(), shape)
    (sparse,), (reshape,) = fused.of_kind("SparseLinear"), fused.of_kind("Reshape")
    layer, conv = fused.in_edges(reshape)[0].src, fused.out_edges(reshape)[0].dst
    shapes = fused.shapes()
    assert fused.trace_forward(sparse).end == layer and len(shapes[layer]) == 1
    assert fused.node(conv).kind == f"Conv{len(shape) - 1}d"
    assert shapes[reshape] == ((4, 8) if factory.endswith("1d") else (4, 4, 4))    # the pooled map: 14 -> 8, 7 -> 4


def test_a_sparse_chain_reads_a_layer_made_flat_through_its_reshape():
    _, fused = _exact(P.sparse_pools_in_a_row(), P.SHAPE_2D)
    first, second = fused.of_kind("SparseLinear")
    assert fused.trace_back(second).end == fused.trace_forward(first).end       # the flat layer, Reshape absorbed
    (reshape,) = fused.of_kind("Reshape")
    assert fused.trace_back(reshape).end == fused.trace_forward(second).end and fused.shapes()[reshape] == (3, 3, 3)


def test_a_layer_made_flat_by_a_sparse_projection_is_output_through_a_reshape():
    model = P._gain(nn.Sequential(nn.Conv2d(2, 4, 3), nn.AvgPool2d(2, stride=2, ceil_mode=True), P._leaky(0.8)), 1.5)
    _, fused = _exact(model, P.SHAPE_2D)
    (reshape,) = fused.of_kind("Reshape")
    assert fused.out_edges(reshape)[0].dst == fused.outputs[0] and fused.shapes()[reshape] == (4, 4, 4)


def test_a_sparse_matrix_beyond_the_limit_is_refused(monkeypatch):
    from nmcompile.passes import fuse_sparse

    monkeypatch.setattr(fuse_sparse, "MAX_SPARSE_NONZEROS", 100)
    graph, _ = graph_from_module(P.padded_pool_on_currents(), P.SHAPE_2D)
    with pytest.raises(PassError, match=r"pool '1' .*padding \(1, 1\) pools the currents of conv '0' .*would exceed "
                                        r"100 non-zeros"):
        run_pipeline(graph, ["fuse_projections"])


def test_maxpool1d_over_currents_is_refused_with_the_reason():
    with pytest.raises(UnsupportedError, match="module '1': MaxPool1d over currents is refused.*use AvgPool1d"):
        graph_from_module(nn.Sequential(nn.Conv1d(2, 3, 3), nn.MaxPool1d(2), P._leaky(0.9)), P.SHAPE_1D)


@pytest.mark.parametrize("factory", ["pools_1d", "avgpool_2d_ceil_no_pad", "divisor_pool_into_conv",
                                     "sparse_pool_into_conv_1d"])
@pytest.mark.parametrize("target", ["loihi2", "spinnaker2", "fpga"])
def test_pool_variants_compile_for_every_target(tmp_path, factory, target):
    model = getattr(P, factory)()
    shape = P.SHAPE_1D if "1d" in factory else P.SHAPE_2D
    torch.save(model.state_dict(), tmp_path / "m.pt")
    options = SourceOptions(model=f"tests.passes.pool_models:{factory}", input_shape=shape)
    compile_network(CompileRequest(source=tmp_path / "m.pt", target=target, out=tmp_path / "out", options=options,
                                   stop_after="partition", reference_samples=1))
    report = (tmp_path / "out" / "report.md").read_text()
    if factory in SPARSE or factory.startswith("sparse_"):
        assert re.search(r"stored as a sparse matrix of \d+ non-zeros: no convolution form", report)
        return
    assert "sum pool fused into" in report
    assert ("folded into it" in report) == (factory == "pools_1d")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed")
def test_sparse_pool_projection_is_bit_exact_on_the_fpga_rtl(tmp_path):
    """A padded pool on conv currents, stored as a sparse matrix, runs under Verilator equal to the reference."""
    from nmcompile.runtime.hil import verify_artifact

    factory = "padded_pool_on_currents_1d"
    torch.save(getattr(P, factory)().state_dict(), tmp_path / "m.pt")
    options = SourceOptions(model=f"tests.passes.pool_models:{factory}", input_shape=P.SHAPE_1D)
    compile_network(CompileRequest(source=tmp_path / "m.pt", target="fpga", out=tmp_path / "out", options=options,
                                   reference_samples=1))
    assert "stored as a sparse matrix" in (tmp_path / "out" / "report.md").read_text()
    result = verify_artifact(tmp_path / "out", "verilator://")
    assert result.passed, "\n".join(result.lines())
    assert "(0 spikes)" not in "\n".join(result.lines()), "the output is silent: the comparison would be vacuous"
