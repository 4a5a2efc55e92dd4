"""NIR's pools (SumPool2d, AvgPool2d; NIR 1.0 has no max pool node): on currents after a conv and on spikes with
padding before a conv, exact through fuse_projections and compiled for every target with the rewrite reported."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from nmcompile.api import CompileRequest, compile_network
from nmcompile.frontend.nir import read_nir
from nmcompile.passes import run_pipeline
from tests.passes.test_retime_fuse import same_spikes

DT = 1e-4


def pools_graph(rng) -> nir.NIRGraph:
    """Conv -> AvgPool2d (currents) -> IF -> SumPool2d (padding 1, spikes) -> Conv (no padding) -> IF -> Affine."""
    return nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([2, 8, 8])),
        nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0.3, 0.5, (4, 2, 3, 3)), stride=1, padding=1, dilation=1,
                   groups=1, bias=np.zeros(4)),
        nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.IF(r=np.full((4, 4, 4), 1 / DT), v_threshold=np.full((4, 4, 4), 0.5)),
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1])),
        nir.Conv2d(input_shape=(3, 3), weight=rng.normal(0.3, 0.5, (3, 4, 2, 2)), stride=1, padding=0, dilation=1,
                   groups=1, bias=np.zeros(3)),
        nir.IF(r=np.full((3, 2, 2), 1 / DT), v_threshold=np.full((3, 2, 2), 1.0)),
        nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
        nir.Affine(weight=rng.normal(0.3, 1, (3, 12)), bias=np.zeros(3)),
        nir.IF(r=np.full(3, 1 / DT), v_threshold=np.ones(3)),
        nir.Output(output_type=np.array([3])),
    )


@pytest.fixture
def nir_file(tmp_path):
    path = tmp_path / "pools.nir"
    nir.write(str(path), pools_graph(np.random.default_rng(2)))
    return path


def test_nir_pools_fuse_exactly(nir_file):
    graph = read_nir(nir_file, dt=DT)
    assert graph.of_kind("AvgPool2d") and graph.of_kind("SumPool2d")
    fused = run_pipeline(graph, ["fuse_projections"])
    assert not fused.of_kind("AvgPool2d", "SumPool2d", "Scale")
    x = (np.random.default_rng(0).random((30, 3, 2, 8, 8)) < 0.4).astype(np.float64)
    same_spikes(graph, fused, x)


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2", "fpga"])
def test_nir_pools_compile_for_every_target(nir_file, tmp_path, target):
    compile_network(CompileRequest(source=nir_file, target=target, out=tmp_path / "out", stop_after="partition",
                                   reference_samples=1))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "folded into it" in report and "sum pool fused into" in report
