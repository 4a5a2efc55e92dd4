"""A py-spinnaker2 script for a compiled network: a convenience export for users of the official SpiNNaker 2 stack
(py-spinnaker2, TU Dresden / SpiNNcloud). It is NOT nmcompile's verified path (that is the PE program and images of
`--target spinnaker2`, checked bit for bit with `nmcompile verify ART --board qemu://`).

    text = script(view)      # the text of spinnaker2/py_spinnaker2_network.py (docs/formats/spinnaker2.md)

The script builds the network with py-spinnaker2's own neuron models: one `snn.Population` per neuron layer, one
`spike_list` population per network input (spike times read from `spikes.npz` next to the script at run time), one
`snn.Projection` per projection with a connection list `[pre, post, weight, delay]`; biases become `i_offset`. Its
`main()` runs the network on a chip (`hardware.SpiNNaker2Chip(eth_ip=...)`) and saves the output spikes. Its header
states every way it differs from nmcompile's integer model (docs/semantics.md §3), in general and per layer and
projection. Every mapping rule is in `RULES` below, with the source it rests on. The script does not import nmcompile
and its text depends on the view only (same view, byte-identical script).

py-spinnaker2 is not on PyPI and its source (GitLab) could not be read here; what the rules rely on was read from
scripts that use it and from code derived from it (the research notes spinnaker2.md §2 list them). Tags: [P] read in
a primary source named in the rule, [U] an assumption the sources do not settle (the script's header says so too).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import fixed
from nmcompile.lowered import LoweredNetwork, Projection

# -- sources --------------------------------------------------------------------------------------------------------
SRC_EXAMPLE = ("py-spinnaker2's lif example as copied in github.com/ngr-francesco/dynamic-neural-field-spinnaker2 "
               "dynamic_neural_field.py ('Leaky Integrate&Fire neuron where synaptic events directly increase the "
               "membrane voltage'; 'weight: integer in range [-15, 15]', 'delay: integer in range [0, 7]. Actual "
               "delay on the hardware is: delay+1'; lif params threshold, alpha_decay, i_offset, v_init, v_reset, "
               "reset; lif_curr_exp adds exc_decay, inh_decay, t_refrac; get_spikes()/get_voltages() return "
               "{neuron: values per timestep}) [P]")
SRC_S2NIR = ("a copy of py-spinnaker2's s2_nir.py (spinnaker2.md §2.7): reset strings, lif_curr_exp parameters, "
             "per-neuron parameter arrays, a CubaLIF bias folded into i_offset at the current's steady state [P]")
SRC_NIR = ("github.com/neuromorphs/NIR paper/03_rnn/s2_apply.py: spike_list params {neuron: [timesteps]}, "
           "hw.run(net, timesteps, sys_tick_in_s=1.0e-3), get_spikes() {neuron: [timesteps]} [P]")
SRC_NESTML = ("NESTML's SpiNNaker2 templates derived from py-spinnaker2 (spinnaker2.md §2.3, §2.5): "
              "SynapseWordSpec(weight=4, delay=3, synapse_type=1, target=8); max_atoms_per_core = 250 for the LIF "
              "family (2025-03) [P]")
SRC_NOTES = "research notes spinnaker2.md §2.2: lif update order and '>' vs '>=' not read in C [U]"
SRC_SAME_WORD = ("lif_curr_exp is taken to use lif's synapse word (weights in [-15, 15], delay field 0..7): user "
                 "scripts send it weight 15 with delay 7, but no source states its word [U]")


@dataclass(frozen=True)
class Rule:
    value: object          # what script() uses (None: a formula, applied in the code below)
    rule: str
    source: str


# Every mapping rule from nmcompile's integer model (QNeuron, QLinear/QConv, sources) to py-spinnaker2.
RULES: dict[str, Rule] = {
    "model.delta": Rule("lif", "a spiking layer whose current does not persist (du = 4095: u = a << 6 every step) and "
                        "without refractory period: synaptic input goes straight into v, as in lif", SRC_EXAMPLE),
    "model.current": Rule("lif_curr_exp", "a layer whose current persists (some du < 4095), or with a refractory "
                          "period (only lif_curr_exp has t_refrac)", f"{SRC_EXAMPLE}; {SRC_S2NIR}"),
    "model.input": Rule("spike_list", "one population per network input; params {neuron: [timesteps]}",
                        f"{SRC_EXAMPLE}; {SRC_NIR}"),
    "model.readout": Rule(3.0e38, "a non-spiking readout (no such model): the layer's model with this threshold (never "
                          "fires, fits float32), its voltage recorded with record=['v'] and get_voltages()",
                          f"{SRC_EXAMPLE}; {SRC_NOTES}"),
    "scale": Rule(15, "per population one float scale s: the largest |weight * 2^(weight_exp + 6)| of its projections "
                  "(bias sources excluded) maps to this; threshold, i_offset, v_init are nmcompile's values times s",
                  SRC_EXAMPLE),
    "threshold": Rule(None, "threshold = (vth << 6) * s", SRC_EXAMPLE),
    "per_neuron": Rule(None, "a parameter that differs between a layer's neurons is a list, one value per neuron "
                       "(s2_nir passes arrays to lif_no_delay and lif_curr_exp_no_delay; for lif and lif_curr_exp "
                       "[U])", SRC_S2NIR),
    "alpha_decay": Rule(None, "alpha_decay = (4096 - dv) / 4096", f"{SRC_EXAMPLE}; {SRC_S2NIR}"),
    "exc_decay": Rule(None, "exc_decay = inh_decay = (4096 - (du + 1)) / 4096 (nmcompile's current decay)", SRC_S2NIR),
    "t_refrac": Rule(None, "t_refrac = refractory (taken to count timesteps [U]); 0 without refractory period",
                     f"{SRC_S2NIR}; {SRC_EXAMPLE}"),
    "reset.zero": Rule("reset_to_v_reset", "reset_mode 'zero': v_reset = 0.0", f"{SRC_EXAMPLE}; {SRC_S2NIR}"),
    "reset.subtract": Rule("reset_by_subtraction", "reset_mode 'subtract'", f"{SRC_EXAMPLE}; {SRC_S2NIR}"),
    "reset.none": Rule("reset_by_subtraction", "reset_mode 'none' on a spiking layer (no such reset): the reset that "
                       "keeps most of the membrane; readouts never fire, their reset does not matter", SRC_EXAMPLE),
    "i_offset": Rule(None, "i_offset = ((bias_mant << bias_exp) + per-step input of the bias sources) * s; into a "
                     "persisting current a bias source enters at the current's steady state c / (1 - decay), as "
                     "s2_nir folds a CubaLIF bias", SRC_S2NIR),
    "weight": Rule(15, "conn weight = round(w * 2^(weight_exp + 6) * s), an integer in [-15, 15] (the sign selects "
                   "the synapse type); weights that round to 0 are left out",
                   f"{SRC_EXAMPLE}; {SRC_NESTML}; {SRC_SAME_WORD}"),
    "delay": Rule(7, "conn delay = clip(nmcompile delay - 1, 0, 7): the field counts hardware delay - 1",
                  f"{SRC_EXAMPLE}; {SRC_NESTML}; {SRC_SAME_WORD}"),
    "max_atoms_per_core": Rule(250, "set_max_atoms_per_core(n): the most neurons of the layer nmcompile placed on one "
                               "PE (its whole size when not partitioned), at most this", SRC_NESTML),
    "run": Rule(1.0e-3, "hardware.SpiNNaker2Chip(eth_ip=...).run(net, T + latency, sys_tick_in_s=...), this default "
                "tick; a fresh network per sample", f"{SRC_EXAMPLE}; {SRC_NIR}"),
}

SCRIPT_NAME = "py_spinnaker2_network.py"
WIDTH = 116                              # the script's line width
_NO_DECAY = fixed.DECAY_UNITY - 1        # du = 4095: u keeps nothing of the previous step


@dataclass
class _Population:
    name: str
    size: int
    model: str
    params: dict[str, object]
    record: list[str]
    atoms: int
    scale: float
    comment: list[str] = field(default_factory=list)


@dataclass
class _Connections:
    projection: Projection
    entries: np.ndarray                  # [n, 4] int64: pre, post, weight, delay field
    comment: list[str]


# -- the plan ---------------------------------------------------------------------------------------------------------
def script(view: LoweredNetwork) -> str:
    """The py-spinnaker2 script (a Python file's text) that builds `view`'s network; deterministic."""
    if not view.integer:
        raise UnsupportedError("the py-spinnaker2 script needs a quantized (integer) network; compile without "
                               "--stop-after before quantize")
    notes: list[str] = []
    scales = {name: _scale(view, name) for name in view.layers}
    populations = [_population(view, name, scales[name], notes) for name in view.layers]
    connections = []
    for p in view.projections:
        if p.source in view.constants:
            continue
        connections.append(_connections(view, p, scales[p.dest], notes))
        if p.plastic is not None:
            notes.append(f"projection '{p.name}': learns (STDP) in nmcompile; here its initial weights, fixed")
        if p.source in view.layers and not view.layers[p.source].op.spiking:
            notes.append(f"projection '{p.name}': reads the readout '{p.source}', which never fires here, so it "
                         "carries nothing")
    outputs = {}
    for name, tap in view.outputs.items():
        if tap.layer is None:
            notes.append(f"output '{name}': reads no single neuron layer directly; not recorded")
            continue
        readout = not view.layers[tap.layer].op.spiking
        outputs[name] = (tap.layer, tuple(tap.shape), "v" if readout else "spikes", 1.0 / scales[tap.layer])
    return _render(view, populations, connections, outputs, notes)


def _effective(p: Projection, values: np.ndarray) -> np.ndarray:
    """Float: what one spike of a synapse of `p` with these effective values adds to nmcompile's v (in its units),
    before any floor."""
    return values.astype(np.float64) * 2.0 ** (p.weight_exp + fixed.ACT_SHIFT)


def _scale(view: LoweredNetwork, layer: str) -> float:
    largest = max((float(np.abs(_effective(p, p.effective_synapses()[2])).max(initial=0.0)) for p in view.into(layer)
                   if p.source not in view.constants), default=0.0)
    if largest == 0.0:
        return 2.0 ** -fixed.VTH_SHIFT          # no weights: threshold = vth
    return float(RULES["scale"].value) / largest


def _flat(values, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(values), shape).reshape(-1)


def _compact(values: np.ndarray) -> object:
    """A scalar when every neuron has the same value, else the per-neuron list."""
    values = np.asarray(values, dtype=np.float64)
    if values.size and np.all(values == values[0]):
        return float(values[0])
    return [float(v) for v in values]


def _bias_sources(view: LoweredNetwork, layer: str) -> tuple[np.ndarray, list[str]]:
    """Per neuron: what the bias sources add to nmcompile's input a << 6 every step (after their delay), and their
    projection names."""
    shape = view.layers[layer].shape
    total = np.zeros(int(np.prod(shape)), dtype=np.float64)
    names = []
    for p in view.into(layer):
        if p.source not in view.constants:
            continue
        names.append(p.name)
        value = view.constants[p.source].value
        m = p.effective_matrix()
        delays = np.broadcast_to(p.delay, m.shape)
        for d in np.unique(delays).tolist():
            part = np.where(delays == d, m, 0)
            if float(value).is_integer():
                s = part.astype(np.int64) @ np.full(m.shape[1], int(value), dtype=np.int64)
                total += fixed.floor_shift(s, p.weight_exp).astype(np.float64) * 2.0 ** fixed.ACT_SHIFT
            else:
                total += part.astype(np.float64) @ np.full(m.shape[1], value) * 2.0 ** (p.weight_exp + fixed.ACT_SHIFT)
    return total, names


def _population(view: LoweredNetwork, name: str, scale: float, notes: list[str]) -> _Population:
    layer = view.layers[name]
    op, shape = layer.op, layer.shape
    du, dv = _flat(op.du, shape).astype(np.int64), _flat(op.dv, shape).astype(np.int64)
    persists = bool(np.any(du != _NO_DECAY))
    current = persists or op.refractory > 0
    model = RULES["model.current" if current else "model.delta"].value
    if not op.spiking:
        threshold: object = float(RULES["model.readout"].value)
        notes.append(f"layer '{name}': a non-spiking readout; built as a {model} population that never fires "
                     f"(threshold {threshold:g}), its voltage recorded and divided by s")
    else:
        threshold = _compact(_flat(op.vth, shape).astype(np.float64) * 2.0 ** fixed.VTH_SHIFT * scale)
    if op.spiking and op.reset_mode == "none":
        notes.append(f"layer '{name}': reset_mode 'none' (a spiking layer that keeps its membrane) has no "
                     "py-spinnaker2 equivalent; built with reset_by_subtraction")
    if op.spiking and op.reset_timing == "delayed":
        notes.append(f"layer '{name}': reset_timing 'delayed' (nmcompile applies a spike's reset in the next step); "
                     "py-spinnaker2 resets in the step of the spike")
    if op.spiking and op.compare == ">=":
        notes.append(f"layer '{name}': compare '>=' (fires on v >= threshold); py-spinnaker2's comparison cannot be "
                     "chosen")
    bias = _flat(fixed.effective_bias(op.bias_mant, op.bias_exp), shape).astype(np.float64)
    constant, constant_names = _bias_sources(view, name)
    if persists and constant_names:
        gain = (du + 1).astype(np.float64) / fixed.DECAY_UNITY        # 1 - current decay
        if np.any(gain == 0):
            notes.append(f"layer '{name}': bias sources ({', '.join(constant_names)}) feed a current that never "
                         "decays (du = -1), so nmcompile's current ramps up every step; here a constant i_offset "
                         "of one step's input")
        constant = np.where(gain > 0, constant / np.where(gain > 0, gain, 1.0), constant)
    u_init = _flat(op.u_init, shape)
    if persists and np.any(u_init != 0):
        notes.append(f"layer '{name}': initial current u_init has no py-spinnaker2 parameter; left out")
    if op.spiking and np.any(np.asarray(op.vth) < 0):
        notes.append(f"layer '{name}': thresholds below 0 (neurons that fire at rest); whether py-spinnaker2's "
                     "models take a negative threshold is not known")
    if op.start_step:
        notes.append(f"layer '{name}': start step {op.start_step} (nmcompile holds it at its initial state until its "
                     "first input arrives); py-spinnaker2 has no such parameter, so it runs from the first step")
    params: dict[str, object] = {
        "threshold": threshold,
        "alpha_decay": _compact((fixed.DECAY_UNITY - dv) / fixed.DECAY_UNITY),
        "i_offset": _compact((bias + constant) * scale),
        "v_init": _compact(_flat(op.v_init, shape).astype(np.float64) * scale),
        "v_reset": 0.0,
        "reset": RULES[f"reset.{op.reset_mode}"].value,
    }
    if current:
        decay = _compact((fixed.DECAY_UNITY - (du + 1)) / fixed.DECAY_UNITY)
        params |= {"exc_decay": decay, "inh_decay": decay, "t_refrac": int(op.refractory)}
        if op.refractory > 0:
            how = ("exc_decay = inh_decay = 0 stand in for nmcompile's current that does not persist; whether that "
                   "current reaches v in the same step is not documented" if not persists else "")
            notes.append(f"layer '{name}': refractory {op.refractory} steps; built as lif_curr_exp with t_refrac = "
                         f"{op.refractory}" + (f" ({how})" if how else ""))
    record = []
    for tap in view.outputs.values():
        if tap.layer == name:
            record = ["spikes"] if op.spiking else ["v"]
    atoms = _atoms(view, name)
    comment = [f"layer '{name}' {shape}: du {_summary(du)}, dv {_summary(dv)}, vth {_summary(_flat(op.vth, shape))}, "
               f"bias {_summary(bias)}, reset {op.reset_mode} ({op.reset_timing}), compare '{op.compare}', refractory "
               f"{op.refractory}{'' if op.spiking else ', readout'} -> {model}, s = {scale:.6g}"]
    if constant_names:
        comment.append(f"  bias sources folded into i_offset: {', '.join(constant_names)}")
    return _Population(name, layer.size, str(model), params, record, atoms, scale, comment)


def _summary(values: np.ndarray) -> str:
    values = np.asarray(values)
    lo, hi = values.min(), values.max()
    fmt = (lambda v: str(int(v))) if values.dtype.kind in "iu" else (lambda v: f"{float(v):.6g}")
    return fmt(lo) if lo == hi else f"{fmt(lo)}..{fmt(hi)}"


def _atoms(view: LoweredNetwork, name: str) -> int:
    limit = int(RULES["max_atoms_per_core"].value)
    size = view.layers[name].size
    if view.mapping is not None and getattr(view.mapping, "tiles", None):
        cores = view.neuron_cores()[name]
        placed = cores[cores >= 0]
        if placed.size:
            size = int(np.unique(placed, return_counts=True)[1].max())
    return max(1, min(size, limit))


def _field(delay: int) -> int:
    return int(np.clip(delay - 1, 0, int(RULES["delay"].value)))


def _connections(view: LoweredNetwork, p: Projection, scale: float, notes: list[str]) -> _Connections:
    post, pre, values = p.effective_synapses()                 # cut from the kernel / CSR, never expanded
    exact = _effective(p, values) * scale
    weight_max = int(RULES["weight"].value)
    w = np.clip(np.rint(exact), -weight_max, weight_max).astype(np.int64)
    delays = (np.broadcast_to(p.delay, p.weights.shape)[post, pre].astype(np.int64) if p.delay.ndim
              else np.full(post.size, int(p.delay), dtype=np.int64))
    error = np.abs(exact - w)
    keep = w != 0
    field_max = int(RULES["delay"].value)
    fields = np.clip(delays - 1, 0, field_max)
    entries = np.stack([pre[keep], post[keep], w[keep], fields[keep]], axis=1)
    lo, hi = p.delay_range()
    comment = [f"projection '{p.name}': {p.source} -> {p.dest}, {p.form}, {post.size} synapses in nmcompile, "
               f"{int(keep.sum())} here",
               f"  weight = round(w * 2^({p.weight_exp} + 6) * s) = round(w * {2.0 ** (p.weight_exp + 6) * scale:.6g}) "
               f"in [-15, 15] (s of '{p.dest}' = {scale:.6g}); {int((~keep).sum())} round to 0 and are left out; mean "
               f"|rounding error| {float(error.mean()) if error.size else 0.0:.3f} of a weight step",
               "  delay field = nmcompile delay - 1: " + (
                   f"delay {lo} -> {_field(lo)}" if lo == hi else f"delays {lo}..{hi} -> {_field(lo)}..{_field(hi)}")]
    too_long = int((delays[keep] > field_max + 1).sum())
    too_short = int((delays[keep] < 1).sum())
    if too_long:
        notes.append(f"projection '{p.name}': {too_long} synapses have delays above {field_max + 1} steps "
                     f"(up to {hi}); clipped to {field_max + 1}")
    if too_short:
        notes.append(f"projection '{p.name}': {too_short} synapses have delay 0; they arrive 1 step later here")
    return _Connections(p, entries, comment)


# -- rendering ------------------------------------------------------------------------------------------------------
GENERAL = """\
How this script differs from nmcompile's verified integer model (docs/semantics.md section 3):

1. Neuron models and arithmetic. py-spinnaker2 runs its own neuron models (lif, lif_curr_exp) with float32
   state. nmcompile's model is integer: its decays multiply by (4096 - d) / 4096 and truncate toward zero, v is
   clipped to 24 bits and the current wraps. Here alpha_decay = (4096 - dv) / 4096 (and exc_decay = inh_decay =
   (4096 - (du + 1)) / 4096) in float, without truncation, clipping or wrapping, so membranes drift apart from
   nmcompile's over time. The order of operations inside py-spinnaker2's update, and whether it fires on
   v > threshold or v >= threshold, are not documented in the sources this script was written from.
2. Float parameters. Each population has its own scale s (listed below): its threshold, i_offset and v_init are
   nmcompile's vth << 6, bias and v_init times s, and s maps the largest |w * 2^(weight_exp + 6)| of the
   projections into it to 15.
3. 4-bit weights. A py-spinnaker2 lif synapse holds a 4-bit magnitude and its sign as the synapse type: weights
   are integers in [-15, 15] (lif_curr_exp is taken to use the same synapse word). nmcompile's weights (up to 9
   bits, times 2^weight_exp) are rounded to the nearest integer on the population's scale; synapses that round to
   0 are left out (counted in each projection's comment).
4. No weight exponent. py-spinnaker2 has no per-projection exponent: it is folded into the scale, and nmcompile's
   floor of each shifted per-delay sum is not reproduced.
5. Delay range. py-spinnaker2's delay field is 0..7 for 1..8 steps (field = delay - 1); nmcompile delays above 8
   steps are clipped to 8 (listed below when it happens).
6. Reset. reset_mode 'zero' is reset_to_v_reset with v_reset = 0, 'subtract' is reset_by_subtraction, both in the
   step of the spike: nmcompile's delayed reset (applied in the next step) and a spiking layer without reset have
   no equivalent (listed below when used).
7. Refractory periods. Only lif_curr_exp has one (t_refrac, taken to count timesteps); a layer with a refractory
   period is built as lif_curr_exp. nmcompile holds v at 0 during the period while its current keeps
   integrating; py-spinnaker2's behaviour during t_refrac is not documented in the sources used.
8. Biases. nmcompile's neuron bias (bias_mant << bias_exp) and its bias sources (constant sources that send a
   spike every step through a projection) become the float i_offset, acting from step 0; in nmcompile a bias
   source arrives after its projection's delay. Into a population whose current persists, a bias source enters at
   the current's steady state c / (1 - decay), not through the current's build-up.
