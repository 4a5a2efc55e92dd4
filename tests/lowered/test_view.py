"""The lowered network view: resolution over Flatten/Delay/recurrent edges, weight storage forms, outputs, routes."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from nmcompile.errors import UnsupportedError
from nmcompile.ir import arraymath, fixed
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.lowered import ConvWeights, CsrWeights, DenseWeights, lower_network
from nmcompile.lowered.limits import check_structure
from nmcompile.passes import PassContext, run_pipeline
from nmcompile.targets import get_target

PACKAGE = Path(__file__).resolve().parents[2] / "nmcompile"


def integer_chain() -> Graph:
    """in (2,3,3) -> Delay 2 -> Flatten -> fc (delay 1) -> l1 (8) ~> rec (recurrent edge, delay 1) -> l1;
    l1 -> fc2 (delay 3) -> l2 (4) -> out."""
    rng = np.random.default_rng(0)
    g = Graph("chain")
    g.add("in", O.Input(shape=(2, 3, 3)))
    g.add("d", O.Delay(delay=2))
    g.add("flat", O.Flatten())
    g.add("fc", O.QLinear(weight=rng.integers(-5, 5, (8, 18)), delay=1))
    g.add("l1", O.QNeuron(shape=(8,), vth=10))
    g.add("rec", O.QLinear(weight=rng.integers(-5, 5, (8, 8)), delay=1))
    g.add("fc2", O.QLinear(weight=rng.integers(-5, 5, (4, 8)), delay=3))
    g.add("l2", O.QNeuron(shape=(4,), vth=10))
    g.add("out", O.Output(shape=(4,)))
    g.chain("in", "d", "flat", "fc", "l1", "fc2", "l2", "out")
    g.connect("l1", "rec", recurrent=True)
    g.connect("rec", "l1")
    g.verify()
    return g


def test_projections_resolve_over_transparent_ops_and_recurrent_edges():
    view = lower_network(integer_chain())
    assert list(view.layers) == ["l1", "l2"] and list(view.inputs) == ["in"]
    fc, rec, fc2 = (view.projection(n) for n in ("fc", "rec", "fc2"))
    assert (fc.source, fc.dest, fc.source_shape, fc.in_shape, fc.out_shape) == ("in", "l1", (2, 3, 3), (18,), (8,))
    assert int(fc.delay) == 3 and fc.uniform_delay() == 3          # Delay node 2 + the op's own 1
    assert (rec.source, rec.dest, int(rec.delay)) == ("l1", "l1", 2)  # recurrent edge adds a step
    assert int(fc2.delay) == 3 and isinstance(fc2.weights, DenseWeights)
    assert view.into("l1") == [fc, rec] and view.outputs["out"].layer == "l2"


def test_per_element_delays_on_the_path_become_per_synapse_delays():
    g = integer_chain()
    g.replace_node("d", O.Delay(delay=np.arange(18).reshape(2, 3, 3) % 4))
    fc = lower_network(g).projection("fc")
    assert fc.per_synapse_delays and fc.delay.shape == (8, 18)
    np.testing.assert_array_equal(fc.delay, np.broadcast_to(np.arange(18) % 4 + 1, (8, 18)))


def test_conv_and_csr_forms_expand_exactly():
    rng = np.random.default_rng(1)
    kernel = rng.integers(-7, 8, (3, 2, 3, 3))
    g = Graph("c")
    g.add("in", O.Input(shape=(2, 5, 6)))
    g.add("conv", O.QConv(weight=kernel, stride=(2, 1), padding=(1, 0), wrap_bits=0))
    g.add("l", O.QNeuron(shape=(3, 3, 4)))
    g.add("out", O.Output(shape=(3, 3, 4)))
    g.chain("in", "conv", "l", "out")
    p = lower_network(g).projection("conv")
    assert isinstance(p.weights, ConvWeights) and p.weights.stride == (2, 1) and p.weights.padding == (1, 0)
    x = rng.integers(0, 2, (4, 2, 5, 6))
    direct = arraymath.int_conv(x, kernel, (2, 1), (1, 0), (1, 1), 1).reshape(4, -1)
    np.testing.assert_array_equal(x.reshape(4, -1) @ p.weights.to_dense().T, direct)
    assert p.synapses(((0, 3), (0, 3), (0, 4))) == int(np.count_nonzero(p.weights.to_dense()))
    csr = CsrWeights(np.array([0, 2, 3]), np.array([0, 2, 1]), np.array([1.0, 2.0, 3.0]), 3)
    np.testing.assert_array_equal(csr.to_dense(), [[1, 0, 2], [0, 3, 0]])


def test_effective_matrix_applies_the_sign_mode():
    g = integer_chain()
    g.replace_node("fc", g.node("fc").replace(weight=np.full((8, 18), 7), sign_mode="excitatory", num_weight_bits=2))
    p = lower_network(g).projection("fc")
    np.testing.assert_array_equal(p.effective_matrix(),
                                  fixed.prepared_weights(np.full((8, 18), 7), "excitatory", 2))


def test_outputs_tap_their_layer_and_a_sum_cannot_be_deployed():
    g = integer_chain()
    g.remove_edge(next(e for e in g.edges if e.dst == "out"))
    g.add("flat_out", O.Flatten())
    g.chain("l2", "flat_out", "out")
    tap = lower_network(g).outputs["out"]
    assert (tap.layer, tap.through) == ("l2", ("flat_out",))
    g.add("fc3", O.QLinear(weight=np.ones((4, 8), dtype=np.int64), delay=1))
    g.add("l3", O.QNeuron(shape=(4,), vth=10))
    g.chain("l1", "fc3", "l3", "out")
    assert lower_network(g).outputs["out"].layer is None
    with pytest.raises(UnsupportedError, match="output 'out' must be fed by exactly one neuron layer directly"):
        check_structure(lower_network(g))


def test_routes_follow_the_mapping():
    """Three small cores per layer: every route carries exactly the source neurons the destination core needs."""
    rng = np.random.default_rng(3)
    g = Graph("m")
    g.add("in", O.Input(shape=(10,)))
    g.add("fc1", O.Linear(weight=rng.normal(0.3, 0.5, (12, 10)) * (rng.random((12, 10)) < 0.4)))
    g.add("l1", O.LIF(shape=(12,), beta=0.9, threshold=1.0))
    g.add("fc2", O.Linear(weight=rng.normal(0.3, 0.5, (6, 12)) * (rng.random((6, 12)) < 0.4)))
    g.add("l2", O.LIF(shape=(6,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc1", "l1", "fc2", "l2", "out")
    target = get_target("spinnaker2", neurons_per_core=4)
    compiled = run_pipeline(g, ["retime", "quantize", "partition"], PassContext(target=target))
    view = lower_network(compiled)
    where = view.neuron_cores()
    assert set(view.layers["l1"].cores) == set(where["l1"].tolist()) and len(view.layers["l1"].cores) == 3
    fc2 = view.projection("fc2")
    expected: dict[tuple[int, int], set[int]] = {}
    for j, i in zip(*np.nonzero(fc2.effective_matrix()), strict=True):
        a, b = int(where["l1"][i]), int(where["l2"][j])
        if a != b:
            expected.setdefault((a, b), set()).add(int(i))
    got = {(r.src_core, r.dst_core): r.neurons for r in view.routes() if r.source == "l1"}
    assert got == {k: len(v) for k, v in expected.items()} and got


@pytest.mark.parametrize("module", ["cli.py", "api.py"])
def test_cli_and_api_name_no_backend(module):
    """Targets, options, boards and report sections come from the registry, never from a backend's name."""
    tree = ast.parse((PACKAGE / module).read_text())
    names = {"loihi", "loihi2", "spinnaker2", "fpga", "lava", "verilator"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("nmcompile.backends."), node.module
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in names, f"{module} names {node.value!r}"
