"""The FPGA emulator as N grows: clock cycles per time step against the design's lower bound, Verilator
simulation speed against nmcompile's reference simulator on the same network, and Yosys LUT/BRAM per neuron.

Network per N: 64 input channels (rate 10 %) fanning out to N LIF neurons that are connected all-to-all
(a recurrent edge into a delay-1 projection: two steps), T = 50 steps, 2 samples. Output spikes are checked equal
to the reference before any number is printed. Lower bound per step = N neuron updates + synaptic events (every
spike delivered to every neuron of its projection), at the design's peak of one neuron update or one synaptic event
per clock cycle.

The N-MNIST rows (one per `--nmnist` case, PART or PART:ENGINES): the snnTorch tutorial's N-MNIST network with the
pools after the neurons (tests/backends/nmnist.py: 14,682 neurons, convolutions stored as kernels), compiled from its
checkpoint for the part (engines chosen for it unless given), one sample of T = 20 steps at 10 % input activity,
checked equal to the reference; the lower bound is the busiest engine's neuron updates + synaptic events per step,
a synaptic event being one spike delivered to one neuron it reaches (the convolution's real fan-out, not a dense
block).

    python benchmarks/bench_fpga.py [--sizes 64 256 1024] [--no-synth] [--nmnist xc7a100t xc7a100t:1]
"""

from __future__ import annotations

import argparse
import json
import sys
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
from nmcompile.runtime.hil import verify_artifact
from nmcompile.runtime.verilator_build import build_model
from nmcompile.targets import get_target

INPUTS, STEPS, BATCH, RATE = 64, 50, 2, 0.1
NMNIST_STEPS = 20
ROOT = Path(__file__).resolve().parents[1]


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


def nmnist_bound(art, x: np.ndarray, layout: dict) -> float:
    """The design's lower bound per step: the busiest engine's neuron updates (every engine updates as many as the
    fullest) + the synaptic events into its neurons: every spike delivered within the run times the synapses it
    reaches (a conv's fan-out per source position, a dense block's destinations), shared among the pieces of the
    destination layer in proportion to their size (exact: pieces are whole channels or block columns)."""
    from nmcompile.backends.fpga.storage import ConvGeometry

    view = lower_network(art.graph)
    values = simulate(art.graph, x, record=True).values
    steps, engines = x.shape[0], layout["design"]["engines"]
    events = np.zeros(engines)
    used = np.zeros(engines)
    for layer in layout["layers"].values():
        for piece in layer["pieces"]:
            used[piece["engine"]] += piece["size"]
    for p in view.projections:
        if p.source in view.constants:
            spikes = np.ones((steps, view.constants[p.source].size))
        else:
            spikes = values[p.source].reshape(steps, -1)
        fan_out = (ConvGeometry.of(p.weights).fan_out() if p.form == "conv"
                   else np.full(spikes.shape[1], p.weights.shape[0]))
        total = float(spikes[: max(steps - p.uniform_delay(), 0)].sum(axis=0) @ fan_out)
        layer = layout["layers"][p.dest]
        for piece in layer["pieces"]:
            events[piece["engine"]] += total * piece["size"] / layer["size"]
    return float(used.max() + events.max() / steps)


