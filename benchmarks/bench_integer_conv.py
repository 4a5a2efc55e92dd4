"""The integer reference on an N-MNIST-sized quantized conv net: the compiled engine against the numpy engine.

Network (the float conv net of bench_simulate.py, as integer ops): 2x34x34 spikes (rate 10 %) -> QConv 12 5x5 ->
QNeuron 12x30x30 -> QConv 32 5x5 stride 2 -> QNeuron 32x13x13 -> QLinear 10 -> QNeuron 10, T = 100. This is how a
user evaluates a network quantized for Loihi 2 on a test set before any board. The two engines' outputs must be
identical before any time is reported. The compiled engine runs each convolution exactly in float32 (every partial
sum is an integer below 2^24) through the event-driven scatter or torch's kernels, whichever the cost model expects
to be faster, and skips the 24-bit wrap and the exponent shift where they are provably the identity; the numpy
engine runs numpy sliding windows. Each time is the best of --repeats runs, printed with its physical bound
(benchmarks/physical_bound.py at the float32 add rate: the convolutions' adds are float32), and `--nodes` adds the
compiled run's wall time per node.

    python benchmarks/bench_integer_conv.py [--steps 100] [--repeats 3] [--nodes]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import physical_bound
from bench_simulate import WHOLE_RUN, best_time, node_times

from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import Simulator


def network(rng: np.random.Generator) -> Graph:
    g = Graph("integer-conv")
    layers = [
        ("conv1", O.QConv(weight=rng.integers(-60, 61, (12, 2, 5, 5)))),
        ("lif1", O.QNeuron(shape=(12, 30, 30), du=4095, dv=410, vth=300)),
        ("conv2", O.QConv(weight=rng.integers(-60, 61, (32, 12, 5, 5)), stride=(2, 2))),
        ("lif2", O.QNeuron(shape=(32, 13, 13), du=4095, dv=410, vth=300)),
        ("flat", O.Flatten()),
        ("fc", O.QLinear(weight=rng.integers(-60, 61, (10, 32 * 13 * 13)))),
        ("lif3", O.QNeuron(shape=(10,), du=4095, dv=410, vth=300)),
        ("output", O.Output(shape=(10,))),
    ]
    g.add("input", O.Input(shape=(2, 34, 34)))
    for name, op in layers:
        g.add(name, op)
    g.chain("input", *(name for name, _ in layers))
    g.verify()
    return g


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nodes", action="store_true", help="also the compiled run's wall time per node")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    graph = network(rng)
    rate, cores = physical_bound.add_rate()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(physical_bound.describe(rate, cores))
    print(f"{'batch':>5} {'compiled':>10} {'numpy':>10} {'ratio':>6} {'bound':>9} {'x bound':>8} {'out spikes':>10}")
    for batch in (1, 32):
        x = (rng.random((args.steps, batch, 2, 34, 34)) < 0.1).astype(np.int64)
        compiled, numpy_engine = Simulator(graph), Simulator(graph, engine="numpy")
        compiled.run(x[:2])                                    # numba compilation, not timed
        t_compiled, ours = best_time(lambda s=compiled, x=x: s.run(x).output, args.repeats)
        t_numpy, theirs = best_time(lambda s=numpy_engine, x=x: s.run(x).output, 1)   # slow: once
        if not np.array_equal(ours, theirs):
            raise SystemExit(f"batch {batch}: the compiled and numpy engines' spikes differ")
        bound = physical_bound.work(graph, Simulator(graph).run(x, record=True).values).bound_seconds(rate, cores)
        print(f"{batch:>5} {t_compiled:>9.4f}s {t_numpy:>9.4f}s {t_numpy / t_compiled:>5.1f}x {bound * 1e3:>7.2f}ms "
              f"{t_compiled / bound:>7.1f}x {int(np.count_nonzero(ours)):>10}")
        if args.nodes:
            times = node_times(compiled, x, args.repeats)
            print("    compiled, per node (best of --repeats, wall): " + "  ".join(
                f"{node} {seconds * 1e3:.1f}ms" for node, seconds in times.items()
                if seconds >= 1e-4 and node != WHOLE_RUN) + f"  whole run {times[WHOLE_RUN] * 1e3:.1f}ms")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