9. Readouts. py-spinnaker2 has no non-spiking neuron: a readout layer is a population that never fires (threshold
   {never}); its recorded voltage divided by s approximates nmcompile's integer v.
10. Real time. The chip steps in wall-clock ticks (sys_tick_in_s); a PE that overruns a tick falls behind
   (py-spinnaker2 logs "Deadline missed"), which nmcompile's model has no notion of.

Time: a spike_list spike at timestep t is taken as nmcompile's input x[t]; a run lasts T + {latency} steps
(nmcompile's latency), like nmcompile's reference/outputs.npz. Parameters that differ between the neurons of a
layer are passed as lists, one value per neuron (as py-spinnaker2's s2_nir passes arrays).
"""


def _render(view: LoweredNetwork, populations: list[_Population], connections: list[_Connections],
            outputs: dict[str, tuple], notes: list[str]) -> str:
    lines = ["py-spinnaker2 script for the network " + repr(view.name) + ", written by nmcompile: a convenience "
             "export for",
             "the SpiNNaker 2 software stack of TU Dresden / SpiNNcloud. NOT verified: the bit-exact path is",
             "nmcompile's own PE program in this artifact, checked with",
             "",
             "    nmcompile verify ART --board qemu://",
             "",
             "Run (needs numpy and py-spinnaker2; does not need nmcompile):",
             "",
             f"    python {SCRIPT_NAME} ETH_IP [--spikes spikes.npz] [--out py_spinnaker2_outputs.npz]",
             "",
             "Input spikes come from spikes.npz next to this file: `spikes` [T, B, *input_shape] of 0/1, the layout of",
             "nmcompile's reference/inputs.npz (with several inputs, one array per input name). Every sample runs on a",
             "fresh network; the output spikes (readouts: voltages) are saved as [T + latency, B, *output_shape] under",
             "the output's name, the layout of nmcompile's reference/outputs.npz.",
             ""]
    general = GENERAL.replace("{latency}", str(view.latency)).replace("{never}", f"{RULES['model.readout'].value:g}")
    lines += general.splitlines()
    lines += ["", "This network: layers and projections with options py-spinnaker2 cannot express exactly:", ""]
    for note in notes or ["none beyond the above"]:
        lines += textwrap.wrap(note, WIDTH, initial_indent="- ", subsequent_indent="  ")
    lines += ["", "Populations (s: the scale of point 2):", ""]
    lines += [f"- {pop.name}: {pop.model}, {pop.size} neurons, s = {pop.scale:.6g}" for pop in populations]
    lines = ['"""' + _docstring_safe(lines[0]), *(_docstring_safe(line) for line in lines[1:])]
    lines += ['"""', "", "import argparse", "from pathlib import Path", "", "import numpy as np",
              "from spinnaker2 import hardware, snn", "", "HERE = Path(__file__).resolve().parent",
              f"NETWORK = {view.name!r}",
              f"LATENCY = {view.latency}  # silent steps after the input, so its last spikes reach the outputs",
              f"SYS_TICK_IN_S = {float(RULES['run'].value)!r}", ""]
    lines.append("# network inputs: name -> shape")
    lines.append("INPUTS = {" + ", ".join(f"{name!r}: {tuple(src.shape)!r}" for name, src in view.inputs.items())
                 + "}")
    lines.append("# outputs: name -> (layer, shape, recorded variable, factor back to nmcompile's units)")
    lines.append("OUTPUTS = {")
    for name, (layer, shape, kind, back) in outputs.items():
        lines.append(f"    {name!r}: ({layer!r}, {shape!r}, {kind!r}, {back!r}),")
    lines.append("}")
    lines += ["", "# -- populations: neuron model, parameters (per neuron where they differ), max atoms per core",
              "POPULATIONS = {"]
    for pop in populations:
        lines += _comment_lines(pop.comment)
        lines.append(f"    {pop.name!r}: ({pop.size}, {pop.model!r}, {{")
        for key, value in pop.params.items():
            lines += _literal_lines(f"        {key!r}: ", value, ",")
        lines.append(f"    }}, {pop.record!r}, {pop.atoms}),")
    lines.append("}")
    lines += ["", "# -- projections: (pre, post, [[pre, post, weight, delay], ...])", "PROJECTIONS = {"]
    for conn in connections:
        p = conn.projection
        lines += _comment_lines(conn.comment)
        lines.append(f"    {p.name!r}: ({p.source!r}, {p.dest!r}, [")
        lines += _entry_lines(conn.entries, "        ")
        lines.append("    ]),")
    lines.append("}")
    lines += _FUNCTIONS.splitlines()
    return "\n".join(lines) + "\n"


def _docstring_safe(line: str) -> str:
    return line.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _comment_lines(comment: list[str]) -> list[str]:
    """Comment lines at indent 4, wrapped; a line starting with spaces continues the one before."""
    out = []
    for text in comment:
        indent = "    #   " if text.startswith("  ") else "    # "
        out += textwrap.wrap(text.strip(), WIDTH, initial_indent=indent, subsequent_indent="    #   ")
    return out


def _number(value: object) -> str:
    return repr(float(value)) if isinstance(value, float) else repr(value)


def _literal_lines(prefix: str, value: object, suffix: str, width: int = WIDTH) -> list[str]:
    if not isinstance(value, list):
        return [f"{prefix}{_number(value)}{suffix}"]
    out, line = [], prefix + "["
    indent = " " * (len(prefix) - len(prefix.lstrip()) + 4)
    for k, v in enumerate(value):
        item = _number(v) + ("," if k < len(value) - 1 else "")
        if len(line) + len(item) + 1 > width and line.strip() not in ("", prefix.strip() + "["):
            out.append(line.rstrip())
            line = indent
        line += item + " "
    out.append(line.rstrip() + "]" + suffix)
    return out


def _entry_lines(entries: np.ndarray, indent: str, width: int = WIDTH, chunk: int = 1 << 16) -> list[str]:
    """The entries as lines of `[pre, post, weight, delay],` items (converted to Python a chunk at a time: a conv's
    millions of synapses never exist as Python lists all at once)."""
    out, line = [], indent
    for start in range(0, len(entries), chunk):
        for row in entries[start:start + chunk].tolist():
            item = f"[{row[0]}, {row[1]}, {row[2]}, {row[3]}],"
            if len(line) + len(item) + 1 > width and line != indent:
                out.append(line.rstrip())
                line = indent
            line += item + " "
    if line != indent:
        out.append(line.rstrip())
    return out


_FUNCTIONS = '''

def build(spike_times):
    """spike_times: {input: {neuron: [timesteps]}} -> (snn.Network, {name: snn.Population})."""
    pops = {}
    for name, shape in INPUTS.items():
        pops[name] = snn.Population(size=int(np.prod(shape)), neuron_model="spike_list", params=spike_times[name],
                                    name=name)
    for name, (size, model, params, record, atoms) in POPULATIONS.items():
        pops[name] = snn.Population(size=size, neuron_model=model, params=dict(params), name=name, record=record)
        pops[name].set_max_atoms_per_core(atoms)
    projections = [snn.Projection(pre=pops[pre], post=pops[post], connections=connections)
                   for pre, post, connections in PROJECTIONS.values()]
    net = snn.Network(NETWORK)
    net.add(*pops.values(), *projections)
    return net, pops


def load_inputs(path):
    """{input: [T, B, N]} from an .npz: `spikes` for a network with one input, else one array per input name."""
    arrays = {}
    with np.load(path, allow_pickle=False) as archive:
        for name, shape in INPUTS.items():
            key = "spikes" if len(INPUTS) == 1 and "spikes" in archive.files else name
            if key not in archive.files:
                raise SystemExit(f"{path}: no array '{key}' (found: {', '.join(archive.files)})")
            x = np.asarray(archive[key])
            size = int(np.prod(shape))
            if x.ndim < 3 or int(np.prod(x.shape[2:])) != size:
                raise SystemExit(f"{path}: '{key}' has shape {x.shape}; expected [T, B, *{shape}]")
            arrays[name] = x.reshape(x.shape[0], x.shape[1], size)
    if len({x.shape[:2] for x in arrays.values()}) != 1:
        raise SystemExit(f"{path}: the inputs differ in T or B")
    return arrays


def spike_times(x):
    """[T, N] of 0/1 -> {neuron: [timesteps]} (every neuron listed)."""
    return {n: np.flatnonzero(x[:, n]).tolist() for n in range(x.shape[1])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=f"Run the network {NETWORK!r} on a SpiNNaker 2 chip with "
                                     "py-spinnaker2 (a convenience export of nmcompile, not its verified path).")
    parser.add_argument("eth_ip", help="IP address of the chip (hardware.SpiNNaker2Chip(eth_ip=...))")
    parser.add_argument("--spikes", type=Path, default=HERE / "spikes.npz",
                        help="input spikes, [T, B, *input_shape] (default: spikes.npz next to this file)")
    parser.add_argument("--out", type=Path, default=Path("py_spinnaker2_outputs.npz"),
                        help="where to save the outputs (default: %(default)s)")
    parser.add_argument("--sys-tick", type=float, default=SYS_TICK_IN_S, help="seconds per timestep (sys_tick_in_s)")
    args = parser.parse_args(argv)
    inputs = load_inputs(args.spikes)
    t_in, batch = next(iter(inputs.values())).shape[:2]
    steps = t_in + LATENCY
    results = {name: np.zeros((steps, batch, *shape), dtype=np.int8 if kind == "spikes" else np.float64)
               for name, (_layer, shape, kind, _back) in OUTPUTS.items()}
    hw = hardware.SpiNNaker2Chip(eth_ip=args.eth_ip)
    for b in range(batch):
        net, pops = build({name: spike_times(x[:, b]) for name, x in inputs.items()})
        hw.run(net, steps, sys_tick_in_s=args.sys_tick)
        for name, (layer, shape, kind, back) in OUTPUTS.items():
            flat = np.zeros((steps, int(np.prod(shape))), dtype=results[name].dtype)
            if kind == "spikes":
                for neuron, times in pops[layer].get_spikes().items():
                    times = [t for t in times if 0 <= t < steps]
                    flat[times, int(neuron)] = 1
            else:
                for neuron, v in pops[layer].get_voltages().items():
                    v = np.asarray(v, dtype=np.float64)[:steps]
                    flat[: v.size, int(neuron)] = v * back
            results[name][:, b] = flat.reshape(steps, *shape)
    np.savez(args.out, **results)
    print(f"{NETWORK}: {batch} sample(s) of {steps} steps; outputs saved to {args.out}")


if __name__ == "__main__":
    main()'''
