"""Pools around projections: AvgPool/SumPool on currents folded into the preceding conv, MaxPool over spikes as
a sum pool into an OR layer; float64 spike identity, compiled for every target (through partition), one verified."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.errors import UnsupportedError
from nmcompile.frontend.check import compare, float64_model
from nmcompile.frontend.trace import graph_from_module
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.passes import run_pipeline
from tests.frontend import factories as F
from tests.passes.test_retime_fuse import same_spikes

MODELS = {"avg": "conv_avgpool", "max": "conv_maxpool"}


def conv_pool_neuron(rng, k, s, p, d, pool_kernel, pool_stride, pool="avg", pool_padding=0) -> Graph:
    g = Graph("conv_pool")
    g.add("in", O.Input(shape=(2, 9, 9)))
    g.add("c", O.Conv2d(weight=rng.normal(0.2, 0.5, (4, 2, k, k)), bias=rng.normal(0, 0.1, 4), stride=s, padding=p,
                        dilation=d))
    g.add("p", (O.AvgPool2d if pool == "avg" else O.SumPool2d)(kernel_size=pool_kernel, stride=pool_stride,
                                                                padding=pool_padding))
    g.chain("in", "c", "p")
    shape = g.shapes()["p"]
    g.add("l", O.LIF(shape=shape, beta=0.8, threshold=0.5))
    g.add("out", O.Output(shape=shape))
    g.chain("p", "l", "out")
    return g


@pytest.mark.parametrize(("k", "s", "p", "d", "pk", "ps", "pool"), [
    (3, 1, 1, 1, 2, 2, "avg"), (3, 2, 1, 1, 3, 1, "sum"), (2, 1, 0, 2, 2, 1, "avg"),
    (3, 1, 0, 1, (2, 3), (1, 2), "avg"), (1, 1, 0, 1, 3, 3, "sum")])
def test_pool_on_currents_folds_into_the_conv(k, s, p, d, pk, ps, pool):
    rng = np.random.default_rng(0)
    g = conv_pool_neuron(rng, k, s, p, d, pk, ps, pool)
    fused = run_pipeline(g, ["fuse_projections"])
    assert [fused.node(n).kind for n in fused.order()] == ["Input", "Conv2d", "LIF", "Output"]
    same_spikes(g, fused, (rng.random((20, 2, 2, 9, 9)) < 0.4).astype(np.float64))


def test_padded_pool_on_currents_becomes_a_sparse_projection_and_the_output_reads_it_through_a_reshape():
    rng = np.random.default_rng(0)
    g = conv_pool_neuron(rng, 3, 1, 1, 1, 3, 1, "avg", pool_padding=1)
    fused = run_pipeline(g, ["fuse_projections"])
    assert [fused.node(n).kind for n in fused.order() if fused.node(n).kind not in ("Constant", "Linear")] == [
        "Input", "Flatten", "SparseLinear", "LIF", "Reshape", "Output"]
    same_spikes(g, fused, (rng.random((20, 2, 2, 9, 9)) < 0.4).astype(np.float64))


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_torch_pool_models_are_float64_identical_before_and_after_fuse(kind):
    model = getattr(F, MODELS[kind])()
    graph, trace = graph_from_module(model, F.POOL_INPUT_SHAPE)
    x = (np.random.default_rng(1).random((30, 3, *F.POOL_INPUT_SHAPE)) < 0.3).astype(np.float64)
    fused = run_pipeline(graph, ["fuse_projections"])
    assert not fused.of_kind("AvgPool2d", "SumPool2d", "Scale")
    same_spikes(graph, fused, x)
    with float64_model(model) as m64:   # the snnTorch model itself, in float64, against the fused graph
        agreement = compare(m64, fused, trace, x, "float64")
    assert agreement.mismatches == 0, agreement
    assert 0 < simulate(fused, x).output.mean() < 1


def test_maxpool_layer_costs_a_step_that_retime_balances():
    graph, _ = graph_from_module(F.conv_maxpool(), F.POOL_INPUT_SHAPE)
    x = (np.random.default_rng(2).random((30, 2, *F.POOL_INPUT_SHAPE)) < 0.3).astype(np.float64)
    fused = run_pipeline(graph, ["fuse_projections"])
    retimed = run_pipeline(fused, ["retime"])
    assert retimed.latency == 5   # 3 neuron layers of the source + 2 OR layers, one step per projection
    same_spikes(fused, retimed, x, shift=retimed.latency)


def _source(tmp_path, kind):
    model = getattr(F, MODELS[kind])()
    torch.save(model.state_dict(), tmp_path / f"{kind}.pt")
    return tmp_path / f"{kind}.pt", SourceOptions(model=f"tests.frontend.factories:{MODELS[kind]}",
                                                  input_shape=F.POOL_INPUT_SHAPE)


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("target", ["loihi2", "spinnaker2", "fpga"])
def test_pool_models_compile_through_partition(tmp_path, kind, target):
    path, options = _source(tmp_path, kind)
    compile_network(CompileRequest(source=path, target=target, out=tmp_path / "out", options=options,
                                   stop_after="partition", reference_samples=1))
    report = (tmp_path / "out" / "report.md").read_text()
    assert ("folded into it" if kind == "avg" else "sum pool fused into") in report


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_pool_models_compile_and_verify_on_spinnaker2(tmp_path, kind):
    from nmcompile.runtime.hil import verify_artifact

    path, options = _source(tmp_path, kind)
    out = tmp_path / "out"
    compile_network(CompileRequest(source=path, target="spinnaker2", out=out, options=options, reference_samples=1))
    result = verify_artifact(out, "qemu://")
    assert result.passed, "\n".join(result.lines())


def test_maxpool_over_currents_is_refused_with_the_reason():
    with pytest.raises(UnsupportedError) as err:
        graph_from_module(F.with_maxpool(), (1, 6, 6))
    message = str(err.value)
    assert "\n" not in message
    assert "MaxPool2d over currents is refused: a max of currents has no integer/spiking form" in message
    assert "use AvgPool2d, or move the pool after the neuron" in message
