"""Findings of a new-user review of the command line: .npy spike files, advice that works, flags checked before
the passes run, float options on integer networks, unreadable checkpoints named as such, and the help texts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nmcompile.api import CompileRequest, compile_network
from nmcompile.cli import main
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from tests.hostile.sweep_cases import _tiny_graph

ROOT = Path(__file__).resolve().parents[2]
DIGITS = [str(ROOT / "examples" / "digits" / "digits.pt"), "--model",
          f"{ROOT / 'examples' / 'digits' / 'model.py'}:make_model"]


def cli(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def one_error(status: int, stderr: str, *fragments: str) -> str:
    """Exit 1 and stderr exactly one `error:` line (no progress line before it: nothing ran) holding `fragments`."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == 1 and len(lines) == 1 and lines[0].startswith("error: "), f"status {status}, stderr:\n{stderr}"
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flags")


@pytest.fixture(scope="module")
def tiny(work) -> Path:
    return save(_tiny_graph(), work / "tiny.nmir")


@pytest.fixture(scope="module")
def tiny_fpga(work, tiny) -> Path:
    out = work / "tiny-fpga"
    compile_network(CompileRequest(source=tiny, target="fpga", out=out, stop_after="analyse", reference_samples=2))
    return out


@pytest.fixture(scope="module")
def spikes() -> np.ndarray:
    return (np.random.default_rng(1).random((6, 3, 12)) < 0.3).astype(np.int8)


# -- 1. .npy spike files ------------------------------------------------------------------------------------------

def test_npy_input_runs_like_npz(tiny, spikes, tmp_path):
    np.save(tmp_path / "x.npy", spikes.astype(np.float32))
    np.savez(tmp_path / "x.npz", spikes=spikes)
    for name in ("x.npy", "x.npz"):
        status, _, stderr = cli("run", tiny, "--input", tmp_path / name, "--output", tmp_path / f"{name}.out")
        assert status == 0, stderr
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy.out")["spikes"], np.load(tmp_path / "x.npz.out")["spikes"])


def test_npy_calibration_spikes(tiny, spikes, tmp_path):
    np.save(tmp_path / "c.npy", spikes)
    status, _, stderr = cli("compile", tiny, "--target", "fpga", "--stop-after", "quantize", "-o", tmp_path / "a",
                            "--calibration-spikes", tmp_path / "c.npy")
    assert status == 0, stderr
    status, stdout, stderr = cli("inspect", tiny, "--energy", "--calibration-spikes", tmp_path / "c.npy")
    assert status == 0 and "energy estimate for loihi2" in stdout, stderr


def test_npy_errors_are_one_line(tiny, tmp_path):
    np.save(tmp_path / "two.npy", np.full((3, 1, 12), 2))
    one_error(*cli("run", tiny, "--input", tmp_path / "two.npy", "--output", tmp_path / "o.npz")[::2],
              "two.npy: the array holds values other than 0 and 1")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    one_error(*cli("run", tiny, "--input", tmp_path / "junk.npy", "--output", tmp_path / "o.npz")[::2],
              "neither an .npz archive holding 'spikes' nor an .npy array")


# -- 2. fpga: more neurons than any chip count holds ------------------------------------------------------------

@pytest.fixture(scope="module")
def wide(work) -> Path:
    """Linear(16, 70000) + LIF: more neurons than the fpga design's 65,536 slots."""
    g = Graph("wide")
    g.add("in", O.Input(shape=(16,)))
    g.add("fc", O.Linear(weight=np.full((70_000, 16), 0.5)))
    g.add("lif", O.LIF(shape=(70_000,), beta=0.9))
    g.add("out", O.Output(shape=(70_000,)))
    g.chain("in", "fc", "lif", "out")
    return save(g, work / "wide.nmir")


def test_too_many_neurons_for_fpga_is_refused_before_the_passes(wide, tmp_path):
    one_error(*cli("compile", wide, "--target", "fpga", "-o", tmp_path / "a")[::2],
              "the network has 70,000 neurons; fpga holds at most 65,536")
    one_error(*cli("compile", wide, "--target", "fpga", "--chips", "2", "-o", tmp_path / "a")[::2],
              "--chips 2: fpga spans at most 1 chip(s)")


def test_partition_advice_names_the_chip_limit(wide, tmp_path):
    status, _, stderr = cli("compile", wide, "--target", "fpga", "--stop-after", "partition", "-o", tmp_path / "a")
    line = stderr.splitlines()[-1]
    assert status == 1 and "does not fit" in line and "--chips" not in line, stderr
    assert "fpga spans at most 1 chip(s) (1 core(s)), so make the network smaller" in line


# -- 3. --stdp-param ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target, param", [("fpga", "foo=1"), ("spinnaker2", "ltp_shift=99"),
                                           ("fpga", "ltp_shift=2")])
