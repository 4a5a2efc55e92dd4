"""Emit the FPGA project of an artifact (docs/formats/fpga.md), under `fpga/`:

    nmc_top.v             generated top: sizes of this network, UART, host interface, engine, memory images
    hdl/*.v               the emulator (copied from nmcompile's hdl/)
    *.hex                 $readmemh images: syn, param, init, proj, const, config
    program.bin           the UART frames that load this network into an already built design
    tb/nmc_harness.cpp    the Verilator harness (UART pins to stdin/stdout or a pty)
    synth.ys              Yosys script: synth_xilinx for the 7 series, utilisation statistics
    layout.json           where every layer, input and plastic projection lives (read by the host runtime)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files as package_files
from pathlib import Path

import numpy as np

from nmcompile import __version__
from nmcompile.backends import Emitted
from nmcompile.backends.fpga.groups import neuron_groups
from nmcompile.backends.fpga.lower import QSTEPS, QSTEPS_ENGINES, FpgaConfig, lower
from nmcompile.backends.fpga.storage import FORM_CONV, FORM_CSR, FORM_DENSE
from nmcompile.errors import UnsupportedError
from nmcompile.lowered import LoweredNetwork
from nmcompile.lowered.limits import check_target
from nmcompile.protocols.fpga_uart import WORD_BYTES, Command, Region, frame, write_frames

HDL = package_files("nmcompile") / "hdl"      # package data (nmcompile/hdl), also inside an installed wheel
HDL_SOURCES = ("nmc_uart_rx.v", "nmc_uart_tx.v", "nmc_ram.v", "nmc_syn_ram.v", "nmc_neuron.v", "nmc_conv_addr.v",
               "nmc_csr_addr.v", "nmc_core.v", "nmc_router.v", "nmc_engines.v", "nmc_host.v")
MAX_ENGINES = 8                 # nmc_engines.v names images e0_ .. e9_; beyond 8 the router's copy grows
CLOCK_HZ = 100_000_000
BAUD = 1_000_000


@dataclass(frozen=True)
class DesignSize:
    """Parameters of the generated design (rounded up so that similar networks share one build)."""

    neurons: int
    in_words: int
    syn_depth: int                # the deepest engine's synapse words: the host's address stride per engine
    projections: int
    trace_depth: int
    queue_steps: int = QSTEPS
    partials: bool = True         # a partial-sum memory (some projection has a negative weight exponent)
    hist_slots: int = 32          # steps of spike history: a power of two beyond the longest delay
    engines: int = 1              # neurons, syn_depth, projections, trace_depth and groups are per engine
    groups: int = 32              # neuron parameter groups (PARAM and INIT words)
    syn_depths: tuple[int, ...] = ()   # synapse words of each engine (none given: syn_depth each)

    @classmethod
    def for_config(cls, config: FpgaConfig) -> DesignSize:
        entries = max(table_entries(config, e) for e in range(config.engines))
        neurons = config.neurons if config.engines == 1 else config.slots
        groups = max(len(engine_groups(config, e)) for e in range(config.engines))
        depths = tuple(max(1024, -(-engine_syn_words(config, e) // 1024) * 1024) for e in range(config.engines))
        return cls(neurons=max(32, -(-neurons // 32) * 32), in_words=config.in_words, engines=config.engines,
                   queue_steps=QSTEPS if config.engines == 1 else QSTEPS_ENGINES,
                   syn_depth=max(depths), syn_depths=depths,
                   projections=max(8, -(-entries // 8) * 8),
                   trace_depth=max(64, -(-config.trace_words // 64) * 64),
                   partials=any(p.exp < 0 for p in config.projections),
                   hist_slots=max(2, 1 << max((p.delay for p in config.projections), default=1).bit_length()),
                   groups=max(32, -(-groups // 32) * 32))

    def engine_syn_depth(self, engine: int) -> int:
        return self.syn_depths[engine] if self.syn_depths else self.syn_depth


def entry_bytes(proj) -> bytes:
    """The projection's table entries, 24 bytes each (docs/formats/fpga.md): a conv projection's geometry follows
    its entry."""
    rule = proj.plastic
    stdp = (rule.pre_increment, rule.post_increment, rule.pre_decay, rule.post_decay, rule.ltp_shift, rule.ltd_shift,
            rule.w_min & 0xFF, rule.w_max & 0xFF) if rule is not None else (0,) * 8
    return (proj.src_base.to_bytes(2, "little") + proj.src_len.to_bytes(2, "little")
            + proj.dst_base.to_bytes(2, "little") + proj.dst_len.to_bytes(2, "little")
            + proj.w_base.to_bytes(3, "little")
            + bytes([proj.delay | {"conv": FORM_CONV, "csr": FORM_CSR, "dense": FORM_DENSE}[proj.form] << 6,
                     proj.exp & 0xFF,
                     (1 if rule is not None else 0) | (2 if proj.chained else 0)])
            + bytes(stdp) + proj.trace_base.to_bytes(2, "little")
            + (proj.geometry.entry() if proj.geometry is not None else b""))


def table_entries(config: FpgaConfig, engine: int) -> int:
    return sum(p.entries for p in config.projections if p.engine == engine)


def engine_syn_words(config: FpgaConfig, engine: int) -> int:
    return sum(p.stored.size for p in config.projections if p.engine == engine)


def engine_slots(config: FpgaConfig, engine: int) -> slice:
    """The slots of `engine` the neuron loop walks (CONFIG word 0: the fullest engine's count)."""
    if config.engines == 1:
        return slice(0, config.neurons)
    return slice(engine * config.slots, engine * config.slots + max(config.engine_neurons))


def engine_groups(config: FpgaConfig, engine: int):
    slots = engine_slots(config, engine)
    return neuron_groups(config.params[slots].tolist(), config.inits[slots].tolist())


def _words(values, size: int) -> bytes:
    return b"".join(int(v).to_bytes(size, "little") for v in values)


def memory_contents(config: FpgaConfig, engine: int = 0) -> dict[Region, bytes]:
    """Every writable region's used words of one engine, little-endian, in address order. With several engines
    every table is padded with empty entries to the longest (CONFIG, shared, holds one count)."""
    mine = [p for p in config.projections if p.engine == engine]
    syn = np.zeros(max((p.w_base + p.stored.size for p in mine), default=0), dtype=np.int64)
    for p in mine:                  # from w_base: a CSR entry starts at an even address, after a spare byte
        syn[p.w_base:p.w_base + p.stored.size] = p.stored.reshape(-1)
    const = np.zeros(32 * config.in_words, dtype=np.uint8)
    const[config.input_channels:config.channels] = 1
    out = config.output
    slots = engine_slots(config, engine)
    neurons = slots.stop - slots.start
    entries = max(table_entries(config, e) for e in range(config.engines))
    groups = engine_groups(config, engine)
    table = b"".join(entry_bytes(p) for p in mine)
    return {
        Region.CONFIG: _words([neurons, entries, out.base, out.size], 4),
        Region.CONST: np.packbits(const, bitorder="little").tobytes(),
        Region.PROJ: table + bytes(24 * entries - len(table)),
        Region.PARAM: _words([g.param_word for g in groups], WORD_BYTES[Region.PARAM]),
        Region.INIT: _words([g.init for g in groups], WORD_BYTES[Region.INIT]),
        Region.SYN: (syn.astype(np.int64) & 0xFF).astype(np.uint8).tobytes(),
    }


def _region_depth(size: DesignSize) -> dict[Region, int]:
    """The host's address stride per engine of each region."""
    return {Region.SYN: size.syn_depth, Region.PARAM: size.neurons, Region.INIT: size.neurons,
            Region.PROJ: size.projections, Region.CONST: size.in_words, Region.CONFIG: 4}


def _image_depth(size: DesignSize, engine: int) -> dict[Region, int]:
    """Words of each $readmemh image of one engine (its memories' depths)."""
    return {**_region_depth(size), Region.SYN: size.engine_syn_depth(engine), Region.PARAM: size.groups,
            Region.INIT: size.groups}


def program_stream(config: FpgaConfig, size: DesignSize | None = None) -> bytes:
    """WRITE frames for every region of every engine (engine e's words from e x the region's depth per engine;
    CONST and CONFIG reach every engine at once), then RESET (which also clears spikes and traces)."""
    size = size or DesignSize.for_config(config)
    depth = _region_depth(size)
    frames = []
    for engine in range(config.engines):
        for region, data in memory_contents(config, engine).items():
            shared = region in (Region.CONST, Region.CONFIG)
            if data and not (shared and engine):
                frames += write_frames(region, 0 if shared else engine * depth[region], data)
    frames.append(frame(Command.RESET))
    return b"".join(frames)


def _hex_image(data: bytes, size: int, depth: int) -> bytes:
    digits = 2 * size
    lines = [int.from_bytes(data[k:k + size], "little") for k in range(0, len(data), size)]
    lines += [0] * (depth - len(lines))
    return "".join(f"{v:0{digits}x}\n" for v in lines).encode()


def images(config: FpgaConfig, size: DesignSize) -> dict[str, bytes]:
    """The $readmemh images: syn.hex, ... (one engine) or e<k>_syn.hex, ... per engine k."""
    names = {Region.SYN: "syn", Region.PARAM: "param", Region.INIT: "init", Region.PROJ: "proj",
             Region.CONST: "const", Region.CONFIG: "config"}
    files = {}
    for engine in range(config.engines):
        contents = memory_contents(config, engine)
        depth = _image_depth(size, engine)
        prefix = f"e{engine}_" if config.engines > 1 else ""
        files.update({f"{prefix}{names[r]}.hex": _hex_image(contents[r], WORD_BYTES[r], depth[r]) for r in names})
        syn = contents[Region.SYN]           # nmc_syn_ram holds the bytes as 16-bit words
        files[f"{prefix}syn.hex"] = _hex_image(syn + bytes(len(syn) % 2), 2, depth[Region.SYN] // 2)
    return files


def top_verilog(config: FpgaConfig, size: DesignSize) -> str:
    summary = (f"{config.neurons} neurons in {size.neurons} slots, {config.input_channels} inputs + "
               f"{config.channels - config.input_channels} bias channels,\n// {len(config.projections)} projections, "
               f"{config.syn_words} synapse words")
    uart = f"{BAUD} baud at {CLOCK_HZ // 1_000_000} MHz: CLKS_PER_BIT = {CLOCK_HZ // BAUD}"
    sizes = (f"N = {size.neurons}, GROUPS = {size.groups}, IN_WORDS = {size.in_words}, "
             f"SYN_DEPTH = {size.syn_depth}, P = {size.projections};\n    localparam integer TRACE_DEPTH = "
             f"{size.trace_depth}, QSTEPS = {size.queue_steps}, PARTIALS = {int(size.partials)}, "
             f"HIST_SLOTS = {size.hist_slots}, ENGINES = {size.engines}")
    depths = "".join(f"32'd{size.engine_syn_depth(e)}, " for e in reversed(range(size.engines)))
    syn_depths = f"{{{32 * (8 - size.engines)}'d0, {depths[:-2]}}}" if size.engines < 8 else f"{{{depths[:-2]}}}"
    if size.engines == 1:
        core = """/* verilator lint_off UNUSEDSIGNAL */
    wire        no_barrier;     // one engine: no spike exchange
    wire [4:0]  no_slot;
    wire [31:0] no_rdata;
    /* verilator lint_on UNUSEDSIGNAL */
    nmc_core #(.N(N), .GROUPS(GROUPS), .IN_WORDS(IN_WORDS), .SYN_DEPTH(SYN_DEPTH), .P(P), .TRACE_DEPTH(TRACE_DEPTH),
               .QSTEPS(QSTEPS), .PARTIALS(PARTIALS), .HIST_SLOTS(HIST_SLOTS), .SYN_IMAGE("syn.hex"),
               .PARAM_IMAGE("param.hex"), .INIT_IMAGE("init.hex"), .PROJ_IMAGE("proj.hex"), .CONST_IMAGE("const.hex"),
               .CONFIG_IMAGE("config.hex")) core ("""
        exchange = """,
        .at_barrier(no_barrier), .exchange_done(1'b0), .slot_now(no_slot), .x_raddr(24'd0), .x_rdata(no_rdata),
        .x_we(1'b0),
        .x_waddr(24'd0), .x_wdata(32'd0)"""
    else:
        core = f"""nmc_engines #(.ENGINES(ENGINES), .N(N), .GROUPS(GROUPS), .IN_WORDS(IN_WORDS), .SYN_DEPTH(SYN_DEPTH),
                  .SYN_DEPTHS({syn_depths}),
                  .P(P), .TRACE_DEPTH(TRACE_DEPTH), .QSTEPS(QSTEPS), .PARTIALS(PARTIALS),
                  .HIST_SLOTS(HIST_SLOTS)) core ("""
        exchange = ""
    return f"""// Top of the nmcompile FPGA emulator for network '{config.name}', written by nmcompile {__version__}.
// {summary}. Memories start from the *.hex images
// next to this file; program.bin re-loads them over the UART ({uart}).
`default_nettype none
module nmc_top #(
    parameter integer CLKS_PER_BIT = {CLOCK_HZ // BAUD}
) (
    input  wire clk,
    input  wire rst,        // active high; a power-on reset is generated as well
    input  wire uart_rx,
    output wire uart_tx,
    output wire idle        // nothing received, executing or sending
);
    localparam integer {sizes};

    reg [3:0] power_on = 4'd0;
    always @(posedge clk) if (!power_on[3]) power_on <= power_on + 4'd1;
    wire reset = rst | !power_on[3];

    wire        rx_valid, tx_start, tx_ready;
    wire [7:0]  rx_byte, tx_byte;
    wire        host_we, host_re, host_rvalid, inq_we, inq_commit, inq_abort, reset_req, run_req, core_idle;
    wire        run_done, out_valid, out_ready, host_idle;
    wire [2:0]  host_region;
    wire [23:0] host_addr, inq_free_words;
    wire [191:0] host_wdata, host_rdata;
    wire [31:0] inq_wdata, run_steps;
    wire [63:0] run_cycles;
    wire [15:0] cfg_out_len;
    wire [7:0]  out_byte;

    nmc_uart_rx #(.CLKS_PER_BIT(CLKS_PER_BIT)) receiver (.clk(clk), .rst(reset), .rx(uart_rx), .valid(rx_valid),
                                                          .data(rx_byte));
    nmc_uart_tx #(.CLKS_PER_BIT(CLKS_PER_BIT)) transmitter (.clk(clk), .rst(reset), .start(tx_start),
                                                             .data(tx_byte), .ready(tx_ready), .tx(uart_tx));
    nmc_host #(.N(ENGINES * N), .IN_WORDS(IN_WORDS), .SYN_DEPTH(ENGINES * SYN_DEPTH), .P(ENGINES * P),
               .TRACE_DEPTH(ENGINES * TRACE_DEPTH), .QSTEPS(QSTEPS)) host (
        .clk(clk), .rst(reset), .rx_valid(rx_valid), .rx_byte(rx_byte), .tx_start(tx_start), .tx_byte(tx_byte),
        .tx_ready(tx_ready), .host_we(host_we), .host_re(host_re), .host_region(host_region), .host_addr(host_addr),
        .host_wdata(host_wdata), .host_rdata(host_rdata), .host_rvalid(host_rvalid), .inq_we(inq_we),
        .inq_wdata(inq_wdata), .inq_commit(inq_commit), .inq_abort(inq_abort), .inq_free_words(inq_free_words),
        .reset_req(reset_req), .run_req(run_req), .run_steps(run_steps), .core_idle(core_idle), .run_done(run_done),
        .run_cycles(run_cycles), .cfg_out_len(cfg_out_len), .out_valid(out_valid), .out_byte(out_byte),
        .out_ready(out_ready), .idle(host_idle));
    {core}
        .clk(clk), .rst(reset), .host_we(host_we), .host_re(host_re), .host_region(host_region),
        .host_addr(host_addr), .host_wdata(host_wdata), .host_rdata(host_rdata), .host_rvalid(host_rvalid),
        .inq_we(inq_we), .inq_wdata(inq_wdata), .inq_commit(inq_commit), .inq_abort(inq_abort),
        .inq_free_words(inq_free_words), .reset_req(reset_req), .run_req(run_req), .run_steps(run_steps),
        .idle(core_idle), .run_done(run_done), .run_cycles(run_cycles), .cfg_out_len(cfg_out_len),
        .out_valid(out_valid), .out_byte(out_byte), .out_ready(out_ready){exchange});

    assign idle = host_idle & core_idle;
endmodule
`default_nettype wire
"""


def yosys_script() -> str:
    sources = " ".join(f"hdl/{s}" for s in HDL_SOURCES)
    return ("# Yosys 0.23+: resource estimate for a Xilinx 7-series part (`nmcompile report` runs this)\n"
            f"read_verilog -sv -DSYNTHESIS {sources} nmc_top.v\n"
            "synth_xilinx -family xc7 -top nmc_top -flatten\n"
            "stat -tech xilinx\n")


def layout(config: FpgaConfig, size: DesignSize, part: str) -> dict:
    return {
        "network": config.name,
        "part": part,
        "design": {"neurons": size.engines * size.neurons, "in_words": size.in_words,
                   "syn_depth": size.engines * size.syn_depth, "projections": size.engines * size.projections,
                   "trace_depth": size.engines * size.trace_depth, "queue_steps": size.queue_steps,
                   "partials": size.partials, "hist_slots": size.hist_slots, "engines": size.engines,
                   "engine_neurons": size.neurons, "groups": size.groups,
                   "engine_syn_depths": [size.engine_syn_depth(e) for e in range(size.engines)],
                   "clock_hz": CLOCK_HZ, "baud": BAUD},
        "input": {"name": config.input_name, "shape": list(config.input_shape), "channels": config.input_channels},
        "constants": config.constants,
        "layers": {n: {"base": layer.base, "size": layer.size, "shape": list(layer.shape),
                       "pieces": [{"engine": c.engine, "start": c.start, "size": c.size,
                                   "slot": c.engine * size.neurons + c.local} for c in layer.pieces]}
                   for n, layer in config.layers.items()},
        "output": {"name": config.output_name, "layer": config.output_layer, "base": config.output.base,
                   "size": config.output.size, "shape": list(config.output.shape)},
        "projections": [{"name": p.name, "form": p.form, "source": p.src, "target": p.dst, "src_base": p.src_base,
                         "src_len": p.src_len, "dst_base": p.dst_base, "dst_len": p.dst_len, "engine": p.engine,
                         "w_base": p.engine * size.syn_depth + p.w_base, "delay": p.delay, "weight_exp": p.exp,
                         "plastic": p.plastic is not None, "chained": p.chained, "trace_base": p.trace_base}
                        for p in config.projections],
        "used": {"neurons": config.neurons, "syn_words": config.syn_words, "trace_words": config.trace_words},
    }


def check_options(options: dict) -> None:
    """--fpga-part and --fpga-engines, checked before the compile's passes run (and again by emit)."""
    from nmcompile.backends.fpga.synth import PARTS

    part = options.get("fpga_part")
    if part is not None and part not in PARTS:
        raise UnsupportedError(f"--fpga-part: unknown FPGA part {part!r}; known: {', '.join(PARTS)}")
    engines = options.get("fpga_engines")
    if engines is not None and (not str(engines).isdigit() or not 1 <= int(engines) <= MAX_ENGINES):
        raise UnsupportedError(f"--fpga-engines must be an integer 1..{MAX_ENGINES} (got {engines!r})")


def emit(view: LoweredNetwork, target, options: dict, log) -> Emitted:
    from nmcompile.backends.fpga.synth import DEFAULT_PART

    check_target(view, target)
    check_options(options)
    part = options.get("fpga_part") or DEFAULT_PART
    engines = options.get("fpga_engines")
    if engines is None:
        from nmcompile.backends.fpga.budget import choose_engines

        engines = choose_engines(view, target, part)
    config = lower(view, target, int(engines))
    size = DesignSize.for_config(config)
    files = {"fpga/nmc_top.v": top_verilog(config, size).encode(),
             "fpga/program.bin": program_stream(config, size),
             "fpga/synth.ys": yosys_script().encode(),
             "fpga/layout.json": (json.dumps(layout(config, size, part), indent=1, sort_keys=True) + "\n").encode(),
             "fpga/tb/nmc_harness.cpp": (HDL / "tb" / "nmc_harness.cpp").read_bytes()}
    for source in HDL_SOURCES:
        files[f"fpga/hdl/{source}"] = (HDL / source).read_bytes()
    for name, data in images(config, size).items():
        files[f"fpga/{name}"] = data
    synthesis = _synthesize(files, config, part, log) if options.get("synth") else None
    return Emitted(files, _report_lines(config, size, synthesis))


def _synthesize(files: dict[str, bytes], config: FpgaConfig, part: str, log) -> list[str]:
    """Yosys on the project written to a scratch directory (compile --synth)."""
    import tempfile

    from nmcompile.backends.fpga.synth import report_lines, synthesize

    with tempfile.TemporaryDirectory(prefix="nmc-fpga-") as tmp:
        for rel, data in files.items():
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        util = synthesize(Path(tmp) / "fpga", log=log)
    return report_lines(util, config.neurons, part)


def _report_lines(c: FpgaConfig, s: DesignSize, synthesis: list[str] | None) -> list[str]:
    plastic = [p.name for p in c.projections if p.plastic is not None]
    conv = [p.name for p in c.projections if p.form == "conv"]
    csr = [p.name for p in c.projections if p.form == "csr"]
    csr_bytes = sum(p.stored.size for p in c.projections if p.form == "csr")
    csr_dense = sum(p.csr.size for p in c.projections if p.form == "csr")
    lines = [f"FPGA design: {c.neurons:,} neurons in {s.neurons:,} slots, {c.input_channels:,} input channels + "
             f"{c.channels - c.input_channels:,} bias channels ({32 * s.in_words:,} channel slots), "
             f"{len(c.projections)} projections, {c.syn_words:,} of {s.syn_depth:,} synapse words, input queue "
             f"{s.queue_steps} steps",
             f"convolutions stored as kernels: {', '.join(sorted(set(conv))) if conv else 'none'}; as CSR rows: "
             + (f"{', '.join(sorted(set(csr)))} ({csr_bytes:,} bytes against {csr_dense:,} dense)" if csr else "none")
             + "; the other projections as dense blocks (the smaller of dense and CSR, per table entry)",
             f"engines: {c.engines} ({s.neurons:,} neuron slots, {s.syn_depth:,} synapse words and {s.projections} "
             "table entries each; spikes exchanged on chip after every neuron phase)" if c.engines > 1 else
             "engines: 1",
             "layers: " + ", ".join(f"{n} [{layer.base}, {layer.base + layer.size})" for n, layer in c.layers.items()),
             f"output '{c.output_name}': neurons [{c.output.base}, {c.output.base + c.output.size})",
             f"STDP on: {', '.join(plastic) if plastic else 'none'}"]
    if synthesis:
        lines += ["", *synthesis]
    else:
        lines.append("resources: `nmcompile report DIR` (or compile --synth) runs Yosys synth_xilinx on fpga/")
    return lines
