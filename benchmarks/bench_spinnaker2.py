"""The SpiNNaker 2 PE kernel on an emulated Cortex-M4: instructions per neuron update, per synaptic event and per
arriving packet (QEMU `-icount shift=0`, SysTick at 40 instructions per count), the real-time capacity of one PE
that follows at 300 MHz and a 1 ms tick, and QEMU verification throughput (PE-steps per second) serially, on a
local process pool and on a Dask LocalCluster (samples sharded over workers).

Costs are differences between runs that differ only in what is measured (neurons, synapses per spike, packets), so
the kernel's fixed per-tick work cancels. The PE: N neurons, one dense projection from a host source of 128 units,
T ticks. Every output is checked against the integer reference before a throughput number is printed.

    python benchmarks/bench_spinnaker2.py [--ticks 200] [--workers 2] [--samples 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from nmcompile.backends.spinnaker2.build import build_kernel
from nmcompile.backends.spinnaker2.lower import lower
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.lowered import lower_network
from nmcompile.passes import PassContext, run_pipeline
from nmcompile.runtime.qemu_pe import profile_pe
from nmcompile.targets import get_target

CLOCK_HZ, TICK_S = 300e6, 1e-3


def pe_image(neurons: int, inputs: int, density: float, seed: int = 0) -> tuple[bytes, int]:
    """One PE: an integer layer of `neurons` fed by `inputs` host units with the given synapse density."""
    rng = np.random.default_rng(seed)
    g = Graph("pe")
    g.add("in", O.Input(shape=(inputs,)))
    weight = rng.integers(-20, 21, (neurons, inputs)) * (rng.random((neurons, inputs)) < density)
    g.add("fc", O.QLinear(weight=weight, weight_exp=0, num_weight_bits=9, delay=1))
    g.add("l", O.QNeuron(shape=(neurons,), du=4095, dv=200, vth=1 << 20))   # never fires: cost of the update only
    g.add("out", O.Output(shape=(neurons,)))
    g.chain("in", "fc", "l", "out")
    compiled = run_pipeline(g, ["partition"], PassContext(target=get_target("spinnaker2")))
    design = lower(lower_network(compiled), get_target("spinnaker2"))
    assert len(design.pes) == 1
    return design.pes[0].image, int(np.count_nonzero(weight))


def ticks_with(keys_per_tick: int, units: int, ticks: int, rng) -> list[list[list[int]]]:
    host = 0x8000 << 8
    return [[sorted((host | rng.choice(units, keys_per_tick, replace=False)).tolist()) for _ in range(ticks)]]


def costs(elf: Path, ticks: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    # neuron updates: 128 vs 32 neurons, no input
    small, _ = pe_image(32, 128, 0.25)
    large, _ = pe_image(128, 128, 0.25)
    quiet = [[[] for _ in range(ticks)]]
    a, b = profile_pe(elf, small, quiet), profile_pe(elf, large, quiet)
    per_neuron = (b.instructions_neurons - a.instructions_neurons) / (b.neuron_updates - a.neuron_updates)
    # synaptic events: the same packets into rows of density 1.0 vs 0.125
    sparse, _ = pe_image(128, 128, 0.125)
    dense, _ = pe_image(128, 128, 0.75)
    stream = ticks_with(16, 128, ticks, rng)
    s, d = profile_pe(elf, sparse, stream), profile_pe(elf, dense, stream)
    per_event = (d.instructions_synapses - s.instructions_synapses) / (d.synapses - s.synapses)
    # packets: 32 vs 4 packets per tick into empty rows (density 0 leaves the key table, rows hold no synapse)
    empty, _ = pe_image(128, 128, 0.01)
    few, many = ticks_with(4, 128, ticks, rng), ticks_with(32, 128, ticks, rng)
    f, m = profile_pe(elf, empty, few), profile_pe(elf, empty, many)
    per_packet = ((m.instructions_synapses - f.instructions_synapses - per_event * (m.synapses - f.synapses))
                  / (m.packets - f.packets))
    return {"neuron update": per_neuron, "synaptic event": per_event, "packet": per_packet}


def capacity(c: dict[str, float]) -> list[str]:
    budget = CLOCK_HZ * TICK_S
    lines = [f"real-time budget per PE: {budget:,.0f} instructions per {TICK_S * 1e3:.0f} ms tick at "
             f"{CLOCK_HZ / 1e6:.0f} MHz"]
    for neurons in (64, 128, 256):
        left = budget - neurons * c["neuron update"]
        lines.append(f"  {neurons:>3} neurons: {neurons * c['neuron update']:,.0f} for updates, room for "
                     f"{left / c['synaptic event']:,.0f} synaptic events per tick (or {left / c['packet']:,.0f} "
                     "packets without synapses)")
    return lines


def throughput(workers: int, ticks: int, samples: int) -> list[str]:
    """PE-steps per second of `verify`-style runs: a 4-PE network, serial / local pool / Dask (samples sharded)."""
    from nmcompile.api import CompileRequest, compile_network
    from nmcompile.artifact import read
    from nmcompile.ir.serialize import save
    from nmcompile.ir.simulate import simulate
    from nmcompile.runtime.executors import open_executor, run_sharded

    rng = np.random.default_rng(0)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        g = Graph("mlp")
        g.add("in", O.Input(shape=(20,)))
        g.add("fc1", O.Linear(weight=rng.normal(0.3, 0.6, (30, 20))))
        g.add("l1", O.LIF(shape=(30,), beta=0.9, threshold=1.0))
        g.add("fc2", O.Linear(weight=rng.normal(0.3, 0.6, (10, 30))))
        g.add("l2", O.LIF(shape=(10,), beta=0.9, threshold=1.0))
        g.add("out", O.Output(shape=(10,)))
        g.chain("in", "fc1", "l1", "fc2", "l2", "out")
        x = (rng.random((ticks, samples, 20)) < 0.3).astype(np.int64)
        np.savez(Path(tmp) / "calib.npz", spikes=x[:, :2])
        out = Path(tmp) / "art"
        compile_network(CompileRequest(source=save(g, Path(tmp) / "mlp.nmir"), target="spinnaker2", out=out,
                                       calibration_spikes=Path(tmp) / "calib.npz",
                                       target_overrides={"neurons_per_core": 10}))
        pes = len(list((out / "spinnaker2").glob("pe_*.bin")))
        expected = simulate(read(out).graph, x).outputs
        cluster = None
        specs = ["serial", f"local://{workers}"]
        try:
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   silence_logs=40)
            specs.append(cluster.scheduler_address.replace("tcp://", "dask://"))
        except ImportError:
            lines.append("(dask not installed: no Dask figure)")
        try:
            for spec in specs:
                with open_executor(spec) as executor:
                    start = time.perf_counter()
                    got = run_sharded("qemu://", {}, out, x, executor)
                    seconds = time.perf_counter() - start
                for name, ref in expected.items():
                    assert np.array_equal(got[name], ref), f"{spec}: {name} differs from the reference"
                steps = pes * x.shape[0] * x.shape[1]
                lines.append(f"  {spec.split('://')[0]:<7} {pes} PEs x {x.shape[0]} ticks x {x.shape[1]} samples: "
                             f"{seconds:6.2f} s, {steps / seconds:,.0f} PE-steps/s")
        finally:
            if cluster is not None:
                cluster.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=32, help="samples of the throughput run")
    args = parser.parse_args()
    build = build_kernel()
    print(build.sizes.describe())
    c = costs(build.elf, args.ticks)
    print("instructions (QEMU -icount, Cortex-M4 kernel.elf):")
    goals = {"neuron update": 50, "synaptic event": 20, "packet": None}
    for what, value in c.items():
        goal = goals[what]
        print(f"  per {what:<15} {value:7.1f}" + (f"   (goal <= {goal})" if goal else ""))
    print("\n".join(capacity(c)))
    print("QEMU verification throughput (outputs checked equal to the reference):")
    print("\n".join(throughput(args.workers, args.ticks, args.samples)))


if __name__ == "__main__":
    main()
