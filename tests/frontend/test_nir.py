"""NIR interop on graphs written by the `nir` package itself: mapping, round trips, warnings, errors."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest

from nmcompile.errors import InputFileError, NmcWarning, UnsupportedError
from nmcompile.frontend.nir import graph_from_nir, graph_to_nir, read_nir, write_nir
from nmcompile.ir import ops as O
from nmcompile.ir.base import same_op
from nmcompile.ir.dump import dump
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate

DT = 1e-4


def snntorch_style_mlp(rng) -> nir.NIRGraph:
    """Affine -> LIF -> Affine -> CubaLIF with a recurrent subgraph, as snnTorch's exporter writes it."""
    n = 5
    rec = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n])),
            "lif": nir.CubaLIF(tau_syn=np.full(n, 5e-4), tau_mem=np.full(n, 2e-3), r=np.full(n, 20.0),
                               v_leak=np.zeros(n), v_threshold=np.ones(n), w_in=np.full(n, 5.0)),
            "w_rec": nir.Linear(weight=rng.normal(0, 0.3, (n, n))),
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False,
    )
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([4])),
            "fc1": nir.Affine(weight=rng.normal(0, 1, (6, 4)), bias=rng.normal(0, 0.1, 6)),
            "lif1": nir.LIF(tau=np.full(6, 1e-3), r=np.full(6, 10.0), v_leak=np.zeros(6), v_threshold=np.ones(6)),
            "fc2": nir.Affine(weight=rng.normal(0, 1, (n, 6)), bias=np.zeros(n)),
            "rsyn": rec,
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "rsyn"), ("rsyn", "output")],
        type_check=False,
    )


def conv_graph(rng) -> nir.NIRGraph:
    """The shape of the NIR paper's CNN (Conv-IF-SumPool-Conv-IF-AvgPool-Flatten-Affine-LI), smaller."""
    return nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([2, 8, 8])),
        nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 0.5, (4, 2, 3, 3)), stride=1, padding=1, dilation=1,
                   groups=1, bias=np.zeros(4)),
        nir.IF(r=np.full((4, 8, 8), 1 / DT), v_threshold=np.ones((4, 8, 8))),
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 0.5, (3, 4, 3, 3)), stride=1, padding="same", dilation=1,
                   groups=1, bias=rng.normal(0, 0.1, 3)),
        nir.Scale(scale=np.full((3, 4, 4), 0.5)),
        nir.Threshold(threshold=np.full((3, 4, 4), 0.2)),
        nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
        nir.Delay(delay=np.full(12, 2 * DT)),
        nir.Affine(weight=rng.normal(0, 1, (3, 12)), bias=np.zeros(3)),
        nir.LI(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.zeros(3)),
        nir.Output(output_type=np.array([3])),
    )


@pytest.fixture(params=["mlp", "conv"])
def written(request, tmp_path):
    rng = np.random.default_rng(5)
    graph = snntorch_style_mlp(rng) if request.param == "mlp" else conv_graph(rng)
    path = tmp_path / f"{request.param}.nir"
    nir.write(str(path), graph)
    return path


def test_round_trip_nir_ir_nir_ir_is_identical(written, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NmcWarning)
        first = read_nir(written)
    first.verify()
    again = tmp_path / "again.nir"
    write_nir(first, again)
    second = read_nir(again)
    assert second.equals(first)
    assert dump(second) == dump(first)


def test_foreign_file_warns_about_reset(written):
    with pytest.warns(NmcWarning, match="NIR does not record reset mode"):
        read_nir(written)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NmcWarning)
        graph = read_nir(written, reset_mode="subtract")
    assert {graph.node(n).reset_mode for n in graph.of_kind("LIF", "CubaLIF", "IF")} == {"subtract"}


