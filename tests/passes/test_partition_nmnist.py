"""The snnTorch N-MNIST network (tests/passes/nmnist.py, 14,682 neurons) partitioned within 1.2x of the stated
lower bound on loihi2 and spinnaker2, every core within every limit; on spinnaker2 the partitioner's memory per core
is the emitted PE image's own size (so every accepted partition emits); too few chips name the --chips to pass; the
loihi2 build runs bit-exactly in Lava's simulator."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.backends import get_backend
from nmcompile.errors import ResourceError
from nmcompile.passes import PassContext, get_pass, run_pipeline
from nmcompile.targets import get_target
from tests.passes.nmnist import nmnist_graph

QUALITY = 1.2   # cores / lower bound the partitioner must reach on this network


@pytest.fixture(scope="module")
def quantized():
    """The network after every pass before partition, per target (quantize is the slow part: done once)."""
    graphs = {}
    for name in ("loihi2", "spinnaker2"):
        graph, ctx = nmnist_graph(), PassContext(target=get_target(name))
        pipeline = get_backend(name).pipeline
        graphs[name] = run_pipeline(graph, list(pipeline[:pipeline.index("partition")]), ctx)
    return graphs


def partition(graph, target: str, **overrides):
    return get_pass("partition").load()(graph, PassContext(target=get_target(target, **overrides)))


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2"])
def test_nmnist_within_its_lower_bound(quantized, target):
    mapping = partition(quantized[target], target).mapping
    bound = max(mapping.lower_bound.values())
    assert np.all(mapping.core_use <= mapping.capacity + 1e-9)
    assert bound <= mapping.cores <= QUALITY * bound, "\n".join(mapping.lines())
    layers = {t.layer for t in mapping.tiles}
    assert layers == {"lif1", "lif2", "lif3"}


def test_nmnist_spinnaker2_partition_sizes_are_the_emitted_sizes(quantized):
    """Cores filled to within a few bytes of a PE's 67,328: the emitter writes exactly what the partitioner
    counted, PE by PE, and refuses none."""
    from nmcompile.backends.spinnaker2.lower import DATA_BYTES, lower
    from nmcompile.lowered import lower_network

    graph = partition(quantized["spinnaker2"], "spinnaker2")
    design = lower(lower_network(graph), get_target("spinnaker2"))
    written = np.array([len(pe.image) + 4 * pe.state_words for pe in design.pes])
    counted = graph.mapping.core_use[[pe.core for pe in design.pes], 1] / 8
    np.testing.assert_array_equal(counted, written)
    assert written.max() <= DATA_BYTES and written.max() > 0.95 * DATA_BYTES


def test_nmnist_on_too_few_cores_names_the_chips_to_pass(quantized):
    with pytest.raises(ResourceError, match=r"needs \d+ cores but loihi2 has 64 .*; it needs 2 chips: pass --chips 2"):
        partition(quantized["loihi2"], "loihi2", cores_per_chip=64)
    assert partition(quantized["loihi2"], "loihi2", cores_per_chip=64, chips=2).mapping.chips_used == 2


@pytest.mark.slow
def test_nmnist_runs_bit_exactly_in_lava(tmp_path):
    """The partitioned loihi2 build in Lava 0.10's fixed_pt models: output spikes and every layer's u and v equal the
    integer reference at every step of a short run."""
    from nmcompile import artifact
    from nmcompile.ir.simulate import simulate
    from nmcompile.runtime.lava_board import LavaBoard, lava_python
    from tests.backends.networks import compile_graph

    lava_python()  # fails (not skips) with the setup command when Lava is missing
    rng = np.random.default_rng(0)
    spikes = (rng.random((6, 1, 2, 34, 34)) < 0.3).astype(np.int64)
    art = artifact.read(compile_graph(nmnist_graph(), tmp_path, spikes, "loihi2", reference_samples=1))
    inputs, _ = art.reference()
    padded = np.concatenate([inputs, np.zeros((art.latency, *inputs.shape[1:]), dtype=inputs.dtype)])
    board = LavaBoard(states=True)
    board.load(art.path)
    outputs = board.run_all(padded)
    reference = simulate(art.graph, padded, record=True)
    for name, ref in reference.outputs.items():
        np.testing.assert_array_equal(outputs[name], ref, err_msg=f"output {name}")
    for layer, states in reference.states.items():
        for var in ("u", "v"):
            np.testing.assert_array_equal(board.last_states[f"{layer}.{var}"], states[var], err_msg=f"{layer}.{var}")
    assert reference.states["lif1"]["v"].any(), "the first layer never charges: the comparison would be vacuous"
