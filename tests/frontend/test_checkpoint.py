"""Checkpoint loading is safe and every bad input is one line naming the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nmcompile.errors import InputFileError, ShapeError, UnsupportedError
from nmcompile.frontend.checkpoint import UnsafeCheckpointError, build_model
from tests.frontend import factories

SPEC = "tests.frontend.factories:small"


class Payload:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "net.pt"
    torch.save(factories.small().state_dict(), path)
    return path


def test_state_dict_loads_into_factory(checkpoint):
    model, module = build_model(checkpoint, SPEC)
    assert module is factories
    assert torch.equal(model[0].weight, factories.small()[0].weight)


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"pickled Python objects.*--trust-pickle") as err:
        build_model(path, SPEC)
    assert "posix.system" in str(err.value) or "os.system" in str(err.value)
    assert not marker.exists()


def test_whole_module_needs_trust_flag(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(factories.picklable(), path)
    with pytest.raises(UnsafeCheckpointError, match="--trust-pickle"):
        build_model(path, None)
    model, module = build_model(path, None, trust_pickle=True)
    assert isinstance(model, torch.nn.Sequential) and module is None


def test_damaged_files(checkpoint, tmp_path):
    data = checkpoint.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=r"cut\.pt: truncated, corrupt or not a PyTorch checkpoint"):
        build_model(tmp_path / "cut.pt", SPEC)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"empty\.pt: file is empty"):
        build_model(tmp_path / "empty.pt", SPEC)


def test_nan_weights_are_named(tmp_path):
    state = factories.small().state_dict()
    state["2.weight"][1, 2] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(InputFileError, match="'2.weight' contains NaN"):
        build_model(tmp_path / "nan.pt", SPEC)


def test_key_problems(tmp_path, checkpoint):
    with pytest.raises(ShapeError, match=r"'0.weight' has shape \(5, 6\) but the model built by .*:wider "
                                         r"expects \(7, 6\)"):
        build_model(checkpoint, "tests.frontend.factories:wider")
    state = factories.small().state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(ShapeError, match="key 'extra.weight' .* is not in the model"):
        build_model(tmp_path / "extra.pt", SPEC)
    state = factories.small().state_dict()
    del state["2.bias"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(ShapeError, match="needs '2.bias'"):
        build_model(tmp_path / "missing.pt", SPEC)


def test_factory_problems(checkpoint):
    with pytest.raises(UnsupportedError, match="cannot import 'no_such_module' \\(ModuleNotFoundError"):
        build_model(checkpoint, "no_such_module:make")
    with pytest.raises(UnsupportedError, match="has no attribute 'nope'"):
        build_model(checkpoint, "tests.frontend.factories:nope")
    with pytest.raises(UnsupportedError, match="must look like"):
        build_model(checkpoint, "tests.frontend.factories")
    with pytest.raises(UnsupportedError, match="the factory raised RuntimeError: this factory fails on purpose"):
        build_model(checkpoint, "tests.frontend.factories:broken")
    with pytest.raises(UnsupportedError, match="returned int, not a torch.nn.Module"):
        build_model(checkpoint, "tests.frontend.factories:not_a_module")
    with pytest.raises(UnsupportedError, match="needs --model"):
        build_model(checkpoint, None)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmcompile", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])


@pytest.mark.parametrize(("factory", "expected"), [
    ("with_maxpool", "module '1': MaxPool2d over currents is refused: a max of currents has no integer/spiking "),
    ("with_relu_between", "torch.sigmoid is applied to spikes/currents between layers"),
    ("graded", "graded spikes (graded_spikes_factor != 1) are not supported"),
])
def test_unsupported_layers_are_named_by_the_cli(tmp_path, factory, expected):
    make = getattr(factories, factory)
    torch.save(make().state_dict(), tmp_path / "m.pt")
    shape = "1,6,6" if factory == "with_maxpool" else "6"
    proc = cli("inspect", str(tmp_path / "m.pt"), "--model", f"tests.frontend.factories:{factory}",
               "--input-shape", shape)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    if factory == "with_maxpool":   # says what to use instead and what the pool reads
        assert "use AvgPool2d, or move the pool after the neuron" in lines[0] and "'0' is Conv2d" in lines[0]


def test_cli_malicious_pickle_and_trust_flag(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"x": Payload(marker)}, tmp_path / "evil.pt")
    proc = cli("inspect", str(tmp_path / "evil.pt"), "--model", SPEC)
    assert proc.returncode == 1 and "--trust-pickle" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()
    torch.save(factories.picklable(), tmp_path / "whole.pt")
    proc = cli("inspect", str(tmp_path / "whole.pt"), "--trust-pickle", "--input-shape", "6")
    assert proc.returncode == 0, proc.stderr
    assert "Linear" in proc.stdout and "MPBNLIF" in proc.stdout