def test_snntorch_conventions_map_to_unit_gains(tmp_path):
    path = tmp_path / "m.nir"
    nir.write(str(path), snntorch_style_mlp(np.random.default_rng(1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NmcWarning)
        g = read_nir(path)
    lif = g.node("lif1")
    np.testing.assert_allclose(lif.beta, 0.9)
    np.testing.assert_allclose(lif.gain, 1.0)
    cuba = g.node("rsyn.lif")
    np.testing.assert_allclose([cuba.alpha[0], cuba.syn_gain[0], cuba.beta[0], cuba.gain[0]], [0.8, 1.0, 0.95, 1.0])
    rec = [e for e in g.edges if e.recurrent]
    assert [(e.src, e.dst) for e in rec] == [("rsyn.w_rec", "rsyn.lif")]
    assert ("fc2", "rsyn.lif") in [(e.src, e.dst) for e in g.edges]


def test_single_lif_matches_forward_euler(tmp_path):
    """The NIR paper's single-neuron task: tau=2.5 ms, r=1, threshold 0.1, dt=1e-4."""
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1])),
        nir.Affine(weight=np.array([[1.0]]), bias=np.zeros(1)),
        nir.LIF(tau=np.array([0.0025]), r=np.array([1.0]), v_leak=np.array([0.0]), v_threshold=np.array([0.1])),
        nir.Output(output_type=np.array([1])),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NmcWarning)
        g = graph_from_nir(graph, dt=DT)
    x = np.zeros((300, 1, 1))
    x[::10] = 1.0
    ours = simulate(g, x).output[:, 0, 0]
    v, expected = 0.0, []
    for t in range(300):
        v = v + DT / 0.0025 * (0.0 - v + 1.0 * x[t, 0, 0])
        expected.append(float(v > 0.1))
        v = 0.0 if v > 0.1 else v
    np.testing.assert_array_equal(ours, expected)
    assert ours.sum() > 0


def test_delay_needs_whole_steps(tmp_path):
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([2])), nir.Delay(delay=np.array([1.5e-4, 0.0])),
                                   nir.Output(output_type=np.array([2])))
    with pytest.raises(UnsupportedError, match="not a whole number of steps"):
        graph_from_nir(graph, dt=DT)
    assert graph_from_nir(graph, dt=0.5e-4).node("delay").delay.tolist() == [3, 0]


def test_exact_fields_survive_via_metadata(tmp_path):
    g = Graph("m")
    g.add("in", O.Input(shape=(3,)))
    g.add("fc", O.Linear(weight=np.eye(3)))
    g.add("n", O.LIF(shape=(3,), beta=[0.3, 0.7, 0.9], gain=0.1, compare=">=", reset_mode="subtract",
                     reset_timing="delayed", v_init=0.25))
    g.add("out", O.Output(shape=(3,)))
    g.chain("in", "fc", "n", "out")
    with pytest.warns(NmcWarning, match="NIR cannot express"):
        write_nir(g, tmp_path / "m.nir")
    back = read_nir(tmp_path / "m.nir")
    assert list(back.nodes) == list(g.nodes) and back.edges == g.edges
    for name, op in g.nodes.items():
        assert same_op(back.node(name).replace(provenance=None), op), name


def test_truncated_and_empty_files(tmp_path, written):
    data = written.read_bytes()
    cut = tmp_path / "cut.nir"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputFileError, match=r"cut.nir: truncated, corrupt or not a NIR file"):
        read_nir(cut)
    empty = tmp_path / "empty.nir"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match=r"empty\.nir: file is empty"):
        read_nir(empty)


def test_unwritable_ops_are_named():
    g = Graph("b")
    g.add("in", O.Input(shape=(3,)))
    g.add("bn", O.BatchNorm(mean=np.zeros(3), var=np.ones(3), weight=np.ones(3), bias=np.zeros(3)))
    g.add("out", O.Output(shape=(3,)))
    g.chain("in", "bn", "out")
    with pytest.raises(UnsupportedError, match="node 'bn' \\(BatchNorm\\) cannot be written to NIR: run the fold_bn"):
        graph_to_nir(g)