def test_stdp_param_needs_stdp(tiny, target, param, tmp_path):
    one_error(*cli("compile", tiny, "--target", target, "--stdp-param", param, "-o", tmp_path / "a")[::2],
              "--stdp-param needs --stdp PROJECTION")


def test_unknown_stdp_param_is_refused_up_front(tiny, tmp_path):
    one_error(*cli("compile", tiny, "--target", "fpga", "--stdp", "fc", "--stdp-param", "foo=1", "-o",
                   tmp_path / "a")[::2], "--stdp-param 'foo=1': unknown STDP parameter(s) foo; known: pre_increment")


# -- 4. float options on an integer network -------------------------------------------------------------------------

@pytest.mark.parametrize("args", [("--float32",), ("--board", "ref://?precision=float32"),
                                  ("--board", "ref://?precision=float64")])
def test_float_precision_on_an_integer_artifact_is_refused(args, tiny_fpga, spikes, tmp_path):
    np.savez(tmp_path / "x.npz", spikes=spikes)
    one_error(*cli("run", tiny_fpga, "--input", tmp_path / "x.npz", "--output", tmp_path / "o.npz", *args)[::2],
              "applies to float networks; this one is quantized")
    assert not (tmp_path / "o.npz").exists()


def test_ref_options_on_another_board_are_refused(tiny_fpga, spikes, tmp_path):
    np.savez(tmp_path / "x.npz", spikes=spikes)
    for flag in ("--float32", "--integer"):
        one_error(*cli("run", tiny_fpga, "--board", "verilator://", "--input", tmp_path / "x.npz", "--output",
                       tmp_path / "o.npz", flag)[::2], f"{flag} chooses how ref:// simulates the network")


def test_float32_still_runs_a_float_network(tiny, spikes, tmp_path):
    np.savez(tmp_path / "x.npz", spikes=spikes)
    status, _, stderr = cli("run", tiny, "--input", tmp_path / "x.npz", "--output", tmp_path / "o.npz", "--float32")
    assert status == 0, stderr


# -- 5. checks before the passes ----------------------------------------------------------------------------------

def test_unknown_fpga_part_before_the_passes(tiny, tmp_path):
    one_error(*cli("compile", tiny, "--target", "fpga", "--fpga-part", "xc7z020", "-o", tmp_path / "a")[::2],
              "--fpga-part: unknown FPGA part 'xc7z020'; known: xc7a35t")


def test_existing_directory_that_is_not_an_artifact_before_the_passes(tiny, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    one_error(*cli("compile", tiny, "--target", "fpga", "-o", tmp_path / "mine")[::2],
              "exists and is not an nmcompile artifact")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_reference_samples_beyond_the_calibration_before_the_passes(tiny, tmp_path):
    np.savez(tmp_path / "c.npz", spikes=np.zeros((10, 8, 12), np.int8))
    one_error(*cli("compile", tiny, "--target", "fpga", "-o", tmp_path / "a", "--calibration-spikes",
                   tmp_path / "c.npz", "--reference-samples", "20")[::2],
              "--reference-samples 20: the calibration spikes hold only 8 samples")


# -- 6. checkpoints that are not torch files -------------------------------------------------------------------------

@pytest.mark.parametrize("trust", [(), ("--trust-pickle",)])
def test_random_bytes_are_not_a_checkpoint(trust, tmp_path):
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(3).bytes(4096))
    line = one_error(*cli("inspect", tmp_path / "noise.pt", *DIGITS[1:], *trust)[::2],
                     "noise.pt: truncated, corrupt or not a PyTorch checkpoint: neither a complete zip")
    assert "pickled Python objects" not in line and "--trust-pickle" not in line


def test_legacy_checkpoint_still_loads(tmp_path):
    import torch

    state = torch.load(DIGITS[0], weights_only=True)
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    (tmp_path / "legacy.pt").write_bytes(buffer.getvalue())
    status, stdout, stderr = cli("inspect", tmp_path / "legacy.pt", *DIGITS[1:])
    assert status == 0 and "total" in stdout, stderr


# -- 7. help texts ------------------------------------------------------------------------------------------------

def test_help_texts():
    top = cli("--help")[1]
    assert "nmcompile compile net.nir --target fpga" in top and "nmcompile verify net-fpga" in top
    for command in ("compile", "run", "verify"):
        assert "Example" in cli(command, "--help")[1], command
    inspect = " ".join(cli("inspect", "--help")[1].split())
    assert ".net file" in inspect and "compiled artifact directory" in inspect
    run = " ".join(cli("run", "--help")[1].split())
    assert "integer, bool or float dtype" in run and "any integer dtype" not in run
    assert "serial:///dev/ttyUSB0" in run and "serial://DEVICE" not in run
