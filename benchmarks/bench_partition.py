"""Partitioning at scale: compile time per pass, cores vs lower bound, traffic vs a naive sequential fill.

Three generated network families, each at growing size (one subprocess per case, so peak memory is its own):

    dense     4 dense LIF layers of width w (w inputs); synapses = 4 w^2
    conv      2x(s x s) input -> 3x3 conv, 16 channels, then two stride-2 3x3 convs (all 16 channels)
    sparse    4 layers of N/4 neurons, each neuron 100 random synapses from the previous layer (CSR)

The peer, measured in the same run, is a naive sequential fill: each layer cut in flat index order into slices of
the largest size that fits a core, one slice per core (the per-population slicing of PACMAN / py-spinnaker2).
Target: loihi2 limits per core (1024 neurons, 4096 in/out axons, 1 Mbit synapse memory) with enough chips.

    python benchmarks/bench_partition.py [--sizes 10000,100000,1000000] [--families dense,conv,sparse]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # this checkout's nmcompile, not an installed one


def dense_mlp(neurons: int):
    from nmcompile.ir import ops as O
    from nmcompile.ir.graph import Graph

    width = max(64, min(4000, neurons // 4))
    rng = np.random.default_rng(0)
    g = Graph("dense")
    prev = g.add("input", O.Input(shape=(width,)))
    for k in range(4):
        fc = g.add(f"fc{k}", O.Linear(weight=rng.normal(0, 0.05, (width, width)).astype(np.float64)))
        g.connect(prev, fc)
        prev = g.add(f"lif{k}", O.LIF(shape=(width,), beta=0.9))
        g.connect(fc, prev)
    g.connect(prev, g.add("output", O.Output(shape=(width,))))
    return g


def conv_stack(neurons: int):
    from nmcompile.ir import ops as O
    from nmcompile.ir.graph import Graph

    c = 16
    size = max(8, int(round(math.sqrt(neurons / (c * (1 + 1 / 4 + 1 / 16)))) / 4) * 4)
    rng = np.random.default_rng(0)
    g = Graph("conv")
    prev = g.add("input", O.Input(shape=(2, size, size)))
    cin, s = 2, size
    for k, stride in enumerate((1, 2, 2)):
        conv = g.add(f"conv{k}", O.Conv2d(weight=rng.normal(0, 0.1, (c, cin, 3, 3)), stride=stride, padding=1))
        g.connect(prev, conv)
        s = (s + 2 - 3) // stride + 1
        prev = g.add(f"lif{k}", O.LIF(shape=(c, s, s), beta=0.9))
        g.connect(conv, prev)
        cin = c
    g.connect(prev, g.add("output", O.Output(shape=(c, s, s))))
    return g


def sparse_random(neurons: int, fan_in: int = 100):
    from nmcompile.ir import ops as O
    from nmcompile.ir.graph import Graph

    n = neurons // 4
    rng = np.random.default_rng(0)
    g = Graph("sparse")
    prev = g.add("input", O.Input(shape=(n,)))
    for k in range(4):
        indices = rng.integers(0, n, size=n * fan_in, dtype=np.int32)
        indices = np.sort(indices.reshape(n, fan_in), axis=1).reshape(-1)
        sp = g.add(f"sp{k}", O.SparseLinear(indptr=np.arange(0, n * fan_in + 1, fan_in, dtype=np.int64),
                                             indices=indices, values=np.full(n * fan_in, 0.05), in_features=n))
        del indices
        g.connect(prev, sp)
        prev = g.add(f"lif{k}", O.LIF(shape=(n,), beta=0.9))
        g.connect(sp, prev)
    g.connect(prev, g.add("output", O.Output(shape=(n,))))
    return g


FAMILIES = {"dense": dense_mlp, "conv": conv_stack, "sparse": sparse_random}


def run_case(family: str, neurons: int) -> dict:
    from nmcompile.passes import PassContext, get_pass
    from nmcompile.passes.partition import layer_costs, naive_fill
    from nmcompile.targets import get_target

    start = time.perf_counter()
    graph = FAMILIES[family](neurons)
    built = time.perf_counter() - start
    target = get_target("loihi2", chips=4096)
    ctx = PassContext(target=target, options={"naive": False})
    times = {}
    for name in ("fold_bn", "fuse_projections", "retime", "partition"):
        start = time.perf_counter()
        graph = get_pass(name).load()(graph, ctx)
        times[name] = time.perf_counter() - start
    mapping = graph.mapping
    start = time.perf_counter()
    costs, projs = layer_costs(graph, target, {})
    naive_cores, naive_traffic, naive_fan_out = naive_fill(costs, projs, {}, target)
    naive_time = time.perf_counter() - start
    total_neurons = sum(int(np.prod(op.shape)) for op in graph.nodes.values() if op.role == "neuron")
    synapses = sum(int(op.values.size) if op.kind == "SparseLinear" else int(np.count_nonzero(op.weight))
                   if op.kind == "Linear" else 0 for op in graph.nodes.values())
    for name, op in graph.nodes.items():
        if op.kind == "Conv2d":
            synapses += sum(p.synapses(tuple((0, d) for d in p.out_shape)) for p in projs.get(
                next(e.dst for e in graph.out_edges(name)), []) if p.name == name)
    return {
        "family": family, "neurons": total_neurons, "synapses": synapses, "build_s": built, "times": times,
        "cores": mapping.cores, "lower_bound": max(mapping.lower_bound.values()), "bound_by": mapping.lower_bound,
        "traffic": mapping.traffic, "naive_cores": naive_cores, "naive_traffic": naive_traffic,
        "naive_feasible": naive_fan_out <= target.fan_out_axons, "max_fan_out": float(mapping.fan_out.max()),
        "naive_s": naive_time, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--families", default="dense,conv,sparse")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        family, neurons = args.case.split(":")
        print(json.dumps(run_case(family, int(neurons))))
        return
    print(f"{'family':<7} {'neurons':>9} {'synapses':>11} {'cores':>6} {'bound':>6} {'naive':>7} "
          f"{'traffic':>10} {'naive traffic':>13} {'ratio':>6} {'partition s':>11} {'passes s':>9} {'peak MB':>8}")
    for family in args.families.split(","):
        seen = set()
        for size in (int(s) for s in args.sizes.split(",")):
            proc = subprocess.run([sys.executable, __file__, "--case", f"{family}:{size}"], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                print(f"{family:<7} {size:>9} failed: {proc.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(proc.stdout)
            if r["neurons"] in seen:
                continue  # the dense family stops growing at 4 x 4000 (a Loihi core takes <= 4096 inputs)
            seen.add(r["neurons"])
            passes = sum(r["times"].values())
            naive = f"{r['naive_cores']}{'' if r['naive_feasible'] else '*'}"
            print(f"{family:<7} {r['neurons']:>9} {r['synapses']:>11} {r['cores']:>6} {r['lower_bound']:>6} "
                  f"{naive:>7} {r['traffic']:>10.0f} {r['naive_traffic']:>13.0f} "
                  f"{r['traffic'] / max(r['naive_traffic'], 1):>6.2f} {r['times']['partition']:>11.2f} "
                  f"{passes:>9.2f} {r['peak_mb']:>8.0f}", flush=True)
    print("* the naive fill exceeds the 4096 output axons of a core (it ignores fan-out); nmcompile re-tiles to fit")


if __name__ == "__main__":
    main()
