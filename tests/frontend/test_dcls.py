"""DCLS (Dcls1d over time): a tiny delay model trained here on a coincidence task; its learned positions, rounded,
become per-synapse delays, float64-identical to the model's own forward, compiled to DelayDense (Lava, bit-exact),
to the SpiNNaker 2 delay ring (QEMU, bit-exact) and to one FPGA table entry per delay (Verilator, bit-exact); the
deployed accuracy depends on the delays."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from nmcompile import artifact
from nmcompile.api import CompileRequest, SourceOptions, compile_network, load_source
from nmcompile.errors import NmcError
from nmcompile.frontend.dcls import check_against_forward, forward, graph_from_dcls_model
from nmcompile.ir.simulate import simulate
from nmcompile.runtime.hil import verify_artifact
from tests.frontend import dcls_models

MODEL = "tests.frontend.dcls_models:delay_net"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[dcls_models.DelayNet, object]:
    """The trained model and its state dict saved as a checkpoint."""
    model = dcls_models.train(dcls_models.delay_net())
    path = tmp_path_factory.mktemp("dcls") / "trained.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_loads_with_model_and_equals_its_own_forward(trained):
    model, path = trained
    source = load_source(path, SourceOptions(model=MODEL))
    delays = source.graph.node("syn").delays
    assert delays[0, 0] - delays[0, 1] == dcls_models.LAG, delays
    x, _ = dcls_models.coincidence_task(64, seed=3)
    twin = dcls_models.delay_net()
    twin.load_state_dict(model.state_dict())
    theirs = forward(twin.double(), x)
    ours = simulate(source.graph, x).output
    assert np.array_equal(ours, theirs) and ours.any()


def test_a_forward_that_is_not_causal_is_refused():
    class Centered(dcls_models.DelayNet):
        def forward(self, x):
            h = torch.nn.functional.pad(x.permute(1, 2, 0), (4, 4))
            h = self.syn(h).permute(2, 0, 1)
            return torch.stack([self.lif(h[t]) for t in range(h.shape[0])])

    model = Centered()
    with pytest.raises(NmcError, match="left-padded by dilated_kernel_size - 1"):
        check_against_forward(model, graph_from_dcls_model(model, (2,)))


def deployed_accuracy(out) -> float:
    """Accuracy of the compiled integer reference on held-out samples (outputs shifted back by the latency)."""
    art = artifact.read(out)
    x, labels = dcls_models.coincidence_task(200, seed=7)
    padded = np.concatenate([x, np.zeros((art.latency, *x.shape[1:]))]).astype(np.int64)
    return dcls_models.accuracy(simulate(art.graph, padded).output[art.latency:], labels)


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2", "fpga"])
def test_compiled_accuracy_depends_on_the_learned_delays(trained, tmp_path, target):
    model, path = trained
    same = tmp_path / "same_delays.pt"
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["syn.P"].fill_(float(state["syn.P"].mean()))  # the trained weights with one delay for every synapse
    torch.save(state, same)
    accuracies = []
    for name, checkpoint in (("learned", path), ("same", same)):
        out = tmp_path / name
        compile_network(CompileRequest(source=checkpoint, target=target, out=out, options=SourceOptions(model=MODEL),
                                       reference_samples=2))
        accuracies.append(deployed_accuracy(out))
    assert accuracies[0] >= 0.95 and accuracies[1] <= 0.6, accuracies


@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed")
def test_fpga_runs_the_learned_delays_bit_exactly_under_verilator(trained, tmp_path):
    """One table entry per learned delay (docs/formats/fpga.md), the RTL equal to the integer reference."""
    out = tmp_path / "fpga"
    compile_network(CompileRequest(source=trained[1], target="fpga", out=out, options=SourceOptions(model=MODEL),
                                   reference_samples=8))
    layout = json.loads((out / "fpga" / "layout.json").read_text())
    delays = sorted(p["delay"] for p in layout["projections"] if p["name"] == "syn")
    assert len(delays) == 2 and delays[1] - delays[0] == dcls_models.LAG, delays
    result = verify_artifact(out, "verilator://")
    assert result.passed, "\n".join(result.lines())
    _, expected = artifact.read(out).reference()
    assert all(ref.any() for ref in expected.values()), "the reference is silent: the comparison would be vacuous"


@pytest.mark.slow
def test_delay_dense_in_lava_and_delay_ring_on_qemu_are_bit_exact(trained, tmp_path):
    from tests.backends.test_loihi2 import assert_conformant
    from tests.backends.test_spinnaker2 import verify_on_qemu

    for target in ("loihi2", "spinnaker2"):
        out = tmp_path / target
        compile_network(CompileRequest(source=trained[1], target=target, out=out, options=SourceOptions(model=MODEL),
                                       reference_samples=8))
        if target == "loihi2":
            assert "DelayDense(" in (out / "lava_network.py").read_text()
            assert_conformant(out)
        else:
            verify_on_qemu(out)


def test_cli_inspect_check_runs_the_inference_form(trained):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "nmcompile", "inspect", str(trained[1]), "--model", MODEL, "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "float64 0 of" in proc.stdout and "Linear" in proc.stdout
