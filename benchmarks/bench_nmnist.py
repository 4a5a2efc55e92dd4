"""Compile time and peak memory of the snnTorch N-MNIST network per target, and of its 4x wider variant.

Network (tests/passes/nmnist.py): input 2x34x34, Conv(2->c1, 5) -> Leaky -> AvgPool 2 -> Conv(c1->c2, 5) -> Leaky
-> AvgPool 2 -> Linear(25 c2 -> 10) -> Leaky, random weights; c1, c2 = 12, 32 (14,682 neurons) and 48, 128
(4x wider: 58,570 neurons). Each case compiles in its own subprocess (peak RSS is the case's own) with 4 calibration
samples of 8 steps; the peer in the same run is the partition pass's naive sequential fill (cores it would use).

    python benchmarks/bench_nmnist.py [--targets loihi2,spinnaker2,fpga] [--widths 12:32,48:128]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_case(target: str, c1: int, c2: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from nmcompile.api import CompileRequest, SourceOptions, compile_network
    from nmcompile.errors import NmcError
    from nmcompile.ir.serialize import save
    from tests.passes.nmnist import SHAPE, nmnist_graph

    graph = nmnist_graph(c1, c2)
    neurons = sum(int(np.prod(op.shape)) for op in graph.nodes.values() if op.role == "neuron")
    spikes = (np.random.default_rng(0).random((8, 4, *SHAPE)) < 0.2).astype(np.int64)
    result = {"target": target, "width": f"{c1}/{c2}", "neurons": neurons}
    with tempfile.TemporaryDirectory() as tmp:
        source = save(graph, Path(tmp) / "nmnist.nmir")
        np.savez(Path(tmp) / "calib.npz", spikes=spikes)
        start = time.perf_counter()
        try:
            compile_network(CompileRequest(source=source, target=target, out=Path(tmp) / "out",
                                           options=SourceOptions(), calibration_spikes=Path(tmp) / "calib.npz",
                                           target_overrides={"chips": 64} if target == "loihi2" else {}))
            report = (Path(tmp) / "out" / "report.md").read_text()
            cores = re.search(r"(\d+) core\(s\) on \d+ chip\(s\); lower bound (\d+)", report)
            naive = re.search(r"naive sequential fill: (\d+) core", report)
            result.update(cores=int(cores[1]), bound=int(cores[2]), naive=int(naive[1]) if naive else None)
        except NmcError as error:
            result["refused"] = str(error).splitlines()[0]
        result["compile_s"] = time.perf_counter() - start
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="loihi2,spinnaker2,fpga")
    parser.add_argument("--widths", default="12:32,48:128")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        target, c1, c2 = args.case.split(":")
        print(json.dumps(run_case(target, int(c1), int(c2))))
        return
    print(f"{'target':<11} {'width':>7} {'neurons':>8} {'cores':>6} {'bound':>6} {'ratio':>6} {'naive':>6} "
          f"{'compile s':>9} {'peak MB':>8}  refused")
    for width in args.widths.split(","):
        for target in args.targets.split(","):
            proc = subprocess.run([sys.executable, __file__, "--case", f"{target}:{width}"], capture_output=True,
                                  text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(f"{target:<11} {width:>7} failed: {proc.stderr.strip().splitlines()[-1]}", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            cores = r.get("cores")
            ratio = f"{cores / r['bound']:.2f}" if cores else "-"
            print(f"{target:<11} {r['width']:>7} {r['neurons']:>8} {cores or '-':>6} {r.get('bound', '-'):>6} "
                  f"{ratio:>6} {r.get('naive') or '-':>6} {r['compile_s']:>9.1f} {r['peak_mb']:>8.0f}  "
                  f"{r.get('refused', '')}", flush=True)


if __name__ == "__main__":
    main()
