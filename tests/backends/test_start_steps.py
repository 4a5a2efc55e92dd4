"""Start steps and signed thresholds on the peers that run them (docs/semantics.md §2.6): random integer networks
whose layers start at random steps, with inputs that do arrive before those steps (they must be dropped) and some
thresholds below 0 (neurons that fire at rest), equal the reference bit for bit: the C kernel under QEMU (spikes,
readouts, u and v at every step) and the RTL under Verilator (output spikes at every step, every layer's u and v after
the last). The compiled networks with layers not at rest are in test_conformance.py."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.ir.graph import Graph
from nmcompile.runtime.hil import verify_artifact
from nmcompile.runtime.qemu_pe import run_pe
from tests.backends.test_fpga import assert_states_equal_reference, random_integer_network
from tests.backends.test_spinnaker2_kernel import (  # noqa: F401 (elf is a fixture)
    ALL_OPTIONS,
    check_sample,
    elf,
    host_keys,
    pack_image,
    random_inputs,
    random_network,
    reference,
)


def start_step(rng, steps: int) -> int:
    """0, a few steps, or beyond the run (a layer that never starts)."""
    return int(rng.choice([0, int(rng.integers(1, 8)), int(rng.integers(8, steps)), steps + 5]))


def below_rest(op, rng):
    """About a quarter of the neurons get a negative threshold (signed vth), down to the largest magnitude (not with
    reset by subtraction, which refuses them)."""
    if op.reset_mode == "subtract":
        return op
    vth = np.broadcast_to(op.vth, op.shape).copy()
    low = rng.random(op.shape) < 0.25
    vth[low] = -rng.integers(0, 400, int(low.sum()))
    if low.any():
        vth[np.flatnonzero(low)[0]] = -(1 << 17)          # the fpga's most negative vth
    return op.replace(vth=vth)


@pytest.mark.parametrize("seed", range(2))
def test_kernel_holds_layers_until_their_start_step(elf, seed):  # noqa: F811
    rng = np.random.default_rng(2000 + seed)
    configs = [ALL_OPTIONS[(5 * seed + 3 * k) % len(ALL_OPTIONS)] for k in range(4)]
    net = random_network(rng, configs, readout=True, hot=seed == 0, max_neurons=90)
    steps, batch = 30, 2
    signs = np.random.default_rng(seed)
    for layer in net.layers:
        layer.op = layer.op.replace(start_step=start_step(rng, steps))
        if layer.op.spiking:
            layer.op = below_rest(layer.op, signs)
    assert any(0 < layer.op.start_step < steps for layer in net.layers)
    x = random_inputs(rng, net, steps, batch)
    values, states = reference(net, x)
    ticks = [host_keys(net, x, rng, b, steps) for b in range(batch)]
    samples = run_pe(elf, pack_image(net, rng), ticks, record=True, name=f"start{seed}.bin")
    for b, s in enumerate(samples):
        check_sample(net, values, states, b, s.spikes, s.readout, s.u, s.v)
    assert sum(int(s.spikes.sum()) for s in samples) > 0


def late_layers(g: Graph, rng, steps: int, signs) -> Graph:
    out = g.copy()
    for name, op in g.nodes.items():
        if op.role == "neuron":
            out.replace_node(name, below_rest(op.replace(start_step=start_step(rng, steps)), signs))
    return out


@pytest.mark.parametrize("seed", [312, 315])    # start steps 35 / 22 and 29 / 10 / 4 (seeds whose delays fit fpga)
def test_rtl_holds_layers_until_their_start_step(seed, tmp_path):
    rng = np.random.default_rng(seed)
    steps = 40
    g = late_layers(random_integer_network(rng), rng, steps, np.random.default_rng(seed + 1))
    x = (rng.random((steps, 2, g.node("in").shape[0])) < rng.uniform(0.1, 0.5)).astype(np.int64)
    assert_states_equal_reference(g, x, tmp_path / "late")


def test_loihi2_runs_a_layer_that_quantizes_to_rest_from_the_first_step(tmp_path):
    """A CubaLIF bias too small to survive quantization: retime holds the float layer (start step 1), the integer
    layer is at rest, so loihi2 takes it and Lava runs it from the first step, equal to the reference (which holds
    it)."""
    from nmcompile.ir import ops as O
    from nmcompile.runtime.board import open_board
    from tests.backends.networks import compile_graph, mlp

    rng = np.random.default_rng(0)
    g = mlp(rng)
    g.replace_node("l1", O.CubaLIF(shape=(30,), alpha=0.5, beta=0.8, threshold=1.0, bias=1e-9))
    calibration = (rng.random((30, 2, 20)) < 0.3).astype(np.int64)
    out = compile_graph(g, tmp_path, calibration, "loihi2")
    art = artifact.read(out)
    assert art.graph.node("l1").start_step == 1 and not np.any(art.graph.node("l1").bias_mant)
    result = verify_artifact(out, "lava://", board=open_board("lava://"))
    assert result.passed, "\n".join(result.lines())
    assert all(ref.any() for ref in art.reference()[1].values()), "silent reference"
