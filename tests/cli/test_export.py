"""`nmcompile export`: a float network of any source as NIR, read back spike for spike by nmcompile's reader and
through `nir.read`; integer networks, unsupported ops and bad output paths refused in one line."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from nmcompile.api import SourceOptions, load_source
from nmcompile.errors import NmcWarning
from nmcompile.frontend.nir import graph_from_nir, read_nir, write_nir
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.ir.simulate import simulate
from tests.conftest import mlp, random_spikes
from tests.frontend import factories

ROOT = Path(__file__).resolve().parents[2]


def nmcompile(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmcompile", *args], capture_output=True, text=True, cwd=ROOT)


def export_ok(*args: str) -> subprocess.CompletedProcess:
    proc = nmcompile("export", *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote ")
    return proc


def refused(*args: str, exit_code: int = 1) -> str:
    proc = nmcompile("export", *args)
    assert proc.returncode == exit_code, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NmcWarning)
        return fn(*args, **kw)


def assert_spike_identical(source_graph: Graph, out: Path, rng, dt: float | None = None) -> None:
    """The exported file, read by nmcompile's reader and via nir.read + graph_from_nir, gives the source graph's
    float64 spikes on random input."""
    options = {} if dt is None else {"dt": dt}
    ours = quiet(read_nir, out, **options)
    via_nir = nir.read(str(out))
    assert isinstance(via_nir, nir.NIRGraph)
    theirs = quiet(graph_from_nir, via_nir, **options)
    shape = source_graph.node(source_graph.inputs[0]).shape
    x = random_spikes(rng, 80, 6, shape, rate=0.6)
    want = simulate(source_graph, x, mode="float64", record=True)
    assert want.states and all(np.count_nonzero(s["v"]) for s in want.states.values())
    for graph in (ours, theirs):
        got = simulate(graph, x, mode="float64", record=True)
        np.testing.assert_array_equal(got.output, want.output)
        assert got.states.keys() == want.states.keys()
        for layer, states in want.states.items():      # every layer's membrane (so its resets) at every step
            for key, value in states.items():
                np.testing.assert_array_equal(got.states[layer][key], value, err_msg=f"{layer}.{key}")


def test_nir_source_round_trip(tmp_path, rng):
    src = tmp_path / "in.nir"
    quiet(write_nir, mlp(np.random.default_rng(2), (6, 8, 4), reset_mode="zero", recurrent=True), src)
    out = tmp_path / "out.nir"
    export_ok(str(src), "-o", str(out))
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["in.nir", "out.nir"]
    assert_spike_identical(load_source(src).graph, out, rng)


def test_nir_source_with_its_dt(tmp_path, rng):
    """--nir-dt reads the source at that step and writes the file at the same step."""
    src = tmp_path / "in.nir"
    quiet(write_nir, mlp(np.random.default_rng(3), (5, 6, 3), reset_mode="zero"), src, dt=1e-3)
    out = tmp_path / "out.nir"
    assert "dt 0.001 s" in export_ok(str(src), "-o", str(out), "--nir-dt", "1e-3").stdout
    assert_spike_identical(quiet(load_source, src, SourceOptions(nir_dt=1e-3)).graph, out, rng, dt=1e-3)


def test_nir_fields_alone_give_the_same_spikes(tmp_path, rng):
    """A network inside NIR's semantics (reset to zero, '>', no refractory period) needs no nmcompile metadata:
    a reader that sees only the NIR fields gets the same spikes."""
    src = tmp_path / "in.nir"
    quiet(write_nir, mlp(np.random.default_rng(4), (6, 8, 4), reset_mode="zero", beta=0.75), src)
    out = tmp_path / "out.nir"
    proc = export_ok(str(src), "-o", str(out))
    assert "warning" not in proc.stderr
    bare = nir.read(str(out))
    for node in bare.nodes.values():
        node.metadata = {}
    bare.metadata = {}
    foreign = quiet(graph_from_nir, bare)
    x = random_spikes(rng, 60, 5, (6,))
    want = simulate(load_source(src).graph, x, mode="float64").output
    np.testing.assert_array_equal(simulate(foreign, x, mode="float64").output, want)


@pytest.mark.parametrize("factory", ["small", "rleaky"])
def test_snntorch_checkpoint_round_trip(tmp_path, rng, factory):
    pt = tmp_path / "net.pt"
    torch.save(getattr(factories, factory)().state_dict(), pt)
    spec = f"tests.frontend.factories:{factory}"
    out = tmp_path / "net.nir"
    proc = export_ok(str(pt), "--model", spec, "-o", str(out))
    # snnTorch resets by subtraction (RLeaky: a delayed reset to zero), which NIR cannot say: the warning names it
    assert "warning:" in proc.stderr and "metadata" in proc.stderr
    graph = load_source(pt, SourceOptions(model=spec)).graph
    assert_spike_identical(graph, out, rng)


def test_nmir_source_round_trip(tmp_path, rng):
    src = tmp_path / "net.nmir"
    save(mlp(np.random.default_rng(5), (6, 9, 4), neuron="CubaLIF", recurrent=True), src)
    out = tmp_path / "exported.nir"
    export_ok(str(src), "-o", str(out))
    assert_spike_identical(load_source(src).graph, out, rng)


def test_writes_exactly_the_path_given_and_replaces(tmp_path):
    src = tmp_path / "in.nir"
    quiet(write_nir, mlp(np.random.default_rng(2), (6, 8, 4), reset_mode="zero"), src)
    (tmp_path / "sub").mkdir()
    target = tmp_path / "sub" / "network.h5"          # no suffix is added or changed
    target.write_text("old")
    export_ok(str(src), "-o", str(target))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["network.h5"]
    assert isinstance(nir.read(str(target)), nir.NIRGraph)
    # a relative path is relative to the working directory
    proc = subprocess.run([sys.executable, "-m", "nmcompile", "export", str(src), "-o", "rel.nir"],
                          capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT),
                                                                             "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rel.nir").is_file()


def test_bad_output_paths(tmp_path):
    src = tmp_path / "in.nir"
    quiet(write_nir, mlp(np.random.default_rng(2), (6, 8, 4), reset_mode="zero"), src)
    line = refused(str(src), "-o", str(tmp_path / "missing" / "x.nir"))
    assert "does not exist" in line and "missing" in line
    line = refused(str(src), "-o", str(tmp_path))
    assert "is a directory" in line
    proc = nmcompile("export", str(src))
    assert proc.returncode == 2 and "Missing option '-o'" in proc.stderr
    assert not (tmp_path / "missing").exists()


def test_missing_source(tmp_path):
    line = refused(str(tmp_path / "nope.nir"), "-o", str(tmp_path / "x.nir"))
    assert "no such file" in line
    assert not (tmp_path / "x.nir").exists()


def test_integer_networks_are_refused(tmp_path):
    src = tmp_path / "in.nir"
    quiet(write_nir, mlp(np.random.default_rng(2), (6, 8, 4), reset_mode="zero"), src)
    art = tmp_path / "art"
    proc = nmcompile("compile", str(src), "--target", "loihi2", "--stop-after", "quantize", "-o", str(art))
    assert proc.returncode == 0, proc.stderr
    for source in (art, art / "network.nmir"):
        line = refused(str(source), "-o", str(tmp_path / "x.nir"))
        assert "NIR has no integer semantics" in line and "export the float source" in line
    assert not (tmp_path / "x.nir").exists()


def test_unsupported_op_is_named(tmp_path):
    g = Graph("bn")
    g.add("input", O.Input(shape=(4,)))
    g.add("fc", O.Linear(weight=np.ones((3, 4))))
    g.add("norm", O.BatchNorm(mean=np.zeros(3), var=np.ones(3), weight=np.ones(3), bias=np.zeros(3)))
    g.add("lif", O.LIF(shape=(3,), beta=0.9, threshold=1.0))
    g.add("output", O.Output(shape=(3,)))
    for a, b in [("input", "fc"), ("fc", "norm"), ("norm", "lif"), ("lif", "output")]:
        g.connect(a, b)
    src = tmp_path / "bn.nmir"
    save(g, src)
    line = refused(str(src), "-o", str(tmp_path / "x.nir"))
    assert "'norm'" in line and "BatchNorm" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bn.nmir"]


def test_help_teaches():
    proc = nmcompile("export", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for phrase in ("other platforms' tools", "dt", "1e-4 s", "--nir-dt", "no integer semantics", "-o, --output"):
        assert phrase in text, phrase
