"""The fused model of the emulated SpiNNaker 2 board (`FusedModelSession`, every PE in one set of arrays) gives
exactly the outputs of one ModelPe per PE stepped through the routing tables (`NetworkSession`), tick by tick, for
every test network (delays, biases, recurrence, readouts, start steps, sparse projections) spread over many PEs on
several chips."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.runtime.spinnaker2_model import FusedModelSession
from nmcompile.runtime.spinnaker2_session import NetworkSession
from tests.backends.networks import NETWORKS
from tests.backends.test_spinnaker2 import compiled, model_network, write


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_the_fused_model_steps_like_one_model_pe_per_pe(network, tmp_path):
    rng = np.random.default_rng(1)
    graph = NETWORKS[network](rng)
    x = (rng.random((30, 2, *graph.node("in").shape)) < 0.3).astype(np.int64)
    _, view, target = compiled(graph, x, neurons_per_core=7, cores_per_chip=3)
    root = write(view, target, tmp_path)
    per_pe, fused = NetworkSession(model_network(root)), FusedModelSession(model_network(root))
    seen = 0
    for b in range(x.shape[1]):                         # a second sample checks that reset clears everything
        per_pe.reset()
        fused.reset()
        for t in range(x.shape[0]):
            expected, got = per_pe.step(x[t, b]), fused.step(x[t, b])
            assert expected.keys() == got.keys()
            for name, values in expected.items():
                np.testing.assert_array_equal(got[name], values, err_msg=f"{network}: {name}, step {t}, sample {b}")
                seen += int(np.abs(values).sum())
    assert seen > 0, "silent network"
