"""The fpga backend: nmcompile's Verilog LIF/STDP emulator (docs/formats/fpga.md), verified under Verilator."""

from nmcompile.backends import Backend, BackendOption

BACKEND = Backend(
    name="fpga",
    summary="Verilog emulator project: generated top, $readmemh images, UART programming stream, Yosys script",
    pipeline=("fold_bn", "fold_mpbn", "fuse_projections", "retime", "quantize", "stdp", "partition", "analyse"),
    emitter="nmcompile.backends.fpga.emit:emit",
    options=(
        BackendOption("synth", "fpga: run Yosys synth_xilinx on the emitted design and put LUT/FF/BRAM/DSP in "
                               "report.md (about 30 s for a small design).", flag=True, default=False,
                      files=False),
        BackendOption("fpga_part", "fpga: the Artix-7 part the design must fit: xc7a35t, xc7a50t, xc7a100t "
                                   "(default), xc7a200t.", metavar="PART"),
        BackendOption("fpga_engines", "fpga: neuron engines working in parallel, 1..8 (default: the most that fit "
                                      "--fpga-part by estimate and shorten the busiest engine's step).", metavar="N"),
    ),
    check_options="nmcompile.backends.fpga.emit:check_options",
    boards={"verilator": "nmcompile.runtime.fpga_board:VerilatorBoard",
            "serial": "nmcompile.runtime.fpga_board:SerialBoard"},
    conformance=("verilator://",),
    report="nmcompile.backends.fpga.synth:report_section",
    report_options=(
        BackendOption("part", "fpga: the Artix-7 part to compare the Yosys estimate with (default: the one given at "
                              "compile time, else xc7a100t).", metavar="PART"),
    ),
)
