"""The one place a compiled network is checked against a target's limits (the fields of `nmcompile.targets.Target`).

Every backend's emitter calls `check_target(view, target)` before lowering; backends re-state no limit. A refusal
is one line naming the layer or projection, what it needs, the targets that support it (computed from
`TARGETS` with the same rule) and the target's own field and limit:

    layer 'l1': reset by subtraction is not supported by loihi2 (supported by: spinnaker2, fpga; loihi2
    reset_modes: zero)

`check_structure` refuses what no target deploys: an output that does not read one neuron layer directly, a
constant source that does not emit spikes, an op that is not part of the integer model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nmcompile.errors import ResourceError, UnsupportedError
from nmcompile.ir import fixed
from nmcompile.ir.rest import restless_neurons
from nmcompile.lowered.network import Layer, LoweredNetwork, Projection
from nmcompile.targets import TARGETS, Target


def refuse(where: str, what: str, field: str, limit: object, ok: Callable[[Target], bool], target: Target) -> None:
    """Raise the one-line refusal; `ok(t)` says whether target t supports the feature."""
    able = [t.name for t in TARGETS.values() if ok(t)]
    supported = f"supported by: {', '.join(able)}" if able else "no target supports it"
    raise UnsupportedError(f"{where}: {what} is not supported by {target.name} ({supported}; {target.name} {field}: "
                           f"{limit})")


def more_chips_advice(target: Target, cores: int) -> str:
    """What to change when a network needs `cores` cores: more chips where the target can span them, else a smaller
    network (the per-core limits are those of `nmcompile targets`)."""
    chips = -(-cores // target.cores_per_chip)
    if target.max_chips is None or chips <= target.max_chips:
        return f"it needs {chips} chips: pass --chips {chips}"
    return (f"{target.name} spans at most {target.max_chips} chip(s) ({target.max_chips * target.cores_per_chip} "
            "core(s)), so make the network smaller: fewer neurons, or fewer synapses per layer")


def check_network_size(neurons: int, target: Target) -> None:
    """Before the passes run: a network of `neurons` neurons (a lower bound of what partition places) that no
    number of chips the target can span holds is refused, naming the limit; the exact fit is partition's."""
    if target.max_chips is None:
        return
    capacity = target.max_chips * target.cores_per_chip * target.neurons_per_core
    if neurons > capacity:
        raise ResourceError(f"the network has {neurons:,} neurons; {target.name} holds at most {capacity:,} "
                            f"({target.max_chips} chip(s) x {target.cores_per_chip} core(s) x "
                            f"{target.neurons_per_core:,} neurons): make the network smaller")


