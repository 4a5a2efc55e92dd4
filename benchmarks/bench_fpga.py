"""The FPGA emulator as N grows: clock cycles per time step against the design's lower bound, Verilator
simulation speed against nmcompile's reference simulator on the same network, and Yosys LUT/BRAM per neuron.

Network per N: 64 input channels (rate 10 %) fanning out to N LIF neurons that are connected all-to-all
(a recurrent edge into a delay-1 projection: two steps), T = 50 steps, 2 samples. Output spikes are checked equal
to the reference before any number is printed. Lower bound per step = N neuron updates + synaptic events (every
spike delivered to every neuron of its projection), at the design's peak of one neuron update or one synaptic event
per clock cycle.

    python benchmarks/bench_fpga.py [--sizes 64 256 1024] [--no-synth]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from nmcompile import artifact
from nmcompile.backends.fpga.emit import emit
from nmcompile.backends.fpga.lower import lower
from nmcompile.backends.fpga.synth import PARTS, synthesize
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate
from nmcompile.lowered import lower_network
from nmcompile.runtime.fpga_board import VerilatorBoard
from nmcompile.runtime.verilator_build import build_model
from nmcompile.targets import get_target

INPUTS, STEPS, BATCH, RATE = 64, 50, 2, 0.1


def network(n: int, rng: np.random.Generator) -> Graph:
    g = Graph(f"all2all{n}")
    g.add("input", O.Input(shape=(INPUTS,)))
    g.add("ff", O.QLinear(weight=rng.integers(0, 60, (n, INPUTS)), weight_exp=0, num_weight_bits=9))
    g.add("lif", O.QNeuron(shape=(n,), du=4095, dv=300, vth=40))
    g.add("rec", O.QLinear(weight=rng.integers(-12, 11, (n, n)), weight_exp=0, num_weight_bits=9))
    g.add("output", O.Output(shape=(n,)))
    g.chain("input", "ff", "lif", "output")
    g.connect("lif", "rec", recurrent=True)
    g.connect("rec", "lif")
    g.latency = 1
    return g


def synaptic_events(g: Graph, x: np.ndarray, target) -> float:
    """Mean synaptic events per step: every spike delivered within the run (at t + delay of its projection) to
    every neuron of the projection's block."""
    spikes = {"input": x, "lif": simulate(g, x).output}
    total = 0
    for proj in lower(lower_network(g), target).projections:
        source = spikes[proj.src]
        total += int(source[: max(x.shape[0] - proj.delay, 0)].sum()) * proj.dst_len
    return total / (x.shape[0] * x.shape[1])


def run_case(n: int, synth: bool, work: Path) -> dict:
    rng = np.random.default_rng(n)
    g = network(n, rng)
    target = get_target("fpga", neurons_per_core=max(512, n), fan_in_axons=max(512, n) + 256,
                        synapse_memory_bits=(max(512, n) + 256) * max(512, n) * 8)
    x = (rng.random((STEPS, BATCH, INPUTS)) < RATE).astype(np.int64)
    files = emit(lower_network(g), target, {}, print).files
    out = work / f"n{n}"
    artifact.write(out, graph=g, target="fpga", source=Path("bench"), pipeline=[], inputs=x, report="", files=files)
    build_start = time.perf_counter()
    build_model(out / "fpga")
    build_s = time.perf_counter() - build_start
    board = VerilatorBoard(program=False)
    board.load(out)
    start = time.perf_counter()
    got = board.run_all(x)
    wall = time.perf_counter() - start
    board.close()
    _, expected = artifact.read(out).reference()
    assert np.array_equal(got["output"], expected["output"][:STEPS]), f"N={n}: RTL differs from the reference"
    start = time.perf_counter()
    simulate(g, x)
    ref_s = time.perf_counter() - start
    cycles_per_step = float(np.mean(board.cycles)) / STEPS
    bound = n + synaptic_events(g, x, target)
    row = {"n": n, "cycles": cycles_per_step, "bound": bound, "ratio": cycles_per_step / bound,
           "us_at_100mhz": cycles_per_step / 100.0, "sim_steps_s": STEPS * BATCH / wall,
           "ref_steps_s": STEPS * BATCH / ref_s, "build_s": build_s}
    if synth:
        start = time.perf_counter()
        util = synthesize(out / "fpga")
        row.update(lut=util.lut, ff=util.ff, bram=util.bram, dsp=util.dsp, synth_s=time.perf_counter() - start,
                   fits=[p for p in PARTS if util.fits(p)])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--no-synth", action="store_true", help="skip Yosys")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fpga-") as tmp:
        for n in args.sizes:
            rows.append(run_case(n, not args.no_synth, Path(tmp)))
            r = rows[-1]
            print(f"N={n}: {r['cycles']:.0f} cycles/step vs lower bound {r['bound']:.0f} ({r['ratio']:.2f}x), "
                  f"{r['us_at_100mhz']:.1f} us/step at 100 MHz; Verilator {r['sim_steps_s']:.0f} steps/s vs "
                  f"reference {r['ref_steps_s']:.0f} steps/s; build {r['build_s']:.1f} s", flush=True)
            if "lut" in r:
                print(f"        Yosys: {r['lut']:,} LUT ({r['lut'] / n:.1f}/neuron), {r['ff']:,} FF, {r['bram']:.1f} "
                      f"BRAM ({r['bram'] / n:.3f}/neuron), {r['dsp']} DSP; fits {', '.join(r['fits']) or 'none'} "
                      f"({r['synth_s']:.0f} s)", flush=True)
    print("\n| N | cycles/step | lower bound | ratio | us/step @100 MHz | Verilator steps/s | reference steps/s |"
          " LUT | LUT/neuron | BRAM | BRAM/neuron | DSP | fits |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        synth_cols = (f"{r['lut']:,} | {r['lut'] / r['n']:.1f} | {r['bram']:.1f} | {r['bram'] / r['n']:.3f} | "
                      f"{r['dsp']} | {', '.join(r['fits']) or 'none'}") if "lut" in r else "- | - | - | - | - | -"
        print(f"| {r['n']} | {r['cycles']:,.0f} | {r['bound']:,.0f} | {r['ratio']:.2f} | {r['us_at_100mhz']:.1f} | "
              f"{r['sim_steps_s']:,.0f} | {r['ref_steps_s']:,.0f} | {synth_cols} |")


if __name__ == "__main__":
    main()
