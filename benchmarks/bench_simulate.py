"""Reference-simulator throughput against peers measured in the same run.

1. `loop`: 4 dense layers of 1024 LIF neurons (1024 inputs), T=100 steps, batch 32, input rate 10%, float64 and
   integer, against a plain per-step numpy loop doing the same arithmetic; outputs asserted identical.
2. `snntorch`: the float model against the source framework's own forward (snnTorch, the same weights, CPU, torch
   limited to 2 threads) on the digits example (64 -> 64 LIF -> 10 LIF, T=25) and on an N-MNIST-sized conv net
   (2x34x34 -> conv 12@5x5 -> LIF -> conv 32@5x5/2 -> LIF -> dense 10 -> LIF, 16,218 neurons, T=100, input rate
   10%), batch 1 and 128. float64 output spikes are asserted identical to snnTorch run in float64; float32 ones
   are compared and differing spikes counted (summation order may differ: docs/semantics.md).
3. `convolution`: the event-driven float32 convolution (nmcompile.ir.float_events) against torch's, both on one
   thread, over input densities, with the form the cost model (float_events.EventConvolution.costs) chooses.
4. `recurrent`: a recurrent LIF layer (1000 inputs -> 1000 LIF with a dense 1000 x 1000 feedback projection, input
   rate 10%, T=1000, batch 1 and 32). Integer: the compiled recurrent loop (nmcompile.ir.recurrent) against the numpy
   engine's step loop, outputs asserted identical, with the bound at the int16 add rate. Float: snnTorch's RLeaky
   forward (the same weights) against the float32 model (its compiled loop, nmcompile.ir.recurrent_float) and the
   numpy engine's float32 step loop, differing spikes counted against both.
5. `linear`: the float32 Linear product (nmcompile.ir.linear_sums) against torch's `linear`, both on one thread,
   on the digits MLP's two layers (their recorded inputs at batch 128) and on random inputs (spikes and graded values,
   small and large layers): its events form, its dense form (the same bits, asserted) and the one it chooses per
   block of rows, with the outputs that differ from torch's counted.
6. `memory`: peak RSS of a run of the digits example for T = 1k, 10k, 100k (each in its own process).
7. `jit`: the one-off cost of compiling the numba kernels into an empty cache, and of loading them from it.

Every timed figure is the best of `--repeats` runs after a warm-up run (compilation is never counted; in `snntorch`
and `recurrent`, snnTorch and nmcompile's float32 run in turn, round by round, each timed run right after an
untimed one of its own: `best_times_in_turn`), and is printed next to its physical bound: (synaptic events +
neuron updates) / the machine's add rate, where synaptic events count each nonzero input once per synapse it reaches
and the add rate is measured here (a compiled float32 add loop over L1-resident data, per core, times the cores).

    python benchmarks/bench_simulate.py [--sections loop,snntorch,convolution,recurrent,linear,memory,jit] [--repeats 3]
                                        [--nodes] [--batches 1,128]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import physical_bound

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


def best_thread_time(repeats: int, fn) -> float:
    """The best CPU time of the calling thread over `repeats` runs of fn, after one untimed run."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def best_time(fn, repeats: int) -> tuple[float, object]:
    """(best wall time of `repeats` consecutive runs of fn, its last result)."""
    return best_times_in_turn([fn], repeats, untimed_first=False)[0]


def best_times_in_turn(fns, repeats: int, untimed_first: bool = True) -> list[tuple[float, object]]:
    """(best wall time, last result) of each of `fns`, run in turn round by round (`repeats` rounds), so a slower
    minute of a shared machine (benchmarks/README.md: two vCPUs whose speed changes over minutes) falls on both sides
    of a ratio rather than on one. With `untimed_first` each function runs once untimed in its turn first: the first
    run after another workload is a cold one (the digits MLP at batch 1: 0.9-1.4 ms, then 0.3-0.4 ms), and the timed
    run measures the warm one, as consecutive repeats do."""
    best, results = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if untimed_first:
                fn()
            start = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return list(zip(best, results, strict=True))


