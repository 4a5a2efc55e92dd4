"""Inputs: spike files, flags, URL options and checkpoints are validated; degenerate quantization is named."""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nmcompile.errors import InputFileError
from nmcompile.protocols.spike_files import load_spikes
from tests.hostile.conftest import assert_one_error, cli, spikes_file

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits" / "digits.pt"
MODEL = f"{ROOT / 'examples' / 'digits' / 'model.py'}:make_model"

SPIKE_ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.int8, np.uint8, np.int64, np.float32, np.float64, np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=SPIKE_ARRAYS)
def test_any_spike_array_loads_as_0_1_or_is_one_input_error(array, tmp_path_factory):
    path = spikes_file(tmp_path_factory.mktemp("spk") / "s.npz", array)
    try:
        spikes = load_spikes(path)
    except InputFileError as err:
        assert str(path) in str(err)
        return
    assert spikes.ndim >= 3 and min(spikes.shape) >= 1 and set(np.unique(spikes)) <= {0, 1}


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 2, 12), np.int8), "0 steps"), (np.zeros((4, 0, 12), np.int8), "0 samples"),
    (np.zeros((4, 2, 11), np.int8), "11 values per step")])
def test_degenerate_or_misfit_spike_files(array, message, tiny_source, tmp_path):
    path = spikes_file(tmp_path / "s.npz", array)
    status, _, stderr = cli("run", tiny_source, "--input", path, "--output", tmp_path / "o.npz")
    assert_one_error(status, stderr)
    status, _, stderr = cli("compile", tiny_source, "--target", "fpga", "-o", tmp_path / "a", "--calibration-spikes",
                            path)
    assert_one_error(status, stderr, message)


@pytest.mark.parametrize("flag, value", [("--chips", "0"), ("--chips", "-2"), ("--reference-samples", "0"),
                                         ("--trace-steps", "0"), ("--percentile", "nan"), ("--nir-dt", "inf"),
                                         ("--snn-steps", "0")])
def test_out_of_range_flags_are_usage_errors(flag, value, tiny_source, tmp_path):
    status, _, stderr = cli("compile", tiny_source, "--target", "fpga", "-o", tmp_path / "a", flag, value)
    assert status == 2 and flag in stderr, stderr


def test_more_reference_samples_than_calibration_samples(tiny_source, tmp_path):
    calib = spikes_file(tmp_path / "c.npz", np.zeros((10, 8, 12), np.int8))
    status, _, stderr = cli("compile", tiny_source, "--target", "fpga", "-o", tmp_path / "a", "--calibration-spikes",
                            calib, "--reference-samples", "1000")
    assert_one_error(status, stderr, "--reference-samples 1000: the calibration spikes hold only 8 samples")


@pytest.mark.parametrize("url", ["ref://?integer=2", "ref://?x=1", "verilator://?program=2", "serial:///dev/x?baud=abc",
                                 "serial:///dev/x?timeout=nan", "lava://?states=1&states=1"])
def test_malformed_board_options_are_refused(url, artifacts, tiny_source, tmp_path):
    spikes = spikes_file(tmp_path / "s.npz", np.zeros((4, 1, 12), np.int8))
    status, _, stderr = cli("run", tiny_source, "--board", url, "--input", spikes, "--output", tmp_path / "o.npz")
    assert_one_error(status, stderr)
    assert not (tmp_path / "o.npz").exists()


def test_a_flipped_byte_inside_a_stored_tensor_is_refused(tmp_path):
    raw = bytearray(DIGITS.read_bytes())
    with zipfile.ZipFile(DIGITS) as archive:
        member = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 64)
    name_len, extra_len = struct.unpack_from("<HH", raw, member.header_offset + 26)   # the local header's
    raw[member.header_offset + 30 + name_len + extra_len + 17] ^= 0x04
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(raw))
    status, _, stderr = cli("inspect", bad, "--model", MODEL)
    assert_one_error(status, stderr, f"member '{member.filename}' fails its CRC-32 check")


def test_a_huge_weight_warns_naming_the_layer_and_strict_refuses(tmp_path):
    import torch

    state = torch.load(DIGITS, weights_only=True)
    state["0.weight"][0, 0] = 1e30
    path = tmp_path / "huge.pt"
    torch.save(state, path)
    status, _, stderr = cli("compile", path, "--model", MODEL, "--target", "fpga", "-o", tmp_path / "a")
    assert status == 0, stderr
    assert "warning: degenerate quantization: layer '1'" in stderr and "vth 0" in stderr, stderr
    status, _, stderr = cli("compile", path, "--model", MODEL, "--target", "fpga", "-o", tmp_path / "b", "--strict")
    assert_one_error(status, stderr, "--strict: degenerate quantization: layer")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("body, message", [("import sys\ndef make():\n    sys.exit(3)\n", "called sys.exit(3)"),
                                           ("import sys\nsys.exit()\n", "called sys.exit(None)")])
def test_a_factory_that_exits_is_one_error(body, message, tmp_path):
    factory = tmp_path / "factory.py"
    factory.write_text(body)
    status, _, stderr = cli("inspect", DIGITS, "--model", f"{factory}:make")
    assert_one_error(status, stderr, message)
