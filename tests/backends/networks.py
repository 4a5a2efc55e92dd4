"""Small float networks the backend conformance tests compile, and the compile helper they share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save


def dense(rng, n_in, n_out, *, mean=0.3, std=0.6, bias=False, density=1.0, delays=None) -> O.Linear:
    """Random weights N(mean, std) (a fraction `density` kept); `delays`: an int k draws per-synapse extra delays in
    0..k, an array is used as given."""
    w = rng.normal(mean, std, (n_out, n_in)) * (rng.random((n_out, n_in)) < density)
    if isinstance(delays, int):
        delays = rng.integers(0, delays + 1, (n_out, n_in)) if delays else None
    return O.Linear(weight=w, bias=rng.normal(0.1, 0.2, n_out) if bias else None, delays=delays)


def mlp(rng, bias=False) -> Graph:
    g = Graph("mlp")
    g.add("in", O.Input(shape=(20,)))
    g.add("fc1", dense(rng, 20, 30, bias=bias))
    g.add("l1", O.LIF(shape=(30,), beta=rng.uniform(0.6, 0.95), threshold=1.0,
                      bias=rng.normal(0, 0.05) if bias else 0.0))
    g.add("fc2", dense(rng, 30, 10, bias=bias))
    g.add("l2", O.IF(shape=(10,), threshold=1.5))
    g.add("out", O.Output(shape=(10,)))
    g.chain("in", "fc1", "l1", "fc2", "l2", "out")
    return g


def recurrent(rng, hidden=16) -> Graph:
    g = Graph("rnn")
    g.add("in", O.Input(shape=(12,)))
    g.add("fc", dense(rng, 12, hidden))
    g.add("cuba", O.CubaLIF(shape=(hidden,), alpha=0.6, beta=0.8, threshold=1.0))
    g.add("rec", dense(rng, hidden, hidden, mean=0.15, std=0.3))
    g.add("fc2", dense(rng, hidden, 6))
    g.add("l2", O.LIF(shape=(6,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc", "cuba", "fc2", "l2", "out")
    g.connect("cuba", "rec", recurrent=True)
    g.connect("rec", "cuba")
    return g


def conv(rng, size=8) -> Graph:
    """conv 3x3 (padded) -> LIF -> avg pool 2 -> conv 3x3 with bias -> LIF -> flatten -> dense -> LIF."""
    side = (size // 2) - 2
    g = Graph("cnn")
    g.add("in", O.Input(shape=(2, size, size)))
    g.add("c1", O.Conv2d(weight=rng.normal(0.3, 0.5, (4, 2, 3, 3)), padding=1))
    g.add("l1", O.LIF(shape=(4, size, size), beta=0.8, threshold=1.0))
    g.add("p1", O.AvgPool2d(kernel_size=2, stride=2))
    g.add("c2", O.Conv2d(weight=rng.normal(0.3, 0.5, (6, 4, 3, 3)), bias=rng.normal(0.2, 0.1, 6)))
    g.add("l2", O.LIF(shape=(6, side, side), beta=0.9, threshold=1.0))
    g.add("flat", O.Flatten())
    g.add("fc", dense(rng, 6 * side * side, 5))
    g.add("l3", O.LIF(shape=(5,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(5,)))
    g.chain("in", "c1", "l1", "p1", "c2", "l2", "flat", "fc", "l3", "out")
    return g


def sparse_pool_conv(rng) -> Graph:
    """conv 3x3 -> avg pool 2 with padding 1 on its currents (no conv form: a CSR projection, so l1 (4, 3, 3) becomes
    flat), read by a padded conv 3x3 through a Reshape to (4, 3, 3) and by a Conv1d (stride 2, padding 2, dilation 2)
    through Flatten(1, 2), which becomes a Reshape to (4, 9); both LIF layers -> flatten -> dense -> one LIF."""
    g = Graph("reshape")
    g.add("in", O.Input(shape=(2, 7, 7)))
    g.add("c1", O.Conv2d(weight=rng.normal(0.2, 0.5, (4, 2, 3, 3)), bias=rng.normal(0.0, 0.1, 4)))
    g.add("p1", O.AvgPool2d(kernel_size=2, stride=2, padding=1))
    g.add("l1", O.LIF(shape=(4, 3, 3), beta=0.8, threshold=1.0))
    g.add("c2", O.Conv2d(weight=rng.normal(0.1, 0.5, (3, 4, 3, 3)), padding=1))
    g.add("l2", O.LIF(shape=(3, 3, 3), beta=0.9, threshold=1.0))
    g.add("rows", O.Flatten(start_dim=1, end_dim=2))
    g.add("c3", O.Conv1d(weight=rng.normal(0.1, 0.5, (3, 4, 3)), stride=2, padding=2, dilation=2))
    g.add("l3", O.LIF(shape=(3, 5), beta=0.9, threshold=1.0))
    g.add("flat2", O.Flatten())
    g.add("fc2", dense(rng, 27, 5, mean=0.05, std=0.5))
    g.add("flat3", O.Flatten())
    g.add("fc3", dense(rng, 15, 5, mean=0.05, std=0.5))
    g.add("l4", O.LIF(shape=(5,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(5,)))
    g.chain("in", "c1", "p1", "l1", "c2", "l2", "flat2", "fc2", "l4", "out")
    g.chain("l1", "rows", "c3", "l3", "flat3", "fc3", "l4")
    return g


def csr(rng, n_in, n_out, *, density, mean=0.3, std=0.6) -> O.SparseLinear:
    """A SparseLinear with about `density` of the synapses declared, values N(mean, std)."""
    mask = rng.random((n_out, n_in)) < density
    rows, cols = np.nonzero(mask)
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))])
    return O.SparseLinear(indptr=indptr, indices=cols.astype(np.int32), values=rng.normal(mean, std, rows.size),
                          in_features=n_in)


def sparse(rng) -> Graph:
    """CSR projections: mixed signs into a LIF layer, then excitatory only (the sign mode's full 8 bits)."""
    g = Graph("sparse")
    g.add("in", O.Input(shape=(20,)))
    g.add("fc1", csr(rng, 20, 30, density=0.3, mean=0.6, std=0.9))
    g.add("l1", O.LIF(shape=(30,), beta=0.85, threshold=1.0))
    g.add("fc2", csr(rng, 30, 10, density=0.25, mean=0.8, std=0.2))
    g.add("l2", O.IF(shape=(10,), threshold=1.2))
    g.add("out", O.Output(shape=(10,)))
    g.chain("in", "fc1", "l1", "fc2", "l2", "out")
    return g


def delays(rng) -> Graph:
    """Per-synapse delays on a dense and on a sparse projection (Lava: DelayDense and DelaySparse)."""
    g = Graph("delays")
    g.add("in", O.Input(shape=(16,)))
    g.add("fc1", dense(rng, 16, 24, delays=6))
    g.add("l1", O.LIF(shape=(24,), beta=0.85, threshold=1.0))
    g.add("fc2", dense(rng, 24, 8, mean=0.9, std=1.8, density=0.08, delays=3))
    g.add("l2", O.LIF(shape=(8,), beta=0.9, threshold=0.8))
    g.add("out", O.Output(shape=(8,)))
    g.chain("in", "fc1", "l1", "fc2", "l2", "out")
    return g


def subtract(rng) -> Graph:
    """Reset by subtraction, a refractory period, '>=' and per-neuron thresholds, biases, a delay of 5."""
    g = Graph("subtract")
    g.add("in", O.Input(shape=(16,)))
    g.add("fc1", dense(rng, 16, 24, bias=True))
    g.add("l1", O.LIF(shape=(24,), beta=0.9, threshold=rng.uniform(0.6, 1.4, 24), reset_mode="subtract",
                      compare=">="))
    g.add("fc2", dense(rng, 24, 8, bias=True, delays=np.full((8, 24), 4)))
    g.add("l2", O.LIF(shape=(8,), beta=0.85, threshold=1.0, reset_mode="subtract", refractory=2))
    g.add("out", O.Output(shape=(8,)))
    g.chain("in", "fc1", "l1", "fc2", "l2", "out")
    return g


def delayed(rng, hidden=16) -> Graph:
    """snnTorch's defaults: Leaky (reset by subtraction, delayed) into a recurrent Synaptic-like layer with reset to
    zero, delayed (RSynaptic/RLeaky with reset_mechanism='zero'), then Leaky again."""
    g = Graph("delayed")
    g.add("in", O.Input(shape=(16,)))
    g.add("fc1", dense(rng, 16, 24, bias=True))
    g.add("l1", O.LIF(shape=(24,), beta=0.9, threshold=1.0, reset_mode="subtract", reset_timing="delayed"))
    g.add("fc2", dense(rng, 24, hidden))
    g.add("cuba", O.CubaLIF(shape=(hidden,), alpha=0.6, beta=0.85, threshold=1.0, reset_mode="zero",
                            reset_timing="delayed"))
    g.add("rec", dense(rng, hidden, hidden, mean=0.1, std=0.4))
    g.add("fc3", dense(rng, hidden, 6))
    g.add("l3", O.LIF(shape=(6,), beta=0.8, threshold=1.0, reset_mode="subtract", reset_timing="delayed"))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc1", "l1", "fc2", "cuba", "fc3", "l3", "out")
    g.connect("cuba", "rec", recurrent=True)
    g.connect("rec", "cuba")
    return g


def restless(rng) -> Graph:
    """Layers not at rest before their first input arrives (held by a start step on hardware): a current-based layer
    whose biases make it fire on its own (a CubaLIF bias cannot move onto a constant source), a LIF whose membranes
    start from non-zero v_init (above the threshold or leaking), then an IF resting at a non-zero v_init (a fixed
    point: it needs no start step)."""
    g = Graph("restless")
    g.add("in", O.Input(shape=(16,)))
    g.add("fc1", dense(rng, 16, 24, bias=True))
    g.add("l1", O.CubaLIF(shape=(24,), alpha=0.5, beta=0.85, threshold=1.0, bias=rng.uniform(0.0, 0.4, 24)))
    g.add("fc2", dense(rng, 24, 12))
    g.add("l2", O.LIF(shape=(12,), beta=0.8, threshold=1.0, v_init=rng.uniform(-0.5, 1.5, 12)))
    g.add("fc3", dense(rng, 12, 6))
    g.add("l3", O.IF(shape=(6,), threshold=1.0, v_init=0.25))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc1", "l1", "fc2", "l2", "fc3", "l3", "out")
    return g


def mpbn(rng) -> Graph:
    """Two `nmcompile.nn.MPBNLIF` layers traced from PyTorch: batch-norm statistics gathered in training mode over
    random spikes, then scales and shifts with gamma = 0 channels (constant neurons, some firing at every step) in
    both, gamma < 0 channels (negated neurons) in the second (reset to zero; the first resets by subtraction, which
    gamma < 0 cannot fold into), and shifts that put about half of the neurons' firing condition at rest (c > 0.5),
    so they fire before any input arrives: below-rest thresholds (negative in the second layer), held by a start
    step."""
    import torch
    from torch import nn

    from nmcompile.frontend.trace import graph_from_module
    from nmcompile.nn import MPBNLIF

    torch.manual_seed(int(rng.integers(1 << 31)))
    model = nn.Sequential(nn.Linear(16, 24), MPBNLIF(24, reset="subtract"), nn.Linear(24, 8), MPBNLIF(8))
    first, second = model[1], model[3]
    with torch.no_grad():
        for linear in (model[0], model[2]):
            linear.weight.mul_(4.0)
        model.train()
        for _ in range(3):
            first.reset_state()
            second.reset_state()
            for x in (torch.rand(10, 32, 16) < 0.3).float():
                model(x)
        model.eval()
        for layer in (first, second):
            a = torch.empty(layer.num_features).uniform_(0.5, 1.5)
            a[:2] = 0.0
            if layer is second:
                a[2:5] *= -1.0
            c = torch.empty(layer.num_features).uniform_(-0.5, 1.5)   # y = a h + c: at rest (h = 0) y = c
            c[0] = 1.0                                             # a constant neuron that fires at every step
            sd = torch.sqrt(layer.running_var + layer.eps)
            layer.weight.copy_(a * sd)
            layer.bias.copy_(c + layer.running_mean * a)
    traced, _ = graph_from_module(model, (16,), name="mpbn")
    names = {traced.inputs[0]: "in", traced.outputs[0]: "out"}      # the names the backend tests read
    graph = Graph("mpbn")
    for name, op in traced.nodes.items():
        graph.add(names.get(name, name), op)
    for edge in traced.edges:
        graph.connect(names.get(edge.src, edge.src), names.get(edge.dst, edge.dst), edge.recurrent)
    return graph


# The shared conformance networks: every registered backend compiles each one and runs it bit-exactly on its
# conformance boards, or refuses it naming the limit of its target listed in tests/backends/test_conformance.py.
NETWORKS = {"mlp": mlp, "mlp_bias": lambda rng: mlp(rng, bias=True), "recurrent": recurrent,
            "conv": lambda rng: conv(rng, size=6), "delays": delays, "sparse": sparse, "subtract": subtract,
            "delayed": delayed, "restless": restless, "mpbn": mpbn,
            "reshape": sparse_pool_conv}


def compile_graph(graph: Graph, tmp: Path, calibration: np.ndarray, target: str, **request) -> Path:
    """Save `graph`, compile it for `target` with `calibration` spikes as calibration and reference inputs."""
    graph.verify()
    source = save(graph, tmp / f"{graph.name}.nmir")
    np.savez(tmp / "calib.npz", spikes=calibration)
    out = tmp / f"{graph.name}-{target}"
    compile_network(CompileRequest(source=source, target=target, out=out, options=SourceOptions(),
                                   calibration_spikes=tmp / "calib.npz", **request), log=lambda m: None)
    return out


def integer_mlp(rng) -> Graph:
    """An integer 20 -> 30 -> 10 chain as lava-dl's slayer exports it (even 8-bit weights, exponent 0): compiled
    as it is (no quantize), its model.net is exactly what netx reads."""
    g = Graph("imlp")
    g.add("in", O.Input(shape=(20,)))
    g.add("fc1", O.QLinear(weight=2 * rng.integers(-60, 128, (30, 20)), num_weight_bits=8))
    g.add("l1", O.QNeuron(shape=(30,), du=4095, dv=1164, vth=900))
    g.add("fc2", O.QLinear(weight=2 * rng.integers(-50, 128, (10, 30)), num_weight_bits=8))
    g.add("l2", O.QNeuron(shape=(10,), du=4095, dv=0, vth=1500))
    g.add("out", O.Output(shape=(10,)))
    g.chain("in", "fc1", "l1", "fc2", "l2", "out")
    g.latency = 2
    return g