def section_loop(args, rate: float, cores: int) -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((args.steps, args.batch, args.neurons)) < 0.1).astype(np.int8)
    print(f"\n[loop] {args.layers} dense layers x {args.neurons} LIF, T={args.steps}, batch={args.batch}, "
          f"input rate 10%, best of {args.repeats}")
    print(f"{'model':<8} {'nmcompile':>10} {'per-step loop':>14} {'ratio':>7}  {'events/s':>9}  {'bound':>9}  "
          f"{'x bound':>7}")
    for integer in (False, True):
        graph, weights = build(rng, args.neurons, args.layers, integer)
        simulate(graph, x[:2])
        t_sim, result = best_time(lambda g=graph: simulate(g, x), args.repeats)
        loop = loop_integer if integer else loop_float
        t_loop, (expected, events) = best_time(lambda w=weights, f=loop: f(w, x), args.repeats)
        if not np.array_equal(result.output, expected):
            raise SystemExit("mismatch between the simulator and the per-step loop")
        bound = physical_bound.work(graph, simulate(graph, x, record=True).values).bound_seconds(rate, cores)
        name = "integer" if integer else "float64"
        print(f"{name:<8} {t_sim:>9.3f}s {t_loop:>13.3f}s {t_loop / t_sim:>6.1f}x  {events / t_sim:>9.2e}  "
              f"{bound * 1e3:>7.2f}ms  {t_sim / bound:>6.1f}x")


# -- the float model against snnTorch's own forward ------------------------------------------------------------
DIGITS = Path(__file__).resolve().parent.parent / "examples" / "digits"


def digits_case(batch: int):
    import importlib.util

    from nmcompile.api import SourceOptions, load_source

    spec = importlib.util.spec_from_file_location("digits_model", DIGITS / "model.py")
    digits_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(digits_model)
    encode, load_digits_split = digits_model.encode, digits_model.load_digits_split
    source = load_source(DIGITS / "digits.pt", SourceOptions(model=f"{DIGITS / 'model.py'}:make_model"))
    _, x_test, _, _ = load_digits_split()
    reps = -(-batch // len(x_test))
    x = encode(np.concatenate([x_test] * reps)[:batch]).astype(np.float32)
    return "digits MLP (64-64-10, T=25)", source.model, source.trace, source.graph, x


def nmnist_model():
    import snntorch as snn
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 12, 5), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"),
        nn.Conv2d(12, 32, 5, stride=2), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"),
        nn.Flatten(), nn.Linear(32 * 13 * 13, 10), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"))
    with torch.no_grad():
        for layer in model:
            if hasattr(layer, "weight"):
                layer.weight.mul_(4.0)          # enough drive that every layer spikes
    return model


def nmnist_case(batch: int, steps: int = 100):
    from nmcompile.frontend.trace import graph_from_module

    model = nmnist_model()
    graph, trace = graph_from_module(model, (2, 34, 34))
    rng = np.random.default_rng(1)
    x = (rng.random((steps, batch, 2, 34, 34)) < 0.1).astype(np.float32)
    return f"N-MNIST-sized conv net (2x34x34, 16,218 LIF, T={steps})", model, trace, graph, x


