"""Outputs go exactly where the user said, as a whole or not at all; bad places are one error line."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nmcompile import artifact
from tests.hostile.conftest import assert_one_error, cli, spikes_file


@pytest.fixture
def spikes(tmp_path):
    return spikes_file(tmp_path / "in.npz", (np.random.default_rng(0).random((10, 2, 12)) < 0.3).astype(np.int8))


def test_run_writes_exactly_the_name_given(tiny_source, spikes, tmp_path):
    out = tmp_path / "out.bin"
    status, _, stderr = cli("run", tiny_source, "--input", spikes, "--output", out)
    assert status == 0, stderr
    assert out.is_file() and not (tmp_path / "out.bin.npz").exists()
    with np.load(out) as f:
        assert f["spikes"].shape == (10, 2, 8)


def test_compile_replaces_an_earlier_artifact_as_a_whole(artifacts, tiny_source, copy_artifact):
    out = copy_artifact("fpga")
    (out / "fpga" / "hdl" / "old.v").write_text("module old; endmodule\n")
    (out / "notes.txt").write_text("from an earlier compile")
    status, _, stderr = cli("compile", tiny_source, "--target", "loihi2", "-o", out)
    assert status == 0, stderr
    assert not (out / "fpga").exists() and not (out / "notes.txt").exists()
    assert artifact.read(out, rederive=True).target == "loihi2"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".nmc-")], "temporary directories left"


def test_compile_refuses_a_directory_that_is_not_an_artifact(tiny_source, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    status, _, stderr = cli("compile", tiny_source, "--target", "fpga", "-o", mine)
    assert_one_error(status, stderr, "is not an nmcompile artifact: refusing to replace it")
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("where", ["fifo", "link to fifo", "directory", "under a file", "long name", "proc",
                                   "missing directory", "dot"])
def test_bad_output_places_are_one_error_line(where, tiny_source, artifacts, spikes, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(fifo)
    (tmp_path / "file").write_text("x")
    path = {"fifo": fifo, "link to fifo": tmp_path / "link", "directory": tmp_path, "under a file":
            tmp_path / "file" / "out", "long name": tmp_path / ("a" * 300), "proc": "/proc/nmc-out",
            "missing directory": tmp_path / "no" / "such" / "out.npz", "dot": "."}[where]
    status, _, stderr = cli("run", tiny_source, "--input", spikes, "--output", path)
    assert_one_error(status, stderr)
    status, _, stderr = cli("verify", artifacts["fpga"], "--board", "ref://", "--junit", path)
    assert_one_error(status, stderr)
    status, _, stderr = cli("export", tiny_source, "-o", path)
    assert_one_error(status, stderr)
    if where != "missing directory":                      # compile -o creates missing parents (mkdir -p)
        status, _, stderr = cli("compile", tiny_source, "--target", "fpga", "-o", path)
        assert_one_error(status, stderr)
    assert fifo.exists() and not fifo.is_file()


@pytest.mark.parametrize("command", ["run", "compile", "verify", "export"])
def test_an_empty_output_name_is_a_usage_error(command, tiny_source, artifacts, spikes):
    args = {"run": ["run", tiny_source, "--input", spikes, "--output", ""],
            "compile": ["compile", tiny_source, "--target", "fpga", "-o", ""],
            "verify": ["verify", artifacts["fpga"], "--board", "ref://", "--junit", ""],
            "export": ["export", tiny_source, "-o", ""]}[command]
    status, _, stderr = cli(*args)
    assert status == 2 and "the name is empty" in stderr, stderr
