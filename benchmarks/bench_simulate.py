"""Reference-simulator throughput against a plain per-step numpy loop, measured in the same run.

Network: 4 dense layers of 1024 LIF neurons (1024 inputs), T=100 steps, batch 32, input rate 10%.
Both simulators (float64 and integer) are compared with a straightforward loop over time steps that does
the same arithmetic layer by layer; outputs are asserted identical before any time is reported.

    python benchmarks/bench_simulate.py [--steps 100] [--batch 32] [--neurons 1024] [--repeats 3]

Synaptic events = sum over layers of (input spikes into the layer) x (fan-out of each spike).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nmcompile.ir import fixed
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.simulate import simulate


def build(rng: np.random.Generator, n: int, layers: int, integer: bool) -> tuple[Graph, list[np.ndarray]]:
    g = Graph("bench")
    prev = g.add("input", O.Input(shape=(n,)))
    weights = []
    for k in range(layers):
        if integer:
            w = rng.integers(-40, 60, (n, n))
            proj = O.QLinear(weight=w, sign_mode="mixed", num_weight_bits=8, weight_exp=0, delay=0)
            neuron = O.QNeuron(shape=(n,), du=1024, dv=512, vth=200)
            weights.append(fixed.prepared_weights(w, "mixed", 8))
        else:
            w = rng.normal(0.02, 0.06, (n, n))
            proj = O.Linear(weight=w)
            neuron = O.LIF(shape=(n,), beta=0.9, threshold=1.0, reset_mode="zero")
            weights.append(w)
        fc = g.add(f"fc{k}", proj)
        g.connect(prev, fc)
        prev = g.add(f"lif{k}", neuron)
        g.connect(fc, prev)
    g.connect(prev, g.add("output", O.Output(shape=(n,))))
    g.verify()
    return g, weights


def loop_float(weights: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-step baseline: for each t, for each layer, one matrix-vector product and the LIF update."""
    steps, batch = x.shape[:2]
    v = [np.zeros((batch, w.shape[0])) for w in weights]
    out = np.zeros((steps, batch, weights[-1].shape[0]))
    events = 0
    for t in range(steps):
        s = x[t].astype(np.float64)
        for k, w in enumerate(weights):
            events += int(s.sum()) * w.shape[0]
            h = 0.9 * v[k] + s @ w.T
            s = (h > 1.0).astype(np.float64)
            v[k] = np.where(s > 0, 0.0, h)
        out[t] = s
    return out, events


def loop_integer(weights: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, int]:
    steps, batch = x.shape[:2]
    u = [np.zeros((batch, w.shape[0]), dtype=np.int64) for w in weights]
    v = [np.zeros((batch, w.shape[0]), dtype=np.int64) for w in weights]
    vth = 200 << 6
    out = np.zeros((steps, batch, weights[-1].shape[0]), dtype=np.int64)
    events = 0
    for t in range(steps):
        s = x[t].astype(np.int64)
        for k, w in enumerate(weights):
            events += int(s.sum()) * w.shape[0]
            a = s @ w.T
            u[k] = fixed.wrap_current(fixed.decay(u[k], 1025) + (a << 6))
            vv = fixed.clip_voltage(fixed.decay(v[k], 512) + u[k])
            s = (vv > vth).astype(np.int64)
            v[k] = np.where(s > 0, 0, vv)
        out[t] = s
    return out, events


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--neurons", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = (rng.random((args.steps, args.batch, args.neurons)) < 0.1).astype(np.int8)
    print(f"network: {args.layers} dense layers x {args.neurons} LIF, T={args.steps}, batch={args.batch}, "
          f"input rate 10%, best of {args.repeats}")
    print(f"{'model':<8} {'nmcompile':>12} {'per-step loop':>14} {'ratio':>7}  {'synaptic events/s':>18}  "
          f"{'(loop events/s)':>16}")
    for integer in (False, True):
        graph, weights = build(rng, args.neurons, args.layers, integer)
        t_sim, result = best_time(lambda g=graph: simulate(g, x), args.repeats)
        loop = loop_integer if integer else loop_float
        t_loop, (expected, events) = best_time(lambda w=weights, f=loop: f(w, x), args.repeats)
        if not np.array_equal(result.output, expected):
            raise SystemExit("mismatch between the simulator and the per-step loop")
        name = "integer" if integer else "float64"
        print(f"{name:<8} {t_sim:>11.3f}s {t_loop:>13.3f}s {t_loop / t_sim:>6.1f}x  {events / t_sim:>18.3e}  "
              f"{events / t_loop:>16.3e}")


if __name__ == "__main__":
    main()
