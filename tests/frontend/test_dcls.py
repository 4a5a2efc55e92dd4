"""DCLS (Dcls1d over time): learned positions rounded to per-synapse delays, float64-identical to the model's own
forward, compiled to DelayDense (Lava, bit-exact) and to the SpiNNaker 2 delay ring (QEMU, bit-exact); the deployed
accuracy on a coincidence task depends on the delays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmcompile import artifact
from nmcompile.api import CompileRequest, SourceOptions, compile_network, load_source
from nmcompile.errors import NmcError
from nmcompile.frontend.dcls import forward
from nmcompile.ir.simulate import simulate
from tests.frontend import dcls_models

MODEL = "tests.frontend.dcls_models:delay_net"


def checkpoint(tmp_path, same_positions: bool = False):
    model = dcls_models.delay_net()
    if same_positions:  # every synapse at one position: one delay for all, the lag cannot be detected
        with torch.no_grad():
            model.syn.P.fill_(2.8)
    path = tmp_path / ("flat.pt" if same_positions else "delays.pt")
    torch.save(model.state_dict(), path)
    return path


def deployed_accuracy(out) -> float:
    """Accuracy of the compiled integer reference on the task (outputs shifted back by the latency)."""
    art = artifact.read(out)
    x, labels = dcls_models.coincidence_task(200, seed=7)
    padded = np.concatenate([x, np.zeros((art.latency, *x.shape[1:]))]).astype(np.int64)
    return dcls_models.accuracy(simulate(art.graph, padded).output[art.latency:], labels)


def test_loads_with_model_and_equals_its_own_forward(tmp_path):
    source = load_source(checkpoint(tmp_path), SourceOptions(model=MODEL))
    linear = source.graph.node("syn")
    assert linear.delays.tolist() == [[0, 1], [dcls_models.LAG, 0]]
    x, _ = dcls_models.coincidence_task(64, seed=3)
    model = dcls_models.delay_net().double()
    theirs = forward(model, x)
    ours = simulate(source.graph, x).output
    assert np.array_equal(ours, theirs) and ours.any()


def test_a_forward_that_is_not_causal_is_refused(tmp_path):
    class Centered(dcls_models.DelayNet):
        def forward(self, x):
            h = torch.nn.functional.pad(x.permute(1, 2, 0), (3, 4))
            h = self.syn(h).permute(2, 0, 1)
            return torch.stack([self.lif(h[t]) for t in range(h.shape[0])])

    from nmcompile.frontend.dcls import check_against_forward, graph_from_dcls_model

    model = Centered()
    with pytest.raises(NmcError, match="left-padded by dilated_kernel_size - 1"):
        check_against_forward(model, graph_from_dcls_model(model, (2,)))


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2"])
def test_compiled_accuracy_depends_on_the_delays(tmp_path, target):
    accuracies = []
    for flat in (False, True):
        out = tmp_path / f"{target}-{flat}"
        compile_network(CompileRequest(source=checkpoint(tmp_path, flat), target=target, out=out,
                                       options=SourceOptions(model=MODEL), reference_samples=2))
        accuracies.append(deployed_accuracy(out))
    assert accuracies[0] == 1.0 and accuracies[1] <= 0.6, accuracies


def test_fpga_refuses_per_synapse_delays_naming_the_projection(tmp_path):
    with pytest.raises(NmcError, match=r"projection 'syn'.*a delay per synapse \(1\.\.5 steps\).*supported by: "
                                       r"loihi2, spinnaker2"):
        compile_network(CompileRequest(source=checkpoint(tmp_path), target="fpga", out=tmp_path / "fpga",
                                       options=SourceOptions(model=MODEL)))


@pytest.mark.slow
def test_delay_dense_in_lava_and_delay_ring_on_qemu_are_bit_exact(tmp_path):
    from tests.backends.test_loihi2 import assert_conformant
    from tests.backends.test_spinnaker2 import verify_on_qemu

    for target in ("loihi2", "spinnaker2"):
        out = tmp_path / target
        compile_network(CompileRequest(source=checkpoint(tmp_path), target=target, out=out,
                                       options=SourceOptions(model=MODEL), reference_samples=4))
        if target == "loihi2":
            assert "DelayDense(" in (out / "lava_network.py").read_text()
            assert_conformant(out)
        else:
            verify_on_qemu(out)