def section_snntorch(args, rate: float, cores: int) -> None:
    import torch

    from nmcompile.frontend.check import float64_model, torch_forward
    from nmcompile.ir.simulate import Simulator

    torch.set_num_threads(2)
    print(f"\n[snntorch] float model vs snnTorch {__import__('snntorch').__version__} forward, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), best of {args.repeats}")
    print(f"{'network':<46} {'batch':>5} {'snnTorch f32':>12} {'nmc f32':>9} {'ratio':>6} {'nmc f64':>9} "
          f"{'ratio':>6} {'f32 flips':>9} {'bound':>9} {'f32 x bound':>11}")
    for case in (digits_case, nmnist_case):
        for batch in args.batches:
            name, model, trace, graph, x = case(batch)
            sim32, sim64 = Simulator(graph, "float32"), Simulator(graph, "float64")
            sim32.run(x[:2]), sim64.run(x[:2])
            (t_torch, theirs), (t32, ours32) = best_times_in_turn(
                [lambda m=model, t=trace, x=x: torch_forward(m, t, x), lambda s=sim32, x=x: s.run(x).output],
                args.repeats)
            t64, ours64 = best_time(lambda s=sim64, x=x: s.run(x).output, 1)   # numpy convolutions: slow, once
            with float64_model(model) as m64:
                theirs64 = torch_forward(m64, trace, x.astype(np.float64))
            if not np.array_equal(ours64, theirs64.reshape(ours64.shape)):
                raise SystemExit(f"{name}: float64 spikes differ from snnTorch in float64")
            flips = int(np.count_nonzero(ours32 != theirs.reshape(ours32.shape)))
            values = Simulator(graph, "float32").run(x, record=True).values
            bound = physical_bound.work(graph, values).bound_seconds(rate, cores)
            print(f"{name:<46} {batch:>5} {t_torch:>11.4f}s {t32:>8.4f}s {t_torch / t32:>5.1f}x {t64:>8.4f}s "
                  f"{t_torch / t64:>5.1f}x {flips:>9} {bound * 1e3:>7.3f}ms {t32 / bound:>10.1f}x")
            if args.nodes:
                for title, times in (("best of --repeats, wall", node_times(sim32, x, args.repeats)),
                                     ("one thread, CPU, best of 5 x --repeats",
                                      one_thread_cpu_times(sim32, x, 5 * args.repeats))):
                    print(f"    float32 per node ({title}): " + "  ".join(
                        f"{node} {graph.node(node).kind if node in graph.nodes else 'fused chain'} "
                        f"{seconds * 1e3:.2f}ms" for node, seconds in times.items()
                        if seconds >= 1e-4 and node != WHOLE_RUN) + f"  whole run {times[WHOLE_RUN] * 1e3:.2f}ms")


WHOLE_RUN = ("whole run",)      # node_times' key of the whole run (no node name)


def node_times(sim, x: np.ndarray, repeats: int, clock=time.perf_counter) -> dict[str, float]:
    """Seconds of `clock` (wall by default) each node's kernel, or fused chain (keyed "first..last", ir/chain.py and
    ir/float_chain.py), spends in a run of `sim` over x (summed over the run's chunks), the best of `repeats` runs per
    node: where a run's time goes; WHOLE_RUN is the whole run's best."""
    kernels = sim._kernels()
    chains = {f"{chain.head}..{chain.last}": chain for chain in sim._chains().values()}
    spent: dict[str, float] = {}
    originals = {name: kernel.run_chunk for name, kernel in kernels.items()}

    def timed_chain(name: str, run):
        def chain_run(*args):
            start = clock()
            result = run(*args)
            spent[name] = spent.get(name, 0.0) + clock() - start
            return result
        return chain_run

    def timed(name: str, run_chunk):
        def run(values, record=False):
            start = clock()
            result = run_chunk(values, record)
            spent[name] = spent.get(name, 0.0) + clock() - start
            return result
        return run

    best: dict[str, float] = {}
    try:
        for name, kernel in kernels.items():
            kernel.run_chunk = timed(name, originals[name])
        for name, chain in chains.items():
            chain.run = timed_chain(name, chain.run)
        for _ in range(repeats):
            spent.clear()
            start = clock()
            sim.run(x)
            spent[WHOLE_RUN] = clock() - start
            for name, seconds in spent.items():
                best[name] = min(best.get(name, float("inf")), seconds)
    finally:
        for kernel in kernels.values():
            del kernel.run_chunk             # the class's method again
        for chain in chains.values():
            del chain.run
    return best


@contextlib.contextmanager
def loops_on_calling_thread():
    """nmcompile's compiled loops on the calling thread only (OMP_NUM_THREADS=1 for jit.worker_threads), restored
    afterwards."""
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = threads


