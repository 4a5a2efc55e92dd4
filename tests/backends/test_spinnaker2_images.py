"""spinnaker2 PE images cut from each projection's stored form (kernel, CSR, matrix) per PE: byte-identical to the
images built from the dense expansion (`effective_matrix`), and to those the emitter wrote before it cut rows
(sha256 recorded from it); the partitioner's memory per core bounds the image and state the emitter writes (equal
where no synapse is dropped), so a partition it accepts always emits."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from nmcompile.backends import get_backend
from nmcompile.backends.spinnaker2.emit import network_files
from nmcompile.backends.spinnaker2.lower import lower
from nmcompile.backends.spinnaker2.pyspinnaker2 import script
from nmcompile.lowered import Projection, lower_network
from nmcompile.passes import PassContext, run_pipeline
from nmcompile.targets import get_target
from tests.backends.networks import NETWORKS

MANY_PES = {"neurons_per_core": 7}
MANY_CHIPS = {"neurons_per_core": 7, "cores_per_chip": 3}

# sha256 over "name:sha256(image)\n" of every PE image (sorted by name), written by the emitter before it cut a PE's
# rows from the stored forms (it expanded every projection with effective_matrix). An intended change of the image
# format or of an earlier pass changes these: recompute them from the emitter of that change.
BEFORE = {
    ("conv", "many-pes"): "b02aff99cd2c36ba48ca6c5392c0ee012a09f995b9d1d563c1e24bbb5e4299d5",
    ("delays", "many-chips"): "1073c2a6226b89e7441b6afd26ea57b596d96852e359711b0ee4bf9bf77d31d7",
    ("sparse", "many-pes"): "0acaea3aaef9bf658399f394424ac54e14d627abe9b73966e4a70023d05e8899",
}
LAYOUTS = {"many-pes": MANY_PES, "many-chips": MANY_CHIPS}


def compiled(network: str, layout: dict):
    rng = np.random.default_rng(0)
    graph = NETWORKS[network](rng)
    x = (rng.random((30, 2, *graph.node("in").shape)) < 0.3).astype(np.int64)
    target = get_target("spinnaker2", **layout)
    g = run_pipeline(graph, list(get_backend("spinnaker2").pipeline), PassContext(target=target, calibration=x))
    return g, lower_network(g), target


def dense_synapses(self: Projection, rows=None):
    """The synapses as the emitter took them before: non-zero entries of the expanded matrix's rows."""
    matrix = self.effective_matrix()
    matrix = matrix if rows is None else matrix[np.asarray(rows, dtype=np.int64)]
    post, pre = np.nonzero(matrix)
    return post, pre, matrix[post, pre]


@pytest.mark.parametrize("network", ["conv", "sparse", "delays"])
def test_images_equal_the_dense_expansion(network, monkeypatch):
    """PE images, routing, placement and the py-spinnaker2 script's connection lists."""
    _, view, target = compiled(network, MANY_PES)
    cut = network_files(view, lower(view, target)) | {"script": script(view).encode()}
    monkeypatch.setattr(Projection, "effective_synapses", dense_synapses)
    expanded = network_files(view, lower(view, target)) | {"script": script(view).encode()}
    assert sorted(cut) == sorted(expanded)
    for name in cut:
        assert cut[name] == expanded[name], name


@pytest.mark.parametrize("network,layout", sorted(BEFORE))
def test_images_equal_the_emitter_before_row_cuts(network, layout):
    _, view, target = compiled(network, LAYOUTS[layout])
    files = network_files(view, lower(view, target))
    listing = "".join(f"{name}:{hashlib.sha256(data).hexdigest()}\n" for name, data in sorted(files.items())
                      if name.startswith("spinnaker2/pe_"))
    assert hashlib.sha256(listing.encode()).hexdigest() == BEFORE[(network, layout)]


@pytest.mark.parametrize("layout", [{}, MANY_PES], ids=["whole-layers", "many-pes"])
@pytest.mark.parametrize("network", ["conv", "sparse", "delays", "recurrent", "mlp_bias", "mpbn"])
def test_partition_memory_bounds_every_pe_image(network, layout):
    """Per PE: bits the partitioner counted >= 8 x (image + state bytes); equal unless the emitter drops synapses
    (CSR entries whose weight truncates to 0). Networks with convolutions over several source PEs, CSR rows,
    per-synapse delays, a recurrent projection, bias sources from the host."""
    g, view, target = compiled(network, layout)
    design = lower(view, target)
    counted = g.mapping.core_use[[pe.core for pe in design.pes], 1]
    written = 8 * np.array([len(pe.image) + 4 * pe.state_words for pe in design.pes])
    assert np.all(counted >= written), (counted - written).min()
    if network != "sparse":
        np.testing.assert_array_equal(counted, written)
