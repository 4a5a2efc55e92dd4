"""Compile time and peak memory of `nmcompile compile` for the N-MNIST network on every target, and for its 4x wider
variant (48 and 128 channels): one `python -m nmcompile compile` process per case, timed, its peak resident memory
read from the kernel (wait4's ru_maxrss). A refusal is recorded with its one-line error and the time to it.

Networks: tests/backends/nmnist.py (`zero`, `subtract`: 12 and 32 channels, 14,682 neurons, reset to zero or by
subtraction; `wide`: 48 and 128 channels, 56,330 neurons, reset to zero), random weights, 8 steps of 10 %
calibration spikes, one reference sample.

    python benchmarks/bench_compile.py [--targets fpga loihi2 spinnaker2] [--models zero subtract wide]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STEPS, RATE = 8, 0.1


def compile_case(model: str, target: str, work: Path) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.backends import nmnist

    source = work / f"{model}.pt"
    if not source.exists():
        torch.save(getattr(nmnist, model)().state_dict(), source)
    calib = work / "calib.npz"
    if not calib.exists():
        rng = np.random.default_rng(0)
        np.savez(calib, spikes=(rng.random((STEPS, 1, 2 * 34 * 34)) < RATE).astype(np.int64))
    command = [sys.executable, "-m", "nmcompile", "compile", str(source), "--model", f"tests.backends.nmnist:{model}",
               "--input-shape", "2,34,34", "--target", target, "-o", str(work / f"{model}-{target}"),
               "--calibration-spikes", str(calib), "--reference-samples", "1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
    proc.stdout.close()
    proc.stderr.close()
    error = next((line for line in reversed(err) if line.startswith("error:")), err[-1] if err else "")
    return {"model": model, "target": target, "seconds": seconds, "peak_mb": usage.ru_maxrss / 1024,
            "ok": os.waitstatus_to_exitcode(status) == 0, "error": error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["fpga", "loihi2", "spinnaker2"])
    parser.add_argument("--models", nargs="+", default=["zero", "subtract", "wide"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
        for model in args.models:
            for target in args.targets:
                r = compile_case(model, target, Path(tmp))
                rows.append(r)
                print(f"{model} on {target}: {'compiled' if r['ok'] else 'refused'} in {r['seconds']:.1f} s, peak "
                      f"{r['peak_mb']:,.0f} MB{'' if r['ok'] else ': ' + r['error']}", flush=True)
    print("\n| network | target | result | wall s | peak MB |")
    print("|---|---|---|---|---|")
    for r in rows:
        result = "compiled" if r["ok"] else f"refused: `{r['error']}`"
        print(f"| {r['model']} | {r['target']} | {result} | {r['seconds']:.1f} | {r['peak_mb']:,.0f} |")


if __name__ == "__main__":
    main()
