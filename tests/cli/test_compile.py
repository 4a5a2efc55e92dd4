"""`nmcompile compile`: artifacts are complete, deterministic and runnable; pass failures are named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.ir.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ["examples/digits/digits.pt", "--model", "examples/digits/model.py:make_model"]


def nmcompile(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "nmcompile", *args], capture_output=True, text=True, cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("a") / "digits-s2"
    nmcompile("compile", *DIGITS, "--target", "spinnaker2", "--stop-after", "analyse", "-o", str(out))
    return out


def test_artifact_contents_and_manifest(compiled):
    manifest = json.loads((compiled / "manifest.json").read_text())
    assert manifest["target"] == "spinnaker2" and manifest["latency"] == 2
    assert manifest["inputs"] == {"input": [64]} and manifest["outputs"] == {"output": [10]}
    assert set(manifest["files"]) == {"network.nmir", "reference/inputs.npz", "reference/outputs.npz", "report.md"}
    report = (compiled / "report.md").read_text()
    for section in ("## retime", "## quantize", "## partition", "## analyse", "lower bound", "energy on spinnaker2"):
        assert section in report


def test_same_inputs_give_byte_identical_directory(compiled, tmp_path):
    again = tmp_path / "again"
    nmcompile("compile", *DIGITS, "--target", "spinnaker2", "--stop-after", "analyse", "-o", str(again))
    for path in sorted(compiled.rglob("*")):
        if path.is_file():
            assert (again / path.relative_to(compiled)).read_bytes() == path.read_bytes(), path.name


def test_reference_outputs_are_the_integer_model(compiled, tmp_path):
    art = artifact.read(compiled)
    inputs, outputs = art.reference()
    pad = np.zeros((art.latency, *inputs.shape[1:]), dtype=inputs.dtype)
    np.testing.assert_array_equal(simulate(art.graph, np.concatenate([inputs, pad])).output, outputs["output"])
    np.savez(tmp_path / "in.npz", spikes=inputs)
    proc = nmcompile("run", str(compiled), "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "o.npz"))
    assert "latency 2" in proc.stdout
    out = np.load(tmp_path / "o.npz")
    np.testing.assert_array_equal(out["spikes"], simulate(art.graph, inputs).output)
    assert out["latency"] == 2


def test_modified_artifact_is_refused(compiled, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(compiled, copy)
    (copy / "report.md").write_text("tampered")
    proc = nmcompile("inspect", str(copy), check=False)
    assert proc.returncode == 1 and "report.md was modified after compilation" in proc.stderr


def test_dump_after_and_print_ir_after_all(tmp_path):
    proc = nmcompile("compile", *DIGITS, "--target", "fpga", "--stop-after", "quantize", "--dump-after", "retime",
                     "-o", str(tmp_path / "a"))
    assert proc.stdout.count("# IR after pass") == 1 and "# IR after pass 'retime'" in proc.stdout
    assert "latency=2" in proc.stdout
    proc = nmcompile("compile", *DIGITS, "--target", "fpga", "--stop-after", "partition", "--print-ir-after-all",
                     "-o", str(tmp_path / "b"))
    assert proc.stdout.count("# IR after pass") == 7
    assert "[7/8] partition" in proc.stderr


def test_failing_pass_is_named_with_its_predecessors(tmp_path):
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "frontend"))
    from tests.frontend import factories

    torch.save(factories.small().state_dict(), tmp_path / "sub.pt")
    proc = nmcompile("compile", str(tmp_path / "sub.pt"), "--model", "tests.frontend.factories:small", "--target",
                     "loihi2", "--stop-after", "partition", "-o", str(tmp_path / "x"), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert ("error: pass 'quantize' failed (after fold_bn, fold_mpbn, fuse_projections, retime): layer '1': reset by "
            "subtraction is not supported by loihi2 (supported by: spinnaker2, fpga; loihi2 reset_modes: zero)") \
        in proc.stderr


def test_unknown_stop_after_pass(tmp_path):
    proc = nmcompile("compile", *DIGITS, "--target", "fpga", "--stop-after", "fold_everything", "-o",
                     str(tmp_path / "x"), check=False)
    assert proc.returncode == 1 and "not a pass of the fpga pipeline" in proc.stderr


def test_inspect_energy():
    proc = nmcompile("inspect", *DIGITS, "--energy")
    assert "energy estimate for loihi2" in proc.stdout and "bit budget" in proc.stdout


def test_inspect_energy_folds_batch_norm_first(tmp_path):
    """A float network as trained (conv -> BatchNorm -> LIF) is analysed after the exact folding passes."""
    from nmcompile.ir import ops as O
    from nmcompile.ir.graph import Graph
    from nmcompile.ir.serialize import save

    g = Graph("bn")
    g.add("x", O.Input(shape=(2, 6, 6)))
    g.add("c", O.Conv2d(weight=np.ones((3, 2, 3, 3))))
    g.add("bn", O.BatchNorm(mean=np.zeros(3), var=np.ones(3), weight=np.ones(3), bias=np.zeros(3)))
    g.add("l", O.LIF(shape=(3, 4, 4), beta=0.9))
    g.add("y", O.Output(shape=(3, 4, 4)))
    g.chain("x", "c", "bn", "l", "y")
    proc = nmcompile("inspect", str(save(g, tmp_path / "bn.nmir")), "--energy")
    assert "energy estimate for loihi2" in proc.stdout and "864" in proc.stdout, proc.stdout