def one_thread_cpu_times(sim, x: np.ndarray, repeats: int) -> dict[str, float]:
    """`node_times` in CPU seconds of the calling thread with every loop on it (`loops_on_calling_thread`; torch
    runs on the calling thread anyway): the work of a run, which other jobs on the machine disturb far less than its
    wall time."""
    with loops_on_calling_thread():
        return node_times(sim, x, repeats, time.thread_time)


# -- recurrent layers: the compiled recurrent loop against the step loop and snnTorch's RLeaky ---------------------
RECURRENT_SIZE, RECURRENT_STEPS = 1000, 1000


def recurrent_integer_graph(rng: np.random.Generator, n: int) -> Graph:
    """Input (n) -> QLinear -> n QNeuron with a dense n x n QLinear fed back through a recurrent edge -> Output."""
    g = Graph("recurrent")
    g.add("input", O.Input(shape=(n,)))
    g.add("fc", O.QLinear(weight=rng.integers(-40, 60, (n, n)), delay=0))
    g.add("lif", O.QNeuron(shape=(n,), du=1024, dv=512, vth=400))
    g.add("rec", O.QLinear(weight=rng.integers(-60, 50, (n, n)), delay=0))
    g.add("output", O.Output(shape=(n,)))
    g.chain("input", "fc", "lif", "output")
    g.connect("lif", "rec", recurrent=True)
    g.connect("rec", "lif")
    g.verify()
    return g


def recurrent_snntorch_model(n: int):
    import snntorch as snn
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(n, n), snn.RLeaky(beta=0.9, linear_features=n, init_hidden=True,
                                                       reset_mechanism="zero"))
    with torch.no_grad():
        model[0].weight.mul_(4.0)                 # enough drive that the layer spikes
    return model


def section_recurrent(args) -> None:
    import torch

    from nmcompile.frontend.check import torch_forward
    from nmcompile.frontend.trace import graph_from_module
    from nmcompile.ir.simulate import Simulator

    torch.set_num_threads(2)
    n, steps = RECURRENT_SIZE, RECURRENT_STEPS
    rate16, cores = physical_bound.int16_add_rate()
    rng = np.random.default_rng(2)
    print(f"\n[recurrent] {n} inputs -> {n} LIF with a dense {n} x {n} recurrent projection, T={steps}, input rate "
          f"10%; numpy engine (step loop) once, the rest best of {args.repeats}; "
          f"{physical_bound.describe(rate16, cores, 'int16')}")
    print(f"{'model':<8} {'batch':>5} {'compiled':>9} {'numpy':>9} {'ratio':>6} {'out rate':>8} {'bound':>9} "
          f"{'x bound':>7}")
    graph = recurrent_integer_graph(rng, n)
    for batch in (1, 32):
        x = (rng.random((steps, batch, n)) < 0.1).astype(np.int64)
        compiled, numpy_engine = Simulator(graph), Simulator(graph, engine="numpy")
        compiled.run(x[:2])
        t_compiled, ours = best_time(lambda s=compiled, x=x: s.run(x).output, args.repeats)
        t_numpy, reference = best_time(lambda s=numpy_engine, x=x: s.run(x).output, 1)
        if not np.array_equal(ours, reference):
            raise SystemExit("recurrent: the compiled loop differs from the numpy engine")
        bound = physical_bound.work(graph, Simulator(graph).run(x, record=True).values).bound_seconds(rate16, cores)
        print(f"{'integer':<8} {batch:>5} {t_compiled:>8.3f}s {t_numpy:>8.3f}s {t_numpy / t_compiled:>5.1f}x "
              f"{ours.mean():>8.3f} {bound * 1e3:>7.2f}ms {t_compiled / bound:>6.1f}x")
    model = recurrent_snntorch_model(n)
    graph, trace = graph_from_module(model, (n,))
    print(f"{'model':<8} {'batch':>5} {'snnTorch':>9} {'nmc f32':>9} {'ratio':>6} {'out rate':>8} {'flips':>9} "
          f"{'step loop':>9} {'ratio':>6} {'flips':>6}")
    for batch in (1, 32):
        x = (rng.random((steps, batch, n)) < 0.1).astype(np.float32)
        sim = Simulator(graph, "float32")
        sim.run(x[:2])
        (t_torch, theirs), (t32, ours) = best_times_in_turn(
            [lambda x=x: torch_forward(model, trace, x), lambda s=sim, x=x: s.run(x).output], args.repeats)
        # the step loop: the numpy engine (numpy's sgemm per step), once
        t_step, stepwise = best_time(lambda x=x: Simulator(graph, "float32", engine="numpy").run(x).output, 1)
        flips = int(np.count_nonzero(ours != theirs.reshape(ours.shape)))
        step_flips = int(np.count_nonzero(ours != stepwise))
        print(f"{'float32':<8} {batch:>5} {t_torch:>8.3f}s {t32:>8.3f}s {t_torch / t32:>5.1f}x {ours.mean():>8.3f} "
              f"{flips:>9} {t_step:>8.3f}s {t_step / t32:>5.1f}x {step_flips:>6}")


