"""nmcompile's integer reference against Lava 0.10's fixed_pt simulator on the same network, in the same run.

Network: an input of 1000 spike sources (rate 10%) -> 3 x (Dense 1000x1000 -> LIF 1000), T = 200 steps. The
network is written as a loihi2 artifact, run in Lava (one sample; the time per step excludes compilation and the
first step, as Lava measures it) and in nmcompile's reference (one sample, and a batch of 32 in one call; the
compiled engine after a warm-up run, so numba's compilation is not counted, and the numpy engine for comparison).
With the compiled engine the three Dense -> LIF pairs run as one fused chain (nmcompile/ir/chain.py: one compiled
call per chunk of steps, samples split over threads, spikes between layers kept as int8 rows and lists of active
inputs); that fused path is what the "compiled" rows measure, and the benchmark stops if the chain is not formed;
the output spikes must be identical before any time is reported. "compiled int8" is the same run with the input
spikes given as int8 and `Simulator(..., spike_dtype="int8")`: the chain reads and writes one byte per spike instead
of int64 values (at batch 32 the int64 input and output are 51 MB each per run, whose reading and first-touch writing
cost about 1 us per sample-step). Each nmcompile time is the best of --repeats runs
and is printed next to its physical bound (benchmarks/physical_bound.py: synaptic events + neuron updates over the
machine's measured add rate: the rate of int8 weights added into int16 registers, the integer product's inner loop,
which is several times the float32 load-add-store rate the float benchmarks use; both are printed).

    python benchmarks/bench_lava.py [--neurons 1000] [--steps 200] [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import physical_bound

from nmcompile import artifact
from nmcompile.backends.loihi.emit import emit
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator
from nmcompile.lowered import lower_network
from nmcompile.runtime.lava_board import LavaBoard
from nmcompile.targets import get_target


def network(n: int, rng: np.random.Generator) -> Graph:
    g = Graph("bench")
    prev = g.add("input", O.Input(shape=(n,)))
    for k in range(3):
        weight = rng.integers(-40, 41, (n, n)) * 2  # even: exact in Lava's MIXED 8-bit format
        proj = g.add(f"dense{k}", O.QLinear(weight=weight, weight_exp=0, num_weight_bits=8, sign_mode="mixed"))
        g.connect(prev, proj)
        prev = g.add(f"lif{k}", O.QNeuron(shape=(n,), du=4095, dv=410, vth=600))
        g.connect(proj, prev)
    g.connect(prev, g.add("output", O.Output(shape=(n,))))
    g.latency = 3
    g.verify()
    return g


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    graph = network(args.neurons, rng)
    x = (rng.random((args.steps, args.batch, args.neurons)) < 0.1).astype(np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench-loihi2"
        files = emit(lower_network(graph), get_target("loihi2"), {}, print).files
        artifact.write(out, graph=graph, target="loihi2", source=Path("bench"), pipeline=[], inputs=x[:5, :1],
                       report="benchmark\n", files=files)
        board = LavaBoard()
        board.load(out)
        start = time.perf_counter()
        lava_out = board.run_all(x[:, :1])["output"]
        lava_wall = time.perf_counter() - start
        lava_step = float(board.seconds_per_step[0])
    float_rate, _ = physical_bound.add_rate()
    rate, cores = physical_bound.int16_add_rate()
    rows = []
    x_int8 = x.astype(np.int8)
    for engine, spikes in (("compiled", "int64"), ("compiled", "int8"), ("numpy", "int64")):
        sim = Simulator(graph, engine=engine, spike_dtype=spikes)  # like Lava's compile: kernels prepared once
        if engine == "compiled" and [c.followers[-1] for c in sim._chains().values()] != ["lif2"]:
            raise SystemExit("the compiled engine did not fuse dense0 .. lif2 into one chain")
        given = x_int8 if spikes == "int8" else x
        sim.run(given[:2, :1])                   # and compiled (numba) before timing
        single, ours_single = best_time(lambda s=sim, g=given: s.run(g[:, :1]).output, args.repeats)
        batched, ours_batch = best_time(lambda s=sim, g=given: s.run(g).output, args.repeats)
        if not np.array_equal(lava_out, ours_single) or not np.array_equal(ours_batch[:, :1], ours_single):
            raise SystemExit(f"spikes differ between Lava and the reference ({engine} engine, {spikes} spikes)")
        rows.append((f"{engine} {spikes}", single / args.steps, batched / args.steps / args.batch))
    bound_single = physical_bound.work(graph, Simulator(graph).run(x[:, :1], record=True).values)
    bound_batch = physical_bound.work(graph, Simulator(graph).run(x, record=True).values)
    spikes = int(np.count_nonzero(lava_out))
    print(f"network: 3 x (Dense {args.neurons}x{args.neurons} -> LIF {args.neurons}), T={args.steps}, input rate 10%, "
          f"{spikes} output spikes identical in Lava and nmcompile; best of {args.repeats}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(physical_bound.describe(rate, cores, "int16 (int8 weights into registers)") + "; the bound below uses it")
    print(physical_bound.describe(float_rate, cores) + " (a load-add-store loop: the float benchmarks' rate)")
    print(f"Lava 0.10 fixed_pt, 1 sample: {1e3 * lava_step:8.3f} ms/step (run incl. start-up {lava_wall:.1f} s)")
    per_step = {"1 sample": bound_single.bound_seconds(rate, cores) / args.steps,
                f"batch {args.batch}": bound_batch.bound_seconds(rate, cores) / args.steps / args.batch}
    for engine, single, batched in rows:
        for label, value in (("1 sample", single), (f"batch {args.batch}", batched)):
            unit = "ms/step" if label == "1 sample" else "ms/sample-step"
            print(f"nmcompile {engine:<14} {label:<9} {1e3 * value:8.4f} {unit:<14} -> {lava_step / value:7.1f}x Lava;"
                  f" bound {1e3 * per_step[label]:.4f} ms ({value / per_step[label]:.1f}x the bound)")
    print(f"work per sample-step: {bound_batch.synaptic_events / args.steps / args.batch:,.0f} synaptic events, "
          f"{bound_batch.neuron_updates / args.steps / args.batch:,.0f} neuron updates")


def best_time(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


if __name__ == "__main__":
    main()
