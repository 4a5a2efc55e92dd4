"""The generic target check: every refusal names the layer or projection, the targets that support the feature
(computed from TARGETS with the same rule) and the target's own field and limit."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.errors import UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.lowered import lower_network
from nmcompile.lowered.limits import check_target
from nmcompile.targets import TARGETS, get_target


def network(neuron: dict | None = None, projection: dict | None = None) -> Graph:
    g = Graph("n")
    g.add("in", O.Input(shape=(6,)))
    g.add("fc", O.QLinear(weight=np.arange(24).reshape(4, 6) % 7 - 3, num_weight_bits=8,
                          **{"delay": 1, **(projection or {})}))
    g.add("l1", O.QNeuron(shape=(4,), **{"vth": 20, **(neuron or {})}))
    g.add("out", O.Output(shape=(4,)))
    g.chain("in", "fc", "l1", "out")
    return g


def supporters(rule) -> str:
    return ", ".join(t.name for t in TARGETS.values() if rule(t))


CASES = [
    ({"reset_mode": "subtract"}, None, "layer 'l1': reset by subtraction", "reset_modes",
     lambda t: "subtract" in t.reset_modes),
    ({"reset_timing": "delayed"}, None, "layer 'l1': delayed reset", "reset_timings",
     lambda t: "delayed" in t.reset_timings),
    ({"compare": ">="}, None, "layer 'l1': the comparison '>='", "comparisons", lambda t: ">=" in t.comparisons),
    ({"refractory": 3}, None, "layer 'l1': a refractory period of 3 steps", "max_refractory",
     lambda t: t.max_refractory >= 3),
    ({"spiking": False, "reset_mode": "none"}, None, "layer 'l1': a non-spiking readout (QNeuron)", "readout_neurons",
     lambda t: t.readout_neurons),
    ({"vth": np.array([5, 6, 7, 8])}, None, "layer 'l1': a threshold per neuron", "per_neuron_threshold",
     lambda t: t.per_neuron_threshold),
    ({"dv": np.array([5, 6, 7, 8])}, None, "layer 'l1': a decay (du/dv) per neuron", "per_neuron_decay",
     lambda t: t.per_neuron_decay),
    ({"bias_mant": 5, "bias_exp": 9}, None, "layer 'l1': bias exponents 9..9", "bias_exp_range",
     lambda t: t.bias_exp_range[1] >= 9),
    (None, {"delay": 12}, "projection 'fc': a delay of 12 steps", "delay_range", lambda t: t.delay_range[1] >= 12),
    (None, {"weight_exp": 12}, "projection 'fc': a weight exponent of 12", "weight_exp_range",
     lambda t: t.weight_exp_range[1] >= 12),
]


def test_a_per_synapse_refusal_names_the_targets_that_take_those_delays():
    """Delays 1..12 per synapse on an fpga without per-synapse delays: spinnaker2 has per-synapse delays but only up
    to 8 steps, so loihi2 and fpga (up to 31) are named."""
    view = lower_network(network(None, {"delay": np.arange(24).reshape(4, 6) % 12 + 1}))
    with pytest.raises(UnsupportedError, match=r"^projection 'fc': a delay per synapse \(1\.\.12 steps\) is not "
                                               r"supported by fpga \(supported by: loihi2, fpga; fpga "
                                               r"per_synapse_delays: False"):
        check_target(view, get_target("fpga", per_synapse_delays=False))


@pytest.mark.parametrize(("neuron", "projection", "what", "field", "rule"), CASES)
@pytest.mark.parametrize("name", list(TARGETS))
def test_refusals_are_computed_from_the_targets(name, neuron, projection, what, field, rule):
    target = TARGETS[name]
    view = lower_network(network(neuron, projection))
    if rule(target):
        check_target(view, target)
        return
    able = supporters(rule)
    where = f"supported by: {able}" if able else "no target supports it"
    with pytest.raises(UnsupportedError) as err:
        check_target(view, target)
    message = str(err.value)
    assert message.startswith(f"{what} is not supported by {name} ({where}; {name} {field}: "), message


def test_every_case_is_refused_by_some_target_and_run_by_another():
    """The table above exercises real differences between the targets (else it would test nothing); the bias
    exponent case is refused by all of them ("no target supports it")."""
    for _, _, what, _, rule in CASES:
        able = [t for t in TARGETS.values() if rule(t)]
        assert 0 < len(able) < len(TARGETS) or ("bias" in what and not able), what


def test_overridden_limits_are_checked_and_named():
    target = get_target("fpga", delay_range=(1, 4))
    with pytest.raises(UnsupportedError, match=r"a delay of 5 steps is not supported by fpga \(supported by: loihi2, "
                                               r"spinnaker2, fpga; fpga delay_range: 1\.\.4\)"):
        check_target(lower_network(network(projection={"delay": 5})), target)


def test_a_float_network_is_not_deployable():
    g = Graph("f")
    g.add("in", O.Input(shape=(3,)))
    g.add("fc", O.Linear(weight=np.ones((2, 3))))
    g.add("l", O.LIF(shape=(2,), beta=0.9))
    g.add("out", O.Output(shape=(2,)))
    g.chain("in", "fc", "l", "out")
    with pytest.raises(UnsupportedError, match="layer 'l' \\(LIF\\) is not quantized"):
        check_target(lower_network(g), TARGETS["fpga"])