# -- event-driven against dense float32 convolution ------------------------------------------------------------
CONV_LAYERS = (("conv 2->12, 5x5 on 34x34", 2, 12, 5, 1, 34), ("conv 12->32, 5x5/2 on 30x30", 12, 32, 5, 2, 30),
               ("conv 16->32, 3x3 on 32x32", 16, 32, 3, 1, 32))


@loops_on_calling_thread()
def section_convolution(args) -> None:
    """nmcompile.ir.float_events.EventConvolution against torch's float32 convolution, both on one thread (CPU time
    of the calling thread, best of `--repeats` x 5), 48 rows of random spikes per call, over input densities: the
    measurements the cost model's constants (float_events.EVENT_VECTOR_NS, ...) come from, and the form it
    chooses ("model": estimated scatter / torch time)."""
    import torch
    import torch.nn.functional as F

    from nmcompile.ir.arraymath import count_nonzero_bits, one_torch_thread
    from nmcompile.ir.float_events import EventConvolution

    rng = np.random.default_rng(2)
    print("\n[convolution] event-driven float32 convolution vs torch's, one thread each, 48 rows of spikes per call, "
          f"best of {args.repeats * 5} (thread CPU time)")
    print(f"{'layer':<30} {'density':>7} {'events':>9} {'torch':>9} {'torch/events':>12} {'model':>6} {'chosen':>7}")
    for name, c_in, c_out, kernel, stride, size in CONV_LAYERS:
        weight = rng.normal(0, 0.3, (c_out, c_in, kernel, kernel)).astype(np.float32)
        events = EventConvolution(weight, (stride, stride), (0, 0), (1, 1), None)
        for density in (0.005, 0.01, 0.02, 0.05, 0.1):
            x = (rng.random((48, c_in, size, size)) < density).astype(np.float32)
            scatter, dense = events.costs(x, count_nonzero_bits(x))
            t_events = best_thread_time(args.repeats * 5, lambda e=events, x=x: e(x))
            with one_torch_thread(), torch.no_grad():
                tx, tw = torch.from_numpy(x), torch.from_numpy(weight)
                t_torch = best_thread_time(args.repeats * 5, lambda tx=tx, tw=tw, s=stride: F.conv2d(tx, tw, None, s))
            chosen = "events" if scatter <= dense else "torch"
            print(f"{name:<30} {density:>7.3f} {t_events * 1e3:>7.3f}ms {t_torch * 1e3:>7.3f}ms "
                  f"{t_torch / t_events:>11.2f}x {scatter / dense:>6.2f} {chosen:>7}")


