"""How many engines the FPGA design gets for a part: the most (up to 8) whose estimated block RAM and LUTs fit it.

Block RAM per memory of the design (nmcompile/hdl/nmc_core.v, per engine: weights as deep as that engine's,
neuron parameters and initial states per group of slots, state, input, partial sums, spike history, input queue,
traces) is counted in RAMB36 tiles the way the 7-series block RAM can be shaped (Xilinx UG473, "7 Series FPGAs
Memory Resources": a RAMB36 is 32K x 1, 16K x 2, 8K x 4, 4K x 9, 2K x 18, 1K x 36 or 512 x 72; a RAMB18 is half
of it); memories of 64 words or fewer are left to distributed RAM, as Yosys does; a 5 % margin covers what Yosys
maps differently. LUTs: the engine logic measured by Yosys on the N-MNIST design (benchmarks/README.md,
`bench_fpga.py`): at most 6,700 per engine plus 1,500 for the UART and host interface. Both are estimates: the
report of an emitted design (`nmcompile report`) runs Yosys itself.
"""

from __future__ import annotations

import math

from nmcompile.backends.fpga.engines import busiest_share, place
from nmcompile.errors import NmcError

LUTS_PER_ENGINE, LUTS_SHARED = 6_700, 1_500
BRAM_MARGIN = 1.05   # Yosys vs this estimate, N-MNIST: 136 vs 131 tiles (2 engines, PARAM per neuron), 122 vs 117.5 (8)
SHAPES_36 = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))


def ram_tiles(width: int, depth: int) -> float:
    """RAMB36 tiles of one width x depth memory (0 for distributed RAM)."""
    if depth <= 64:
        return 0.0
    full = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in SHAPES_36)
    half = min(math.ceil(depth / (d // 2)) * math.ceil(width / w) for d, w in SHAPES_36 if d > 512) / 2
    return float(min(full, half))


def engine_tiles(size, engine: int) -> dict[str, float]:
    """RAMB36 tiles of one engine's memories, by memory (nmcompile/hdl/nmc_core.v)."""
    source_words = size.in_words + size.engines * size.neurons // 32
    return {"synapses": ram_tiles(8, size.engine_syn_depth(engine)),
            "parameters": ram_tiles(104, size.groups), "initial states": ram_tiles(48, size.groups),
            "state": ram_tiles(53, size.neurons), "input": ram_tiles(32, size.neurons),
            "partial sums": ram_tiles(32, size.neurons) if size.partials else 0.0,
            "spike history": ram_tiles(32, size.hist_slots * source_words),
            "input queue": ram_tiles(32, size.queue_steps * size.in_words), "traces": ram_tiles(8, size.trace_depth)}


def design_tiles(size) -> float:
    """RAMB36 tiles of a DesignSize (every engine)."""
    return sum(sum(engine_tiles(size, e).values()) for e in range(size.engines))


def design_luts(engines: int) -> int:
    return LUTS_SHARED + engines * LUTS_PER_ENGINE


def choose_engines(view, target, part: str) -> int:
    """The most engines (1, 2, 4, 8) that fit `part` by estimate, cut some layer (layers of fewer than 32 neurons
    per engine stay whole) and make the busiest engine's share at least 10 % smaller."""
    from nmcompile.backends.fpga.emit import DesignSize
    from nmcompile.backends.fpga.lower import lower
    from nmcompile.backends.fpga.synth import PARTS

    cap = PARTS[part]
    best, share = 1, 1.0
    for engines in (2, 4, 8):
        pieces, _ = place(view, engines)
        new_share = busiest_share(view, pieces, engines)
        split = any(len(parts) > 1 for parts in pieces.values())     # a network too small to cut gains nothing
        if not split or new_share > 0.9 * share or design_luts(engines) > cap["lut"]:
            break
        try:
            size = DesignSize.for_config(lower(view, target, engines))
        except NmcError:                  # a layout this many engines cannot take (sources, tables): keep fewer
            break
        if design_tiles(size) * BRAM_MARGIN > cap["bram"]:
            break
        best, share = engines, new_share
    return best