def _options(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else "none"


def check_structure(view: LoweredNetwork) -> None:
    """What every deployment needs, whatever the target."""
    for tap in view.outputs.values():
        if tap.layer is None:
            raise UnsupportedError(f"output '{tap.name}' must be fed by exactly one neuron layer directly (through "
                                   "Flatten at most) to be deployed")
    for source in view.constants.values():
        if source.value != 1.0:
            raise UnsupportedError(f"constant source '{source.name}' has value {source.value}; deployed constant "
                                   "sources emit spikes (value 1)")
    for layer in view.layers.values():
        if layer.op.numeric != "integer":
            raise UnsupportedError(f"layer '{layer.name}' ({layer.op.kind}) is not quantized; compile it through a "
                                   "target's pipeline (quantize)")
    for p in view.projections:
        if not p.integer:
            raise UnsupportedError(f"projection '{p.name}' ({p.op.kind}) is not quantized; compile it through a "
                                   "target's pipeline (quantize)")


def check_target(view: LoweredNetwork, target: Target) -> None:
    """Refuse the first layer option, number or projection feature `target` cannot run exactly."""
    check_structure(view)
    for layer in view.layers.values():
        check_layer(layer, target)
    for projection in view.projections:
        check_projection(projection, target)


def _uniform(array: np.ndarray) -> bool:
    flat = np.asarray(array).reshape(-1)
    return flat.size == 0 or bool(np.all(flat == flat[0]))


def check_neuron_options(name: str, op, target: Target, compare: bool = True) -> None:
    """The neuron options a layer uses, float or integer (quantize checks them before it converts a layer, with
    `compare=False`: it rewrites '>=' as '>' exactly where a target has only '>')."""
    where = f"layer '{name}'"
    if not op.spiking:
        if not target.readout_neurons:
            refuse(where, f"a non-spiking readout ({op.kind})", "readout_neurons", False,
                   lambda t: t.readout_neurons, target)
        return
    if op.reset_timing == "snntorch_immediate":
        raise UnsupportedError(f"{where}: snnTorch's immediate reset by subtraction (reset_delay=False) has no "
                               "integer form on any target; train with reset_delay=True or reset_mechanism='zero'")
    what = {"subtract": "reset by subtraction", "zero": "reset to zero", "none": "no reset"}[op.reset_mode]
    if op.reset_mode not in target.reset_modes:
        refuse(where, what, "reset_modes", _options(target.reset_modes),
               lambda t: op.reset_mode in t.reset_modes, target)
    if op.reset_timing not in target.reset_timings:
        refuse(where, f"{op.reset_timing} reset", "reset_timings", _options(target.reset_timings),
               lambda t: op.reset_timing in t.reset_timings, target)
    if compare and op.compare not in target.comparisons:
        refuse(where, f"the comparison '{op.compare}'", "comparisons", _options(target.comparisons),
               lambda t: op.compare in t.comparisons, target)
    if op.refractory > target.max_refractory:
        refuse(where, f"a refractory period of {op.refractory} steps", "max_refractory", target.max_refractory,
               lambda t: op.refractory <= t.max_refractory, target)


def check_delays(name: str, delay: np.ndarray, target: Target) -> None:
    """A projection's delivery delays in steps (one value, or one per synapse)."""
    where, delay = f"projection '{name}'", np.asarray(delay)
    low, high = (int(delay.min()), int(delay.max())) if delay.size else (0, 0)
    if low != high and not target.per_synapse_delays:  # the targets named take these delays, the maximum included
        refuse(where, f"a delay per synapse ({low}..{high} steps)", "per_synapse_delays", False,
               lambda t: t.per_synapse_delays and t.delay_range[0] <= low and high <= t.delay_range[1], target)
    dmin, dmax = target.delay_range
    if low < dmin or high > dmax:
        refuse(where, f"a delay of {low}..{high} steps" if low != high else f"a delay of {low} steps", "delay_range",
               f"{dmin}..{dmax}", lambda t: t.delay_range[0] <= low and high <= t.delay_range[1], target)


def check_start_step(name: str, op, target: Target) -> None:
    """A layer with a start step s (docs/semantics.md) on `target`: s must fit the start-step register; a target
    without start steps takes the layer only if holding it changes nothing (every neuron at rest), and otherwise
    is refused naming the neurons that fire or leak before step s."""
    s = op.start_step
    if s == 0:
        return
    where = f"layer '{name}'"
    if target.start_step_bits:
        if s > target.max_start_step:
            refuse(where, f"a start step of {s}", "start_step_bits", target.start_step_bits,
                   lambda t: s <= t.max_start_step, target)
        return
    restless = restless_neurons(op, op.shape)
    if restless.size:
        shown = ", ".join(str(int(i)) for i in restless[:5]) + (", ..." if restless.size > 5 else "")
        refuse(where, f"holding {restless.size} of {op.size} neurons ({shown}) at their initial state until the "
               f"layer's first input arrives at step {s} (a start step: they fire or leak before it)",
               "start_step_bits", 0, lambda t: s <= t.max_start_step, target)


def check_negative_threshold(where: str, target: Target, reset_mode: str, vth: int | None = None) -> None:
    """A threshold below 0 (neurons that fire at rest): targets with signed thresholds, down to -(vth_max + 1). Not
    with reset by subtraction, whose reset would raise v past the threshold and out of its 24 bits."""
    if reset_mode == "subtract":
        raise UnsupportedError(f"{where}: a negative threshold with reset by subtraction has no integer form on any "
                               "target (subtracting it raises v, which then fires at every step and leaves 24 bits)")
    if not target.signed_threshold:
        refuse(where, "a negative threshold (neurons that fire at rest)", "signed_threshold", False,
               lambda t: t.signed_threshold, target)
    if vth is not None and vth < -(target.vth_max + 1):
        refuse(where, f"a threshold mantissa vth of {vth}", "vth_max", f"{target.vth_max} (signed)",
               lambda t: t.signed_threshold and vth >= -(t.vth_max + 1), target)


def check_layer(layer: Layer, target: Target) -> None:
    op, where = layer.op, f"layer '{layer.name}'"
    check_neuron_options(layer.name, op, target)
    check_start_step(layer.name, op, target)
    vth = int(np.max(op.vth)) if np.size(op.vth) else 0
    if vth > target.vth_max:
        refuse(where, f"a threshold mantissa vth of {vth}", "vth_max", target.vth_max, lambda t: vth <= t.vth_max,
               target)
    lowest = int(np.min(op.vth)) if np.size(op.vth) else 0
    if lowest < 0:
        check_negative_threshold(where, target, op.reset_mode, lowest)
    if not _uniform(op.vth) and not target.per_neuron_threshold:
        refuse(where, "a threshold per neuron", "per_neuron_threshold", False, lambda t: t.per_neuron_threshold,
               target)
    if not (_uniform(op.du) and _uniform(op.dv)) and not target.per_neuron_decay:
        refuse(where, "a decay (du/dv) per neuron", "per_neuron_decay", False,
               lambda t: t.per_neuron_decay, target)
    if not target.current_decay and np.any(np.asarray(op.du) != fixed.DECAY_UNITY - 1):
        refuse(where, "a decaying synaptic current (du < 4095)", "current_decay", False, lambda t: t.current_decay,
               target)
    _check_bias(layer, target)


def _check_bias(layer: Layer, target: Target) -> None:
    op, where = layer.op, f"layer '{layer.name}'"
    for field, values in (("bias_mant_range", op.bias_mant), ("bias_exp_range", op.bias_exp)):
        lo, hi = getattr(target, field)
        values = np.asarray(values)
        if values.size and (values.min() < lo or values.max() > hi):
            low, high = int(values.min()), int(values.max())
            what = f"bias {'mantissas' if field == 'bias_mant_range' else 'exponents'} {low}..{high}"
            refuse(where, what, field, f"{lo}..{hi}",
                   lambda t, f=field, a=low, b=high: getattr(t, f)[0] <= a and b <= getattr(t, f)[1], target)
    if target.bias_bits is not None:
        peak = int(np.abs(fixed.effective_bias(op.bias_mant, op.bias_exp)).max(initial=0))
        fits = lambda t: t.bias_bits is None or peak < 1 << (t.bias_bits - 1)  # noqa: E731
        if not fits(target):
            refuse(where, f"a bias of {peak:,} (mant << exp)", "bias_bits", f"{target.bias_bits} (signed)", fits,
                   target)


def check_projection(p: Projection, target: Target) -> None:
    where = f"projection '{p.name}'"
    if p.plastic is not None and not target.stdp:
        refuse(where, "STDP (--stdp)", "stdp", False, lambda t: t.stdp, target)
    check_delays(p.name, p.delay, target)
    elo, ehi = target.weight_exp_range
    if not elo <= p.weight_exp <= ehi:
        exp = p.weight_exp
        refuse(where, f"a weight exponent of {exp}", "weight_exp_range", f"{elo}..{ehi}",
               lambda t: t.weight_exp_range[0] <= exp <= t.weight_exp_range[1], target)
    if p.form == "conv":
        _check_conv(p, target)
    span = _weight_span(p)
    if span is not None:
        wmin, wmax = span
        mode = getattr(p.op, "sign_mode", "mixed")

        def fits(t: Target) -> bool:  # an all-positive (negative) projection has 8 magnitude bits with sign modes
            low, high = (fixed.weight_range(mode, 8)[:2] if t.sign_modes and mode != "mixed"
                         else (t.weight_min, t.weight_max))
            return low <= wmin and wmax <= high

        if not fits(target):
            refuse(where, f"weights {wmin}..{wmax}", "weight range", f"{target.weight_min}..{target.weight_max}",
                   fits, target)


def _weight_span(p: Projection) -> tuple[int, int] | None:
    """Lowest and highest effective weight (the dense expansion's, a 0 included where it holds one; a convolution's
    kernel), None without weights. A CSR projection is read from its entries, not expanded."""
    if p.form == "conv":
        weights = p.weights.kernel
    elif p.form == "csr":
        n_out, n_in = p.weights.shape
        weights = p.effective_synapses()[2]
        if weights.size < n_out * n_in:
            weights = np.append(weights, 0)
    else:
        weights = p.effective_matrix()
    return (int(weights.min()), int(weights.max())) if weights.size else None


def _check_conv(p: Projection, target: Target) -> None:
    where = f"convolution '{p.name}'"
    if p.weight_exp != 0 and not target.conv_weight_exp:
        refuse(where, f"a weight exponent of {p.weight_exp}", "conv_weight_exp", False, lambda t: t.conv_weight_exp,
               target)
    if p.wrap_bits == target.conv_wrap_bits:
        return
    worst = conv_peak(p)
    if p.wrap_bits == 0:
        wraps = lambda t: t.conv_wrap_bits == 0 or worst < 1 << (t.conv_wrap_bits - 1)  # noqa: E731
        what = "a convolution that does not wrap"
    else:
        wraps = lambda t: t.conv_wrap_bits == p.wrap_bits or (t.conv_wrap_bits == 0  # noqa: E731
                                                             and worst < 1 << (p.wrap_bits - 1))
        what = f"a convolution that can wrap at {p.wrap_bits} bits"
    if not wraps(target):
        limit = f"{target.conv_wrap_bits} bits" if target.conv_wrap_bits else "never wraps"
        refuse(where, what, "conv_wrap_bits", limit, wraps, target)


def conv_peak(p: Projection) -> int:
    """The largest |sum| one output of the convolution can reach in one step (every input active), shifted."""
    matrix = p.weights.to_dense()
    worst = max(int(np.clip(matrix, 0, None).sum(axis=1).max(initial=0)),
                int(-np.clip(matrix, None, 0).sum(axis=1).min(initial=0)))
    return int(fixed.shift_left(np.int64(worst), p.weight_exp))