@loops_on_calling_thread()
def section_linear(args) -> None:
    """nmcompile.ir.linear_sums.LinearSums against torch's float32 `linear`, both on one thread (CPU time of the
    calling thread, best of `--repeats` x 5): the events form, the dense form and the chosen one ("auto"); the
    events and dense forms are asserted bit-identical, and the outputs that differ from torch's are counted."""
    import torch
    import torch.nn.functional as F

    from nmcompile.ir.arraymath import one_torch_thread
    from nmcompile.ir.linear_sums import DENSE_ONLY, EVENTS_ONLY, LinearSums
    from nmcompile.ir.simulate import Simulator

    rng = np.random.default_rng(3)
    _, _, _, graph, x = digits_case(128)
    recorded = Simulator(graph, "float32").run(x, record=True).values
    cases = []
    for node, source in (("0", "input"), ("2", "1")):
        op, values = graph.node(node), recorded[source]
        cases.append((f"digits layer {node} ({op.weight.shape[1]}->{op.weight.shape[0]})", op.weight, op.bias,
                      values.reshape(-1, values.shape[-1]), "spikes"))
    for inputs, outputs, rows, density, kind in ((64, 64, 3200, 1.0, "graded"), (200, 300, 128, 0.5, "graded"),
                                                 (784, 1000, 3200, 1.0, "graded"), (784, 128, 3200, 0.1, "spikes"),
                                                 (1000, 1000, 3200, 0.05, "spikes")):
        weight, bias = rng.normal(0, 0.3, (outputs, inputs)), rng.normal(0, 0.1, outputs)
        values = (rng.random((rows, inputs)) < density).astype(np.float32)
        if kind == "graded":
            values *= rng.random(values.shape).astype(np.float32)
        cases.append((f"random {inputs}->{outputs}", weight, bias, values, kind))
    print(f"\n[linear] float32 Linear (fused multiply-adds in input order) vs torch's linear, one thread each, "
          f"best of {args.repeats * 5} (thread CPU time)")
    print(f"{'layer':<28} {'rows':>5} {'input':>6} {'density':>7} {'events':>9} {'dense':>9} {'auto':>9} "
          f"{'torch':>9} {'torch/auto':>10} {'differ':>7}")
    for name, weight, bias, values, kind in cases:
        values = np.ascontiguousarray(values, dtype=np.float32)
        linear = LinearSums(weight, bias)
        events, dense = linear(values, EVENTS_ONLY), linear(values, DENSE_ONLY)
        if not np.array_equal(events.view(np.int32), dense.view(np.int32)):
            raise SystemExit(f"{name}: the events and dense forms differ")
        tw = torch.from_numpy(np.asarray(weight, np.float32))
        tb = None if bias is None else torch.from_numpy(np.asarray(bias, np.float32))
        with one_torch_thread(), torch.no_grad():
            theirs = F.linear(torch.from_numpy(values), tw, tb).numpy()
            t_torch = best_thread_time(args.repeats * 5,
                                       lambda v=values, tw=tw, tb=tb: F.linear(torch.from_numpy(v), tw, tb))
        t_events = best_thread_time(args.repeats * 5, lambda v=values, f=linear: f(v, EVENTS_ONLY))
        t_dense = best_thread_time(args.repeats * 5, lambda v=values, f=linear: f(v, DENSE_ONLY))
        t_auto = best_thread_time(args.repeats * 5, lambda v=values, f=linear: f(v))
        print(f"{name:<28} {values.shape[0]:>5} {kind:>6} {np.count_nonzero(values) / values.size:>7.3f} "
              f"{t_events * 1e3:>7.3f}ms {t_dense * 1e3:>7.3f}ms {t_auto * 1e3:>7.3f}ms {t_torch * 1e3:>7.3f}ms "
              f"{t_torch / t_auto:>9.2f}x {np.count_nonzero(events != theirs):>7}")


# -- memory and compilation, each measured in a fresh process --------------------------------------------------
MEMORY_BATCH = 16


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/self/status has no {field}")


