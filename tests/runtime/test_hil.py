"""`nmcompile verify`: replays the reference inputs on a board, PASS/FAIL per output, JUnit XML, exit status."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from nmcompile.api import CompileRequest, compile_network
from nmcompile.errors import BoardError, UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.runtime.board import RefBoard
from nmcompile.runtime.hil import verify_artifact, verify_reporting_errors

ROOT = Path(__file__).resolve().parents[2]


def compile_tiny(tmp_path_factory, target: str, seed: int, samples: int) -> Path:
    """A 12 -> 8 LIF network compiled for `target` with `samples` reference samples."""
    rng = np.random.default_rng(seed)
    g = Graph("tiny")
    g.add("in", O.Input(shape=(12,)))
    g.add("fc", O.Linear(weight=rng.normal(0.4, 0.5, (8, 12))))
    g.add("lif", O.LIF(shape=(8,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(8,)))
    g.chain("in", "fc", "lif", "out")
    work = tmp_path_factory.mktemp(f"hil-{target}")
    out = work / f"tiny-{target}"
    compile_network(CompileRequest(source=save(g, work / "tiny.nmir"), target=target, out=out,
                                   reference_samples=samples), log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    return compile_tiny(tmp_path_factory, "loihi2", 0, 3)


def nmcompile(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmcompile", *args], capture_output=True, text=True, cwd=ROOT)


def test_verify_passes_on_the_reference_board_with_junit(compiled, tmp_path):
    proc = nmcompile("verify", str(compiled), "--board", "ref://", "--junit", str(tmp_path / "r.xml"))
    assert proc.returncode == 0, proc.stderr
    assert "PASS output out: 51 steps x 3 samples x 8 neurons equal" in proc.stdout
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "1" and suite.get("failures") == "0"


class FlipOneSpike(RefBoard):
    """The reference with one output spike of sample 1 flipped: a board with a fault."""

    def run_all(self, spikes):
        outputs = super().run_all(spikes)
        outputs["out"] = outputs["out"].copy()
        outputs["out"][7, 1, 3] ^= 1
        return outputs


def test_a_differing_board_fails_and_names_the_first_difference(compiled, tmp_path):
    result = verify_artifact(compiled, "faulty://", board=FlipOneSpike())
    assert not result.passed
    assert "FAIL output out: 1 values differ; first at step 7, sample 1, layer out, neuron (3,)" in result.lines()[0]
    suite = ET.fromstring(result.junit_xml())
    assert suite.get("failures") == "1" and suite.find("testcase/failure") is not None


def test_verify_errors_are_one_line(compiled, tmp_path):
    proc = nmcompile("verify", str(tmp_path / "missing"), "--board", "ref://")
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    proc = nmcompile("verify", str(compiled), "--board", "smoke://")
    assert proc.returncode == 1 and "unknown board scheme 'smoke://'" in proc.stderr


@pytest.fixture(scope="module")
def compiled_fpga(tmp_path_factory) -> Path:
    return compile_tiny(tmp_path_factory, "fpga", 1, 2)


def test_a_board_error_still_writes_the_junit_report(compiled_fpga, tmp_path):
    junit = tmp_path / "err.xml"
    proc = nmcompile("verify", str(compiled_fpga), "--board", "serial:///dev/nmc-no-such-port", "--junit",
                     str(junit))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: cannot open"), proc.stderr
    assert proc.stdout == ""                               # no PASS/FAIL verdict for a run that never ran
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")
    case = suite.find("testcase")
    assert case.get("name") == "run" and case.get("classname") == "serial:///dev/nmc-no-such-port"
    assert case.find("error").get("message") == lines[0].removeprefix("error: ")
    assert case.find("error").get("type") == "BoardError"


def test_argument_errors_write_no_junit_report(compiled, tmp_path):
    junit = tmp_path / "none.xml"
    proc = nmcompile("verify", str(compiled), "--board", "smoke://", "--junit", str(junit))
    assert proc.returncode == 1 and not junit.exists()


def test_verify_reporting_errors_keeps_the_board_error(compiled_fpga):
    result = verify_reporting_errors(compiled_fpga, "serial:///dev/nmc-no-such-port")
    assert isinstance(result.error, BoardError) and not result.passed and result.lines() == []
    with pytest.raises(UnsupportedError, match="unknown board scheme"):
        verify_reporting_errors(compiled_fpga, "smoke://")
