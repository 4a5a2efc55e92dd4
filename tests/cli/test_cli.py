"""The command line: version, targets, inspect, run, and one-line errors with non-zero exit codes."""

from __future__ import annotations

import subprocess
import sys
import warnings

import nir
import numpy as np
import pytest
from click.testing import CliRunner

from nmcompile import __version__
from nmcompile.cli import main
from nmcompile.errors import NmcWarning
from nmcompile.frontend.nir import write_nir
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.ir.simulate import simulate
from tests.conftest import mlp, random_spikes


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def nir_file(tmp_path):
    g = mlp(np.random.default_rng(2), (6, 8, 4), reset_mode="zero", bias=True)
    path = tmp_path / "net.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NmcWarning)
        write_nir(g, path)
    return path


def test_version_and_targets():
    assert invoke("--version").output.strip() == f"nmcompile, version {__version__}"
    result = invoke("targets")
    assert result.exit_code == 0 and "loihi2: Intel Loihi 2" in result.output and "backend " in result.output


def test_help_does_not_import_torch():
    code = ("import sys; from nmcompile.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('torch', 'nir', 'numpy', 'h5py', 'onnx', 'numba', 'llvmlite') if m in sys.modules]\n"
            "print('HEAVY', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_inspect_table_and_ir(nir_file):
    result = invoke("inspect", str(nir_file))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["layer", "op", "shape", "neurons", "synapses", "parameters"]
    row = next(line for line in lines if line.startswith("fc0 "))
    assert row.split()[:3] == ["fc0", "Linear", "8"] and row.split()[4] == "48"
    assert "total" in result.output and "12" in next(line for line in lines if line.startswith("total"))
    ir = invoke("inspect", str(nir_file), "--ir")
    assert ir.output.startswith("# nmcompile IR v1\n") and "edge fc0 -> lif0" in ir.output


def test_run_float_network(nir_file, tmp_path):
    rng = np.random.default_rng(0)
    spikes = random_spikes(rng, 12, 3, 6)
    np.savez(tmp_path / "in.npz", spikes=spikes)
    result = invoke("run", str(nir_file), "--board", "ref://", "--input", str(tmp_path / "in.npz"), "--output",
                    str(tmp_path / "out.npz"))
    assert result.exit_code == 0, result.output
    out = np.load(tmp_path / "out.npz")
    from nmcompile.frontend.nir import read_nir

    expected = simulate(read_nir(nir_file), spikes).output
    np.testing.assert_array_equal(out["spikes"], expected)
    assert out["latency"] == 0


def test_run_integer_graph(tmp_path):
    g = Graph("q")
    g.add("in", O.Input(shape=(2,)))
    g.add("fc", O.QLinear(weight=[[60, 60]], sign_mode="excitatory"))
    g.add("n", O.QNeuron(shape=(1,), vth=100))
    g.add("out", O.Output(shape=(1,)))
    g.chain("in", "fc", "n", "out")
    save(g, tmp_path / "q.nmir")
    np.savez(tmp_path / "in.npz", spikes=np.ones((4, 1, 2), dtype=bool))
    result = invoke("run", str(tmp_path / "q.nmir"), "--input", str(tmp_path / "in.npz"), "--output",
                    str(tmp_path / "out.npz"), "--integer")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "out.npz")["spikes"][:, 0, 0], [0, 1, 1, 1])


def cli_error(*args: str) -> str:
    """Run the real console entry point in a subprocess; assert one line on stderr and exit code 1."""
    proc = subprocess.run([sys.executable, "-m", "nmcompile", *args], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_truncated_nir_is_one_line_error(nir_file, tmp_path):
    data = nir_file.read_bytes()
    (tmp_path / "cut.nir").write_bytes(data[:200])
    line = cli_error("inspect", str(tmp_path / "cut.nir"))
    assert "cut.nir: truncated, corrupt or not a NIR file" in line
    (tmp_path / "empty.nir").write_bytes(b"")
    assert cli_error("inspect", str(tmp_path / "empty.nir")).endswith("empty.nir: file is empty")


def test_nan_weight_is_one_line_error(tmp_path):
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([2])),
                                   nir.Affine(weight=np.array([[1.0, np.nan]]), bias=np.zeros(1)),
                                   nir.Output(output_type=np.array([1])))
    nir.write(str(tmp_path / "nan.nir"), graph)
    line = cli_error("inspect", str(tmp_path / "nan.nir"))
    assert line == ("error: node 'affine' (Linear): parameter 'weight' contains NaN; the model was saved from a "
                    "diverged training run or the file is corrupt")


def test_shape_mismatch_is_one_line_error(tmp_path):
    graph = nir.NIRGraph(nodes={"in": nir.Input(input_type=np.array([3])),
                                "fc": nir.Linear(weight=np.ones((2, 4))),
                                "out": nir.Output(output_type=np.array([2]))},
                         edges=[("in", "fc"), ("fc", "out")], type_check=False)
    nir.write(str(tmp_path / "shape.nir"), graph)
    line = cli_error("inspect", str(tmp_path / "shape.nir"))
    assert line == "error: node 'fc' (Linear): weight expects input (4,) but receives (3,)"


def test_run_input_errors(nir_file, tmp_path):
    np.savez(tmp_path / "bad.npz", spikes=np.full((3, 1, 6), 2))
    assert "holds values other than 0 and 1" in cli_error("run", str(nir_file), "--input", str(tmp_path / "bad.npz"),
                                                         "--output", str(tmp_path / "o.npz"))
    np.savez(tmp_path / "wrong.npz", spikes=np.zeros((3, 1, 5)))
    assert "expects shape (6,)" in cli_error("run", str(nir_file), "--input", str(tmp_path / "wrong.npz"),
                                             "--output", str(tmp_path / "o.npz"))
    np.savez(tmp_path / "ok.npz", spikes=np.zeros((3, 1, 6)))
    line = cli_error("run", str(nir_file), "--board", "pcie://x", "--input", str(tmp_path / "ok.npz"),
                     "--output", str(tmp_path / "o.npz"))
    assert "unknown board scheme 'pcie://'; known: ref://" in line
    (tmp_path / "x.txt").write_text("x")
    assert "unknown network file type '.txt'" in cli_error("inspect", str(tmp_path / "x.txt"))