def child_memory(steps: int, chunked: bool) -> None:
    """Print the RSS (MB) before one digits run of `steps` steps, batch MEMORY_BATCH, and the peak RSS of the run:
    the high-water mark (VmHWM) is reset through /proc/self/clear_refs just before it (ru_maxrss would carry the
    parent's peak across fork and exec)."""
    from nmcompile.ir.simulate import Simulator

    _, _, _, graph, _ = digits_case(1)
    rng = np.random.default_rng(0)
    x = (rng.random((steps, MEMORY_BATCH, 64)) < 0.2).astype(np.int8)
    sim = Simulator(graph, chunk_steps=None if chunked else steps)
    sim.run(x[:2])
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mb("VmRSS")
    out = sim.run(x).output
    peak = _status_mb("VmHWM")
    print(f"{before:.1f} {peak:.1f} {x.nbytes / 2**20:.1f} {out.nbytes / 2**20:.1f}")


def section_memory(args) -> None:
    print(f"\n[memory] digits example (float64), batch {MEMORY_BATCH}, input int8 spikes (made before the run); RSS "
          "before the run (imports, warm-up, input) and the peak RSS during it (VmHWM reset before the run)")
    print(f"{'T':>7} {'before MB':>9} {'peak MB (chunks)':>17} {'peak MB (one chunk)':>20} {'input MB':>9} "
          f"{'output MB':>9} {'chunks: peak - before - output':>31}")
    for steps in (1_000, 10_000, 100_000):
        rows = []
        for chunked in (True, False):
            out = subprocess.run([sys.executable, __file__, "--child-memory", str(steps), "--chunked",
                                  str(int(chunked))], capture_output=True, text=True, check=True).stdout.split()
            rows.append([float(v) for v in out])
        (before, peak, size_in, size_out), (_, peak_one, _, _) = rows
        print(f"{steps:>7} {before:>9.1f} {peak:>17.1f} {peak_one:>20.1f} {size_in:>9.1f} {size_out:>9.1f} "
              f"{peak - before - size_out:>31.1f}")


def child_jit() -> None:
    """Print the seconds of a first and a second run of an integer and a float network (compile or cache load)."""
    from nmcompile.ir.simulate import simulate

    rng = np.random.default_rng(0)
    x = (rng.random((20, 2, 64)) < 0.2).astype(np.int8)
    times = []
    for integer in (True, False):
        graph, _ = build(rng, 64, 2, integer)
        for _ in range(2):
            start = time.perf_counter()
            simulate(graph, x)
            times.append(time.perf_counter() - start)
    print(" ".join(f"{t:.4f}" for t in times))


def section_jit() -> None:
    print("\n[jit] one-off cost of the numba kernels (integer and float network, 2 layers x 64, T=20): first run "
          "minus second run, in a fresh process")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("empty cache (compile and write)", "warm cache (load)"):
            out = subprocess.run([sys.executable, __file__, "--child-jit"], capture_output=True, text=True,
                                 check=True, env=env).stdout.split()
            i1, i2, f1, f2 = (float(v) for v in out)
            print(f"{label:<32} integer {i1 - i2:6.2f} s   float {f1 - f2:6.2f} s   (second runs {i2 * 1e3:.1f} ms, "
                  f"{f2 * 1e3:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="loop,snntorch,convolution,recurrent,linear,memory,jit")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--neurons", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nodes", action="store_true", help="snntorch: also the float32 run's time per node")
    parser.add_argument("--batches", type=lambda text: [int(b) for b in text.split(",")], default=[1, 128],
                        help="snntorch: the batch sizes (default 1,128)")
    parser.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--chunked", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child-jit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        return child_memory(args.child_memory, bool(args.chunked))
    if args.child_jit:
        return child_jit()
    sections = args.sections.split(",")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    rate, cores = physical_bound.add_rate()
    print(physical_bound.describe(rate, cores))
    if "loop" in sections:
        section_loop(args, rate, cores)
    if "snntorch" in sections:
        section_snntorch(args, rate, cores)
    if "convolution" in sections:
        section_convolution(args)
    if "recurrent" in sections:
        section_recurrent(args)
    if "linear" in sections:
        section_linear(args)
    if "memory" in sections:
        section_memory(args)
    if "jit" in sections:
        section_jit()
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