def run_nmnist(case: str, synth: bool, work: Path) -> dict:
    """case: PART (engines chosen for it) or PART:ENGINES."""
    import resource

    import torch

    from nmcompile.api import CompileRequest, SourceOptions, compile_network

    sys.path.insert(0, str(ROOT))                 # the model factory lives in tests/backends/nmnist.py
    from tests.backends import nmnist

    part, _, engines = case.partition(":")
    options = {"fpga_part": part, **({"fpga_engines": engines} if engines else {})}
    torch.save(nmnist.subtract().state_dict(), work / "nmnist.pt")
    rng = np.random.default_rng(0)
    x = (rng.random((NMNIST_STEPS, 1, 2 * 34 * 34)) < RATE).astype(np.int64)
    np.savez(work / "calib.npz", spikes=x)
    start = time.perf_counter()
    out = work / f"nmnist-{part}-{engines or 'auto'}"
    art = compile_network(CompileRequest(source=work / "nmnist.pt", target="fpga", out=out,
                                         options=SourceOptions(model="tests.backends.nmnist:subtract",
                                                               input_shape=nmnist.INPUT_SHAPE),
                                         calibration_spikes=work / "calib.npz", reference_samples=1,
                                         backend_options=options), log=lambda m: None)
    compile_s = time.perf_counter() - start
    layout = json.loads((art.path / "fpga" / "layout.json").read_text())
    inputs, _ = art.reference()
    board = VerilatorBoard(program=False)
    start = time.perf_counter()
    result = verify_artifact(art.path, "verilator://?program=0", board=board)   # T + latency steps
    wall = time.perf_counter() - start
    board.close()
    assert result.passed, "N-MNIST: RTL differs from the reference\n" + "\n".join(result.lines())
    steps = inputs.shape[0] + art.latency
    cycles = float(np.mean(board.cycles)) / steps
    padded = np.concatenate([inputs, np.zeros((art.latency, *inputs.shape[1:]), dtype=inputs.dtype)])
    bound = nmnist_bound(art, padded.reshape(steps, 1, *nmnist.INPUT_SHAPE), layout)
    row = {"n": f"N-MNIST, {part}, {layout['design']['engines']} engine(s)", "neurons": layout["used"]["neurons"],
           "cycles": cycles, "bound": bound, "ratio": cycles / bound, "us_at_100mhz": cycles / 100.0,
           "sim_steps_s": steps / wall, "compile_s": compile_s,
           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ref_steps_s": float("nan")}
    if synth:
        start = time.perf_counter()
        util = synthesize(art.path / "fpga")
        row.update(lut=util.lut, ff=util.ff, bram=util.bram, dsp=util.dsp, synth_s=time.perf_counter() - start,
                   fits=[p for p in PARTS if util.fits(p)])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 256, 1024])
    parser.add_argument("--no-synth", action="store_true", help="skip Yosys")
    parser.add_argument("--nmnist", nargs="*", default=["xc7a100t", "xc7a100t:1"],
                        help="N-MNIST cases, PART or PART:ENGINES (none: skip it)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fpga-") as tmp:
        for case in args.nmnist:
            r = run_nmnist(case, not args.no_synth, Path(tmp))
            print(f"{r['n']} ({r['neurons']:,} neurons): {r['cycles']:,.0f} cycles/step vs lower bound "
                  f"{r['bound']:,.0f} ({r['ratio']:.2f}x), {r['us_at_100mhz']:,.1f} us/step at 100 MHz = "
                  f"{1e6 / r['us_at_100mhz']:,.0f} steps/s; Verilator {r['sim_steps_s']:.1f} steps/s; compile "
                  f"{r['compile_s']:.1f} s", flush=True)
            if "lut" in r:
                print(f"        Yosys: {r['lut']:,} LUT, {r['ff']:,} FF, {r['bram']:.1f} BRAM, {r['dsp']} DSP; fits "
                      f"{', '.join(r['fits']) or 'none'} ({r['synth_s']:.0f} s)", flush=True)
            rows.append(r)
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
        n = r.get("neurons", r["n"])
        synth_cols = (f"{r['lut']:,} | {r['lut'] / n:.1f} | {r['bram']:.1f} | {r['bram'] / n:.3f} | "
                      f"{r['dsp']} | {', '.join(r['fits']) or 'none'}") if "lut" in r else "- | - | - | - | - | -"
        print(f"| {r['n']} | {r['cycles']:,.0f} | {r['bound']:,.0f} | {r['ratio']:.2f} | {r['us_at_100mhz']:.1f} | "
              f"{r['sim_steps_s']:,.0f} | {r['ref_steps_s']:,.0f} | {synth_cols} |")


if __name__ == "__main__":
    main()
