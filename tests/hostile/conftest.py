"""Shared fixtures of the hostile suite: small compiled artifacts, the CLI in process, and a time limit per test
(SIGALRM) so that a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import shutil
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nmcompile.api import CompileRequest, compile_network
from nmcompile.cli import main
from nmcompile.errors import NmcWarning
from nmcompile.ir.serialize import save
from tests.hostile.sweep_cases import _tiny_graph

TEST_TIME_LIMIT = 120


@pytest.fixture(autouse=True)
def time_limit():
    """Fail a test that runs longer than TEST_TIME_LIMIT seconds (a hang under test)."""

    def expire(signum, frame):
        raise TimeoutError(f"the test did not finish within {TEST_TIME_LIMIT} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_TIME_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="package")
def hostile_work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="package")
def tiny_source(hostile_work) -> Path:
    return save(_tiny_graph(), hostile_work / "tiny.nmir")


@pytest.fixture(scope="package")
def artifacts(hostile_work, tiny_source) -> dict[str, Path]:
    """The tiny network compiled for every target (reference of 2 samples)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NmcWarning)
        for target in ("fpga", "loihi2", "spinnaker2"):
            out[target] = hostile_work / f"tiny-{target}"
            compile_network(CompileRequest(source=tiny_source, target=target, out=out[target], reference_samples=2))
    return out


@pytest.fixture
def copy_artifact(artifacts, tmp_path):
    """copy_artifact("fpga") -> a private copy to tamper with."""
    counter = iter(range(1_000_000))

    def copy(target: str) -> Path:
        dst = tmp_path / f"{target}-{next(counter)}"
        shutil.copytree(artifacts[target], dst)
        return dst

    return copy


def cli(*args: str):
    """The CLI in process: (exit status, stdout, stderr)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def assert_one_error(status: int, stderr: str, *fragments: str) -> None:
    """Exit status 1 and exactly one line, `error: ...`, holding every fragment."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert status == 1 and len(errors) == 1, f"status {status}, stderr:\n{stderr}"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def spikes_file(path: Path, array) -> Path:
    np.savez(path, spikes=array)
    return path
