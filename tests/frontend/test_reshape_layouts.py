"""Layout changes between layers in PyTorch models: nn.Unflatten and a view/reshape that is no flatten become a
Reshape, a partial nn.Flatten into a Conv1d stays a Flatten. The traced graphs give snnTorch's own spikes in float64.
On Loihi 2 (the target whose data layout differs from nmcompile's C order) the emitted network reads a reshaped
input or a map laid out anew, and a Linear feeds a map, bit-exactly in Lava; on SpiNNaker 2 a map read as another
map is partitioned and routed over several PEs bit-exactly under QEMU."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.errors import UnsupportedError
from nmcompile.frontend.check import compare, float64_model
from nmcompile.frontend.trace import graph_from_module
from nmcompile.ir.simulate import simulate
from nmcompile.runtime.hil import verify_artifact
from tests.frontend import reshape_models as R

LAYOUTS = {"unflatten_into_conv": ("Reshape", (4, 3, 3)), "view_input_into_conv": ("Reshape", (2, 6, 6)),
           "rows_into_conv1d": ("Flatten", (4, 36)), "map_into_another_map": ("Reshape", (16, 3, 3)),
           "linear_into_a_map": ("Reshape", (4, 3, 3))}


@pytest.mark.parametrize("factory", sorted(R.SHAPES))
def test_layout_changes_are_traced_exactly(factory):
    model, shape = getattr(R, factory)(), R.SHAPES[factory]
    graph, trace = graph_from_module(model, shape)
    kind, layout = LAYOUTS[factory]
    shapes = graph.shapes()
    changed = [n for n in graph.order() if graph.node(n).kind in ("Reshape", "Flatten") and len(shapes[n]) > 1]
    assert [(graph.node(n).kind, shapes[n]) for n in changed] == [(kind, layout)]
    x = (np.random.default_rng(0).random((25, 3, *shape)) < 0.35).astype(np.float64)
    with float64_model(model) as m64:
        assert compare(m64, graph, trace, x, "float64").mismatches == 0
    assert 0 < simulate(graph, x).output.mean() < 1


def test_unflattening_the_batch_is_refused_in_one_line():
    model = nn.Sequential(nn.Linear(12, 36), snn.Leaky(beta=0.8, init_hidden=True), nn.Unflatten(0, (1, -1)),
                          nn.Flatten(0, 1))
    with pytest.raises(UnsupportedError, match=r"^module '2': Unflatten\(dim=0\) splits the batch dimension$"):
        graph_from_module(model, (12,))


@pytest.mark.parametrize("factory", ["view_input_into_conv", "rows_into_conv1d", "linear_into_a_map"])
def test_loihi2_reads_a_reshaped_input_and_a_map_laid_out_anew_bit_exactly(factory, tmp_path):
    torch.save(getattr(R, factory)().state_dict(), tmp_path / "m.pt")
    options = SourceOptions(model=f"tests.frontend.reshape_models:{factory}", input_shape=R.SHAPES[factory])
    compile_network(CompileRequest(source=tmp_path / "m.pt", target="loihi2", out=tmp_path / "out", options=options,
                                   reference_samples=2), log=lambda m: None)
    result = verify_artifact(tmp_path / "out", "lava://?states=1")
    assert result.passed, "\n".join(result.lines())
    assert "(0 spikes)" not in "\n".join(result.lines()), "the output is silent: the comparison would be vacuous"



def test_a_map_read_as_another_map_is_bit_exact_on_spinnaker2_split_over_cores(tmp_path):
    """The conv's sources are the old map's units in C order, its geometry the new map's: partitioning and routing
    over 11 PEs (20 neurons each) follow the same rule."""
    factory = "map_into_another_map"
    torch.save(getattr(R, factory)().state_dict(), tmp_path / "m.pt")
    options = SourceOptions(model=f"tests.frontend.reshape_models:{factory}", input_shape=R.SHAPES[factory])
    compile_network(CompileRequest(source=tmp_path / "m.pt", target="spinnaker2", out=tmp_path / "out", options=options,
                                   reference_samples=2, target_overrides={"neurons_per_core": 20}), log=lambda m: None)
    assert "11 core(s) on 1 chip(s)" in (tmp_path / "out" / "report.md").read_text()
    result = verify_artifact(tmp_path / "out", "qemu://")
    assert result.passed, "\n".join(result.lines())
    assert "(0 spikes)" not in "\n".join(result.lines()), "the output is silent: the comparison would be vacuous"


def test_no_netx_file_for_a_conv_reading_a_flat_layer_as_a_map():
    """netx's only layout change is a flatten: model.net is left out (with the reason) rather than written wrong."""
    from nmcompile.backends.loihi.netx import netx_bytes
    from nmcompile.lowered import lower_network
    from tests.ir.test_reshape import flat_layer_into_conv

    data, why = netx_bytes(lower_network(flat_layer_into_conv(integer=True)))
    assert data is None and why == ("'conv' reads 'l1' (12,) laid out as (3, 2, 2) (a Reshape); netx's only layout "
                                    "change is a flatten")
