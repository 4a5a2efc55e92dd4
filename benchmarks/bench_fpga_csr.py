"""The FPGA emulator's CSR projections against the dense blocks they replace: synapse memory, block RAM and clock
cycles per step, on the same network compiled both ways in the same run.

Network per density d: 256 input channels (rate 10 %) into 1,024 LIF neurons through one QLinear whose weights are
non-zero with probability d (int8), T = 30 steps, one sample. The compiler stores the block as CSR rows when they
are smaller (nmcompile/backends/fpga/storage.py); the peer is the same network with CSR switched off (dense). Each
is run Verilated through its UART pins and its output spikes are asserted equal to the integer reference before any
number is printed. Block RAM: RAMB36 tiles of the synapse memory by the 7-series shapes (budget.py's estimate) and,
with --synth, Yosys synth_xilinx's count for the whole design. Synaptic events: every input spike delivered to each
neuron its row reaches (non-zero weights only); CSR rows also deliver their weight-0 bridging synapses.

    python benchmarks/bench_fpga_csr.py [--densities 0.02 0.1 0.3] [--synth]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

from nmcompile import artifact
from nmcompile.backends.fpga import lower as fpga_lower
from nmcompile.backends.fpga.budget import ram_tiles
from nmcompile.backends.fpga.emit import emit
from nmcompile.backends.fpga.synth import synthesize
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.lowered import lower_network
from nmcompile.runtime.fpga_board import VerilatorBoard
from nmcompile.targets import get_target

INPUTS, NEURONS, STEPS, RATE = 256, 1024, 30, 0.1


def network(density: float, rng: np.random.Generator) -> Graph:
    g = Graph(f"csr{density:g}")
    g.add("in", O.Input(shape=(INPUTS,)))
    w = np.where(rng.random((NEURONS, INPUTS)) < density, rng.integers(-40, 120, (NEURONS, INPUTS)), 0)
    g.add("fc", O.QLinear(weight=w, weight_exp=-1))
    g.add("lif", O.QNeuron(shape=(NEURONS,), du=4095, dv=600, vth=20))
    g.add("out", O.Output(shape=(NEURONS,)))
    g.chain("in", "fc", "lif", "out")
    g.latency = 1
    return g


def run(g: Graph, x: np.ndarray, dense: bool, synth: bool, out: Path) -> dict:
    """One form: the dense peer keeps CSR off while it is emitted and while the board rebuilds it to check it."""
    with mock.patch.object(fpga_lower, "csr_form", lambda block: None) if dense else contextlib.nullcontext():
        return _run(g, x, synth, out)


def _run(g: Graph, x: np.ndarray, synth: bool, out: Path) -> dict:
    files = emit(lower_network(g), get_target("fpga"), {"fpga_engines": 1}, lambda m: None).files
    artifact.write(out, graph=g, target="fpga", source=Path("bench"), pipeline=[], inputs=x, report="", files=files,
                   compile_options={"backend_options": {"fpga_engines": 1}})
    layout = json.loads((out / "fpga" / "layout.json").read_text())
    board = VerilatorBoard(program=False)
    board.load(out)
    got = board.run_all(x)
    board.close()
    _, expected = artifact.read(out).reference()
    assert np.array_equal(got["out"], expected["out"][:STEPS]), f"{out.name}: RTL differs from the reference"
    syn_depth = layout["design"]["syn_depth"]
    row = {"form": layout["projections"][0]["form"], "bytes": layout["used"]["syn_words"], "syn_depth": syn_depth,
           "tiles": ram_tiles(8, syn_depth), "cycles": float(np.mean(board.cycles)) / STEPS}
    if synth:
        row["yosys_bram"] = synthesize(out / "fpga").bram
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--densities", type=float, nargs="+", default=[0.02, 0.1, 0.3])
    parser.add_argument("--synth", action="store_true", help="also run Yosys on every design (minutes each)")
    args = parser.parse_args()
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    print("| density | synapses | events/step | form | synapse bytes | SYN_DEPTH | SYN RAMB36 (est.) | "
          + ("Yosys BRAM | " if args.synth else "") + "cycles/step |")
    print("|---|---|---|---|---|---|---|" + ("---|" if args.synth else "") + "---|")
    with tempfile.TemporaryDirectory(prefix="nmc-csr-") as tmp:
        for density in args.densities:
            rng = np.random.default_rng(int(density * 1000))
            g = network(density, rng)
            x = (rng.random((STEPS, 1, INPUTS)) < RATE).astype(np.int64)
            fan_out = (g.node("fc").weight != 0).sum(axis=0)
            events = float((x[:STEPS - 1, 0] @ fan_out).sum()) / STEPS        # delivered at t + 1 within the run
            synapses = int(fan_out.sum())
            for dense in (False, True):
                r = run(g, x, dense, args.synth, Path(tmp) / f"{g.name}-{'dense' if dense else 'csr'}")
                yosys = f"{r['yosys_bram']:.1f} | " if args.synth else ""
                print(f"| {density:g} | {synapses:,} | {events:,.0f} | {r['form']} | {r['bytes']:,} | "
                      f"{r['syn_depth']:,} | {r['tiles']:.1f} | {yosys}{r['cycles']:,.0f} |", flush=True)
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
