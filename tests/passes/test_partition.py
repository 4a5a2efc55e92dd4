"""partition: every core within every limit, the lower bound below the result, conv layers tiled without
expanding their synapses, errors that name the layer and the numbers, deterministic output."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.errors import ResourceError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.passes import PassContext, PassError, run_pipeline
from nmcompile.passes.partition import RESOURCES, capacity, neuron_cores
from nmcompile.targets import get_target
from tests.conftest import mlp


def conv_net(channels=8, size=32, rng=None) -> Graph:
    rng = rng or np.random.default_rng(0)
    g = Graph("conv")
    g.add("in", O.Input(shape=(2, size, size)))
    g.add("c1", O.Conv2d(weight=rng.normal(0.1, 0.3, (channels, 2, 3, 3)), padding=1))
    g.add("l1", O.LIF(shape=(channels, size, size), beta=0.9))
    g.add("c2", O.Conv2d(weight=rng.normal(0.1, 0.3, (channels, channels, 3, 3)), stride=2, padding=1))
    g.add("l2", O.LIF(shape=(channels, size // 2, size // 2), beta=0.9))
    g.add("flat", O.Flatten())
    g.add("fc", O.Linear(weight=rng.normal(0, 0.1, (10, channels * (size // 2) ** 2))))
    g.add("l3", O.LIF(shape=(10,), beta=0.9))
    g.add("out", O.Output(shape=(10,)))
    g.chain("in", "c1", "l1", "c2", "l2", "flat", "fc", "l3", "out")
    g.verify()
    return g


def partition(g: Graph, target: str, **overrides) -> tuple[Graph, PassContext]:
    ctx = PassContext(target=get_target(target, **overrides))
    return run_pipeline(g, ["partition"], ctx), ctx


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2"])
def test_cores_respect_limits_and_bound(target):
    g, _ = partition(conv_net(), target)
    m = g.mapping
    cap = capacity(get_target(target))
    assert np.all(m.core_use <= cap + 1e-9)
    assert max(m.lower_bound.values()) <= m.cores
    for layer, cores in neuron_cores(m.tiles, {n: g.node(n).shape for n in ("l1", "l2", "l3")}).items():
        assert cores.min() >= 0, f"{layer}: unassigned neurons"
    assert m.traffic <= m.naive["traffic"]
    text = "\n".join(m.lines())
    assert "lower bound" in text and "naive sequential fill" in text


def test_conv_layers_are_tiled_spatially_not_flattened():
    g, _ = partition(conv_net(channels=16, size=32), "spinnaker2")
    tiles = [t for t in g.mapping.tiles if t.layer == "l1"]
    assert all(len(t.boxes) == 1 and len(t.boxes[0]) == 3 for t in tiles)
    heights = {t.boxes[0][1][1] - t.boxes[0][1][0] for t in tiles}
    widths = {t.boxes[0][2][1] - t.boxes[0][2][0] for t in tiles}
    assert max(heights) > 1 and max(widths) > 1  # blocks, not rows of a flattened map


def test_partition_is_deterministic():
    a, _ = partition(conv_net(), "loihi2")
    b, _ = partition(conv_net(), "loihi2")
    assert a.mapping.to_json() == b.mapping.to_json()


def test_small_layers_share_cores():
    g, _ = partition(mlp(np.random.default_rng(0), (10, 20, 20, 5)), "loihi2")
    assert g.mapping.cores == 1 and g.mapping.naive["cores"] == 3


def test_fan_in_beyond_a_core_names_layer_and_numbers():
    g = mlp(np.random.default_rng(0), (5000, 4))
    with pytest.raises(PassError, match=r"layer 'lif0': a single neuron does not fit a core of loihi2: fan in 5000 > "
                                        r"4096 per core"):
        partition(g, "loihi2")


def test_too_many_cores_names_the_layer():
    g = mlp(np.random.default_rng(0), (8, 3000, 8))
    with pytest.raises(PassError, match=r"layer 'lif0' \(3,000 neurons\) does not fit: the network \(3,008 neurons\) "
                                        r"needs 3 cores but loihi2 has 2 \(2 per chip x 1 chip\(s\), 1,024 neurons"):
        partition(g, "loihi2", cores_per_chip=2)


def test_dense_fan_in_limits_neurons_per_core_by_memory():
    """3000 inputs x 18-bit synapses: a 1 Mbit Loihi core holds the rows of only 17 neurons."""
    g, _ = partition(mlp(np.random.default_rng(0), (3000, 170)), "loihi2")
    assert g.mapping.cores == 10 and g.mapping.lower_bound["memory"] <= 10


def test_chips_fill_one_after_another():
    g, _ = partition(mlp(np.random.default_rng(0), (8, 3000, 8)), "loihi2", cores_per_chip=2, chips=4)
    m = g.mapping
    assert m.chips_used == 2 and m.core_chip == [0, 0, 1]
    assert 0 < m.inter_chip_traffic <= m.traffic


def test_fan_out_limit_shrinks_source_tiles():
    g, _ = partition(mlp(np.random.default_rng(2), (6, 1500, 300)), "loihi2")
    assert g.mapping.fan_out.max() <= 4096


def test_rates_from_calibration_weight_the_traffic():
    rng = np.random.default_rng(2)
    g = mlp(rng, (6, 1500, 300))
    ctx = PassContext(target=get_target("loihi2"), calibration=(rng.random((20, 2, 6)) < 0.5).astype(np.int64))
    out = run_pipeline(g, ["partition"], ctx)
    assert out.mapping.rates_measured and "spikes/step" in "\n".join(out.mapping.lines())


def test_a_compute_budget_limits_the_cores():
    """Per tick, a core retires instructions_per_tick: neuron updates and synaptic events at their measured cost."""
    rng = np.random.default_rng(2)
    g = mlp(rng, (50, 200, 20))
    x = (rng.random((20, 2, 50)) < 0.5).astype(np.int64)
    free = run_pipeline(g, ["partition"], PassContext(target=get_target("spinnaker2"), calibration=x)).mapping
    target = get_target("spinnaker2", instructions_per_tick=20_000, instructions_per_neuron_update=20,
                        instructions_per_synaptic_event=10, instructions_per_packet=50)
    mapping = run_pipeline(g, ["partition"], PassContext(target=target, calibration=x)).mapping
    k = RESOURCES.index("instructions")
    assert mapping.core_use[:, k].max() <= 20_000 and mapping.cores > free.cores
    assert "instructions" in mapping.lower_bound and mapping.cores >= mapping.lower_bound["instructions"]


def test_resource_error_class():
    assert issubclass(ResourceError, Exception)


def test_router_entries_are_checked():
    g = mlp(np.random.default_rng(0), (8, 600, 600))
    with pytest.raises(PassError, match=r"chip \d+ needs \d+ routing entries, more than the 3 of a spinnaker2 router"):
        partition(g, "spinnaker2", router_entries=3, cores_per_chip=2)
    out, _ = partition(g, "spinnaker2")
    assert out.mapping.cores > 2


def test_every_conv_tile_fits_its_core():
    """A padded convolution: the block at the corner needs fewer synapses than an interior one; every tile of the
    chosen block shape must fit (an earlier version measured only the corner block and overfilled cores)."""
    rng = np.random.default_rng(0)
    g = Graph("conv")
    g.add("in", O.Input(shape=(4, 16, 16)))
    g.add("c1", O.Conv2d(weight=rng.normal(0.2, 0.3, (16, 4, 3, 3)), padding=1))
    g.add("l1", O.LIF(shape=(16, 16, 16), beta=0.9, threshold=1.0))
    g.add("c2", O.Conv2d(weight=rng.normal(0.2, 0.3, (16, 16, 5, 5)), padding=2))
    g.add("l2", O.LIF(shape=(16, 16, 16), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(16, 16, 16)))
    g.chain("in", "c1", "l1", "c2", "l2", "out")
    for target in ("loihi2", "spinnaker2"):
        mapping = run_pipeline(g, ["partition"], PassContext(target=get_target(target))).mapping
        assert np.all(mapping.core_use <= mapping.capacity + 1e-9), target
