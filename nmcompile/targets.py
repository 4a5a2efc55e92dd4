"""Hardware targets: every resource limit and number format a pass or backend reads, with its source.

Generic passes read these fields and never branch on a target's name. `get_target("loihi2", chips=4)` returns a
copy with overrides. `nmcompile targets` prints them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from nmcompile.errors import UnsupportedError
from nmcompile.ir import fixed


@dataclass(frozen=True)
class KernelStorage:
    """A convolution stored as its kernel (one weight per kernel tap, shared by every output position) with the
    limits of the core's address generator; a convolution outside them is stored expanded (dense)."""

    weight_bits: int                  # per kernel weight
    max_kernel: int                   # taps per spatial axis
    strides: tuple[int, ...]          # strides per spatial axis the generator steps by
    max_padding: int
    max_channels: int                 # output channels
    max_plane: int                    # H * W of the input, H_out * W_out of the output, C_in * K_h * K_w
    groups: bool = False              # grouped convolutions (else groups = 1 only)
    dilation: bool = False            # dilated kernels (else dilation 1 only)

    def stores(self, kernel_shape: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
               dilation: tuple[int, ...], groups: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> str:
        """Why a convolution cannot be stored as its kernel ("" when it can)."""
        k = kernel_shape[2:]
        if len(k) not in (1, 2):
            return f"a {len(k)}-d convolution (1-d and 2-d only)"
        if groups != 1 and not self.groups:
            return f"groups = {groups}"
        if any(d != 1 for d in dilation) and not self.dilation:
            return f"dilation {tuple(dilation)}"
        if max(k) > self.max_kernel:
            return f"a {'x'.join(map(str, k))} kernel (at most {self.max_kernel} per axis)"
        if any(s not in self.strides for s in stride):
            return f"stride {tuple(stride)} (strides {', '.join(map(str, self.strides))})"
        if max(padding, default=0) > self.max_padding:
            return f"padding {tuple(padding)} (at most {self.max_padding})"
        if kernel_shape[0] > self.max_channels:
            return f"{kernel_shape[0]} output channels (at most {self.max_channels})"
        planes = (int(np.prod(in_shape[1:])), int(np.prod(out_shape[1:])), int(np.prod(kernel_shape[1:])))
        if max(planes) > self.max_plane:
            return f"planes of {max(planes)} (at most {self.max_plane})"
        return ""


@dataclass(frozen=True)
class SynapseFormat:
    """How synapse memory is counted on one core (all sizes in bits)."""

    description: str
    word_bits: int            # memory is allocated in words of this size
    per_synapse_bits: int     # weight + index (+ delay) bits of one synapse
    per_row_header_bits: int  # per (input axon, core) row: header before its synapses
    delay_bits: int = 0       # extra bits per synapse when the row carries per-synapse delays
    ring_bits: int = 0        # per neuron, per (projection, delay d) into it: d + 1 accumulator slots of this size
    # a row index that spans whole sources (0: rows are counted per source unit that has synapses): every source
    # feeding a core (a core's neurons, or the host's units in blocks of 2**index_unit_bits) takes a word per unit
    # it carries plus one per aligned power-of-two block, and key_bits of key table per block
    index_unit_bits: int = 0
    key_bits: int = 0
    core_header_bits: int = 0  # per core, before everything else
    group_bits: int = 0        # per (projection, delay) accumulator group of a core
    kernels: KernelStorage | None = None   # convolutions stored as kernels (None: expanded into synapses)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    # -- scale ---------------------------------------------------------------------------------------
    cores_per_chip: int
    chips: int
    neurons_per_core: int
    synapse_memory_bits: int          # synapse memory per core
    synapse_format: SynapseFormat
    fan_in_axons: int | None          # distinct presynaptic sources per core
    fan_out_axons: int | None         # distinct (source neuron, destination core) routes leaving a core
    router_entries: int | None        # routing table entries per chip
    events_per_tick: int | None       # synaptic events a core can process per time step (None: unknown)
    neuron_state_bits: int            # per-neuron state and parameter memory (counted against core memory)
    memory_shared: bool               # neuron state and synapses share the same per-core memory
    # -- number formats (integer model, docs/semantics.md §3) -------------------------------------
    weight_min: int
    weight_max: int
    weight_step: int                  # representable weights are multiples of this (Lava MIXED 8-bit: 2)
    num_weight_bits: int              # value written to QLinear.num_weight_bits (the golden model's truncation)
    sign_modes: bool                  # all-positive/all-negative projections may use the full range once more
    weight_exp_range: tuple[int, int]
    conv_weight_exp: bool             # a conv projection can carry a weight exponent
    conv_wrap_bits: int               # conv output wraps at this width (0: never)
    vth_max: int                      # largest vth mantissa (threshold = vth << 6)
    bias_mant_range: tuple[int, int]
    bias_exp_range: tuple[int, int]
    per_neuron_threshold: bool        # one vth per neuron (else one per layer)
    per_neuron_decay: bool            # du/dv may differ per neuron (else one pair per layer)
    delay_range: tuple[int, int]      # hardware delivery delay of a projection, in steps
    per_synapse_delays: bool          # each synapse its own delay (else one delay per projection)
    # -- neuron options the hardware implements (integer model extensions) -------------------------
    reset_modes: tuple[str, ...] = ("zero",)
    reset_timings: tuple[str, ...] = ("immediate",)
    comparisons: tuple[str, ...] = (">",)
    max_refractory: int = 0
    current_decay: bool = True        # u has its own decay (CUBA); False: u is cleared every step
    readout_neurons: bool = False     # non-spiking readout layers (output v)
    stdp: bool = False
    bias_bits: int | None = None      # width of the effective bias mant << exp, signed (None: as the model's 24 bits)
    signed_threshold: bool = False    # vth may be negative, down to -(vth_max + 1): a threshold below rest (a neuron
                                      # that fires without input, e.g. a folded MPBN threshold below 0)
    start_step_bits: int = 0          # width of a layer's start-step register (docs/semantics.md; 0: no start steps,
                                      # so a layer that changes on its own before its first input is refused)
    max_chips: int | None = None      # chips one compiled network can span (None: as many as --chips gives)
    # -- compute per time step (None: not modelled): instructions a core retires in one tick, and what one neuron
    #    update and one synaptic event cost (measured on the target's own program)
    instructions_per_tick: int | None = None
    instructions_per_neuron_update: float = 0.0
    instructions_per_synaptic_event: float = 0.0
    instructions_per_packet: float = 0.0     # finding an arriving spike's synapse row (key table search)
    # -- energy model (passes.md §5) -----------------------------------------------------------------
    energy_per_synop_j: float | None = None
    energy_per_neuron_update_j: float | None = None
    energy_source: str = ""
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def max_start_step(self) -> int:
        return (1 << self.start_step_bits) - 1

    @property
    def total_cores(self) -> int:
        return self.cores_per_chip * self.chips

    def describe(self) -> str:
        fmt = self.synapse_format
        lines = [
            f"{self.name}: {self.description}",
            f"  cores           {self.cores_per_chip} per chip x {self.chips} chip(s) = {self.total_cores}",
            f"  per core        {self.neurons_per_core} neurons, {self.synapse_memory_bits // 8192} KiB synapse memory "
            f"({fmt.description}), fan-in {self.fan_in_axons or 'unlimited'} axons, fan-out "
            f"{self.fan_out_axons or 'unlimited'} routes, "
            f"{self.events_per_tick or 'unknown'} synaptic events per step",
            f"  weights         [{self.weight_min}, {self.weight_max}] step {self.weight_step}, exponent "
            f"{self.weight_exp_range[0]}..{self.weight_exp_range[1]}"
            f"{', sign modes' if self.sign_modes else ''}"
            f"{'' if self.conv_weight_exp else ', conv weights without exponent'}",
            f"  neuron          24-bit u/v, 12-bit decays, vth <= {self.vth_max} (<<6), bias "
            f"{self.bias_mant_range} << {self.bias_exp_range}, "
            f"{'per-neuron' if self.per_neuron_threshold else 'per-layer'}"
            f"{' signed' if self.signed_threshold else ''} threshold, "
            f"{'per-neuron' if self.per_neuron_decay else 'per-layer'} decays"
            f"{f', {self.bias_bits}-bit bias' if self.bias_bits else ''}",
            f"  options         reset {'/'.join(self.reset_modes)}, timing {'/'.join(self.reset_timings)}, "
            f"compare {' '.join(self.comparisons)}, refractory <= {self.max_refractory}"
            f"{', STDP' if self.stdp else ''}{', readouts' if self.readout_neurons else ''}"
            f"{f', start steps <= {self.max_start_step}' if self.start_step_bits else ''}",
            f"  delays          {self.delay_range[0]}..{self.delay_range[1]} steps "
            f"{'per synapse' if self.per_synapse_delays else 'per projection'}",
        ]
        if self.router_entries:
            lines.append(f"  router          {self.router_entries} entries per chip")
        for key, source in self.sources.items():
            lines.append(f"  source: {key}: {source}")
        return "\n".join(lines)


LOIHI2 = Target(
    name="loihi2",
    description="Intel Loihi 2 through Lava 0.10 (verified here against Lava's bit-accurate CPU models)",
    cores_per_chip=128,
    chips=1,
    neurons_per_core=1024,
    synapse_memory_bits=16384 * 64,
    synapse_format=SynapseFormat(
        description="rows of 64-bit words: per axon a 10-bit header, per synapse 8 weight + 10 index bits",
        word_bits=64, per_synapse_bits=8 + 10, per_row_header_bits=10, delay_bits=6),
    fan_in_axons=4096,
    fan_out_axons=4096,
    router_entries=None,
    events_per_tick=None,
    neuron_state_bits=0,
    memory_shared=False,
    weight_min=-256,
    weight_max=254,
    weight_step=2,
    num_weight_bits=8,
    sign_modes=True,
    weight_exp_range=(-8, 7),
    conv_weight_exp=False,
    conv_wrap_bits=24,
    vth_max=(1 << fixed.VTH_BITS) - 1,
    bias_mant_range=(-(1 << (fixed.BIAS_MANT_BITS - 1)), (1 << (fixed.BIAS_MANT_BITS - 1)) - 1),
    bias_exp_range=(0, 7),
    per_neuron_threshold=False,
    per_neuron_decay=False,
    delay_range=(1, 64),
    per_synapse_delays=True,
    energy_per_synop_j=(23.6 + 3.5) * 1e-12,
    energy_per_neuron_update_j=81e-12,
    energy_source="Davies et al., IEEE Micro 2018 (Loihi 1), as tabulated by KerasSpiking's ModelEnergy",
    sources={
        "per-core limits": "Loihi 1 values (nengo-loihi block.py: 1024 compartments, 4096 in/out axons, 16384x64-bit "
                           "synapse memory); Loihi 2 per-core limits are not public",
        "cores": "128 neurocores per Loihi 2 chip (Intel brief via open-neuromorphic.org); Lava's mapper assumes 120",
        "formats": "Lava 0.10 PyLifModelBitAcc / PyDenseModelBitAcc (lava/proc/lif/models.py, "
                   "lava/proc/dense/models.py)",
        "weight exponent": "nengo-loihi discretize.py (Loihi 1 range -8..7)",
        "delays": "Dense adds 1 step; DelayDense adds 0..63 more (6-bit delays)",
        "per-layer threshold": "Lava LIF.vth is one value per process; per-neuron vth is unverified on hardware",
        "per-layer decays": "Lava LIF.du/dv are one value per process (a layer with several needs several processes)",
        "no start step": "Lava 0.10's LIF processes update from the first time step (lava/proc/lif/models.py); "
                         "LIFReset zeroes u and v periodically, which holds nothing before it",
    },
)

SPINNAKER2 = Target(
    name="spinnaker2",
    description="SpiNNaker 2: ARM Cortex-M4F processing elements running nmcompile's integer LIF kernel",
    cores_per_chip=152,
    chips=48,
    neurons_per_core=256,
    synapse_memory_bits=67328 * 8,
    synapse_format=SynapseFormat(
        description="nmcompile's PE image: 32-bit synapse words (8 weight, 4 delay, 8 group, 8 target) and a 32-bit "
                    "row index word per source unit",
        word_bits=32, per_synapse_bits=32, per_row_header_bits=32, delay_bits=0, ring_bits=32, index_unit_bits=8,
        key_bits=4 * 32, core_header_bits=16 * 32, group_bits=4 * 32),
    fan_in_axons=None,
    fan_out_axons=None,
    router_entries=16384,
    events_per_tick=None,
    neuron_state_bits=14 * 32,
    memory_shared=True,
    weight_min=-128,
    weight_max=127,
    weight_step=1,
    num_weight_bits=9,
    sign_modes=False,
    weight_exp_range=(-16, 16),
    conv_weight_exp=True,
    conv_wrap_bits=0,
    vth_max=(1 << fixed.VTH_BITS) - 1,
    bias_mant_range=(-(1 << (fixed.BIAS_MANT_BITS - 1)), (1 << (fixed.BIAS_MANT_BITS - 1)) - 1),
    bias_exp_range=(0, 7),
    per_neuron_threshold=True,
    per_neuron_decay=True,
    delay_range=(1, 8),
    per_synapse_delays=True,
    reset_modes=("zero", "subtract"),
    reset_timings=("immediate", "delayed"),
    comparisons=(">", ">="),
    max_refractory=15,
    readout_neurons=True,
    signed_threshold=True,
    start_step_bits=31,
    instructions_per_tick=300_000,
    instructions_per_neuron_update=49.0,
    instructions_per_synaptic_event=9.0,
    instructions_per_packet=53.0,
    energy_per_synop_j=450e-12,
    energy_per_neuron_update_j=2.19e-9,
    energy_source="Hoeppner et al., TCAS-I 2019 (SpiNNaker 2 prototype), as tabulated by KerasSpiking's ModelEnergy",
    sources={
        "chip": "152 Cortex-M4F PEs per chip, 128 KB SRAM each (SpiNNaker2 datasheet v0.03); 48-chip board (248)",
        "memory": "py-spinnaker2 layout: 32 KB code (ITCM), network data 0xE900..0x1F000 = 67,328 B per PE; per "
                  "neuron 8 parameter + 6 state words, and d + 1 accumulator words per (projection, delay d) into it "
                  "(docs/formats/spinnaker2.md)",
        "router": "16,384 key/mask entries per chip (datasheet; SpiNNMachine n_router_entries)",
        "neurons": "256 per PE: the 8-bit target index of the synapse word (py-spinnaker2 caps LIF at 250)",
        "signed threshold": "the kernel compares the int32 vth << 6 of the PE image signed "
                            "(nmcompile/backends/spinnaker2/kernel/kernel.c)",
        "start step": "word 7 of a neuron's parameters in nmcompile's PE image (0..2^31 - 1), compared with the tick "
                      "count "
                      "by the kernel (nmcompile/backends/spinnaker2/kernel/kernel.c)",
        "compute": "300,000 instructions per 1 ms tick at 300 MHz (SpiNNMachine clock_speeds_hz); per neuron update "
                   "49, per synaptic event 9.0, per arriving packet 53 instructions of nmcompile's kernel.elf, "
                   "measured with QEMU -icount (benchmarks/bench_spinnaker2.py)",
    },
)

FPGA_NEURON_SLOTS = 1 << 16      # neuron slots a generated design can address (16-bit source indices)
FPGA_SYNAPSE_BYTES = 1 << 21     # 16 Mbit of 8-bit weights: more than the block RAM of the largest Artix-7
FPGA_HISTORY_SLOTS = 32          # steps of spike history at most (5-bit ring slot index of nmc_core / nmc_router)
FPGA_MAX_DELAY = FPGA_HISTORY_SLOTS - 1   # 5-bit delay field of a table entry; a delayed read never meets
                                          # the ring slot being written
FPGA_TABLE_ENTRIES = 255         # projection table entries per engine (8-bit entry index and count in nmc_core.v)
FPGA_CSR_SYNAPSES = 65_535       # stored synapses of one CSR table entry (16-bit row pointers, nmc_csr_addr.v)

FPGA = Target(
    name="fpga",
    description="nmcompile's Verilog LIF/STDP emulator (nmcompile/hdl/), default configuration for an Artix-7 100T",
    cores_per_chip=1,
    chips=1,
    neurons_per_core=FPGA_NEURON_SLOTS,
    synapse_memory_bits=FPGA_SYNAPSE_BYTES * 8,
    synapse_format=SynapseFormat(
        description="8-bit weights: per projection and delay a dense block (sources x neurons), CSR rows of "
                    "(8-bit destination step, weight) pairs, or a convolution's kernel, whichever is smallest",
        word_bits=8, per_synapse_bits=8, per_row_header_bits=0, delay_bits=0,
        kernels=KernelStorage(weight_bits=8, max_kernel=31, strides=(1, 2, 4, 8), max_padding=31, max_channels=1023,
                              max_plane=65535)),
    fan_in_axons=None,
    fan_out_axons=None,
    router_entries=None,
    events_per_tick=None,
    neuron_state_bits=0,
    memory_shared=False,
    weight_min=-128,
    weight_max=127,
    weight_step=1,
    num_weight_bits=9,
    sign_modes=False,
    weight_exp_range=(-8, 8),
    conv_weight_exp=True,
    conv_wrap_bits=0,
    vth_max=(1 << fixed.VTH_BITS) - 1,
    bias_mant_range=(-(1 << (fixed.BIAS_MANT_BITS - 1)), (1 << (fixed.BIAS_MANT_BITS - 1)) - 1),
    bias_exp_range=(0, 7),
    per_neuron_threshold=True,
    per_neuron_decay=True,
    delay_range=(1, FPGA_MAX_DELAY),
    per_synapse_delays=True,
    reset_modes=("zero", "subtract"),
    reset_timings=("immediate", "delayed"),
    comparisons=(">", ">="),
    max_refractory=15,
    stdp=True,
    bias_bits=21,
    signed_threshold=True,
    start_step_bits=16,
    max_chips=1,
    sources={
        "chips": "one: the generated design (nmcompile/hdl/) runs on one FPGA and has no link to another; all its "
                 "engines share 65,536 neuron slots (16-bit source indices)",
        "size": "16-bit source indices in nmcompile/hdl/nmc_core.v (input channels padded to 32 + neurons < 65,536); "
                "synapse memory capped at 2 MiB, above the xc7a200t's 365 RAMB36 (DS180 Table 3): the part's block "
                "RAM is the bound in practice (report.md: the Yosys estimate and the smallest Artix-7 it fits)",
        "kernels": "nmcompile/hdl/nmc_conv_addr.v: kernels up to 31 x 31, strides 1/2/4/8, padding <= 31, <= 1023 "
                   "output channels, planes < 65,536, groups 1, dilation 1 (others are expanded: dense or CSR rows)",
        "formats": "the integer model of docs/semantics.md §3, implemented by nmcompile/hdl/",
        "limits of the RTL": "nmcompile/hdl/nmc_neuron.v: 21-bit bias, 4-bit refractory counter, immediate and "
                             "delayed reset (PARAM bit 70; the pending reset recomputed from the stored v); "
                             "nmc_core.v: one delay 1..31 per table entry (5-bit field; a spike ring of up to "
                             "32 slots), int8 weights, exponents -8..8, 255 table entries per engine",
        "delays": "per-synapse delays: one table entry (or more) per distinct delay of a projection, each stored "
                  "dense or as CSR rows; the ring has a power of two of slots above the largest delay "
                  "(nmcompile/backends/fpga/lower.py)",
        "csr": "nmcompile/hdl/nmc_csr_addr.v: 16-bit row pointers (at most 65,535 stored synapses per table entry; "
               "more take several entries), 8-bit destination steps (gaps over 255 bridged by zero weights)",
        "signed threshold": "nmcompile/hdl/nmc_neuron.v: vth is 18-bit two's complement (PARAM bits 26-42 and the "
                            "sign in bit 71)",
        "start step": "nmcompile/hdl/nmc_core.v: PARAM bits 72-87, a neuron is held while the step counter is below "
                      "them",
    },
)

TARGETS: dict[str, Target] = {t.name: t for t in (LOIHI2, SPINNAKER2, FPGA)}


def get_target(name: str, **overrides: object) -> Target:
    """The named target, optionally with fields replaced (e.g. chips=4, neurons_per_core=256)."""
    if name not in TARGETS:
        raise UnsupportedError(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")
    target = TARGETS[name]
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(Target)}
        if unknown:
            raise UnsupportedError(f"unknown target field(s): {', '.join(sorted(unknown))}")
        target = dataclasses.replace(target, **overrides)
        if target.max_chips is not None and target.chips > target.max_chips:
            raise UnsupportedError(f"--chips {target.chips}: {name} spans at most {target.max_chips} chip(s) "
                                   f"({target.sources.get('chips', 'Target.max_chips')})")
    return target


def describe_targets() -> str:
    from nmcompile.backends import get_backend

    blocks = []
    for target in TARGETS.values():
        backend = get_backend(target.name)
        blocks.append(target.describe() + f"\n  backend         {backend.status()}\n  pipeline        "
                      + " -> ".join(backend.pipeline))
    return "\n\n".join(blocks)
