"""Wire and file formats that both sides use: the compiler writes them into artifacts (program streams, memory
images), the runtime speaks them to boards. Modules here import only the standard library, numpy and
`nmcompile.errors`, so the compile side never imports `nmcompile.runtime` for a format (boards still find their
target's backend in the registry, `nmcompile.backends`, and the Lava runner in the loihi backend's package).

    fpga_uart    the FPGA emulator's UART frames, commands, memory regions and spike bitmaps
                 (docs/formats/fpga-uart.md)
    spike_files  `.npz` spike files [T, B, N] (input, calibration and output spikes)
"""
