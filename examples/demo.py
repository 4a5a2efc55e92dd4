"""`make demo`: build a small spiking network in code, save it as NIR, inspect it and simulate it; then compile
the trained digits example for every target and verify the emitted networks on their boards (Lava's simulator for
loihi2, the Verilated RTL through its UART pins for fpga), with the FPGA design's Yosys resource estimate.

Every step runs the real `nmcompile` command, so what you see is what a user types.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from nmcompile.errors import NmcWarning
from nmcompile.frontend.nir import write_nir
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph


def build_network(rng: np.random.Generator) -> Graph:
    """16 inputs -> 32 LIF (recurrent) -> 10 LIF: weights chosen so that activity propagates."""
    g = Graph("demo")
    g.add("input", O.Input(shape=(16,)))
    g.add("fc1", O.Linear(weight=rng.normal(0.15, 0.3, (32, 16)), bias=np.zeros(32)))
    g.add("lif1", O.LIF(shape=(32,), beta=0.9, threshold=1.0, reset_mode="zero"))
    g.add("rec1", O.Linear(weight=rng.normal(0.0, 0.2, (32, 32))))
    g.add("fc2", O.Linear(weight=rng.normal(0.12, 0.25, (10, 32))))
    g.add("lif2", O.LIF(shape=(10,), beta=0.8, threshold=1.0, reset_mode="zero"))
    g.add("output", O.Output(shape=(10,)))
    g.chain("input", "fc1", "lif1", "fc2", "lif2", "output")
    g.connect("lif1", "rec1", recurrent=True)
    g.connect("rec1", "lif1")
    g.verify()
    return g


def nmcompile(*args: str) -> None:
    print(f"\n$ nmcompile {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "nmcompile", *args], check=True)


def raster(spikes: np.ndarray) -> str:
    """One line per output neuron over time for sample 0: '|' spike, '.' silence."""
    lines = []
    for n in range(spikes.shape[2]):
        row = "".join("|" if s else "." for s in spikes[:, 0, n])
        lines.append(f"  out{n:<2} {row}  {int(spikes[:, :, n].sum()):4d} spikes over the batch")
    return "\n".join(lines)


def main() -> None:
    rng = np.random.default_rng(2026)
    work = Path(tempfile.mkdtemp(prefix="nmcompile-demo-"))
    graph = build_network(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NmcWarning)
        nir_path = write_nir(graph, work / "demo.nir")
    print(f"built a 16-32-10 recurrent LIF network in code and saved it as NIR: {nir_path}")
    nmcompile("inspect", str(nir_path))
    spikes = (rng.random((60, 8, 16)) < 0.2).astype(np.int8)
    np.savez(work / "in.npz", spikes=spikes)
    nmcompile("run", str(nir_path), "--board", "ref://", "--input", str(work / "in.npz"), "--output",
              str(work / "out.npz"))
    out = np.load(work / "out.npz")["spikes"]
    print(f"\noutput raster, sample 0 of {out.shape[1]}, {out.shape[0]} steps:")
    print(raster(out))
    compile_digits(work)


def compile_digits(work: Path) -> None:
    """The trained digits example (snnTorch state dict + factory) through the compiler for every target; targets
    with a backend get their files and are verified on their board against the integer reference."""
    from nmcompile.backends import get_backend

    digits = Path(__file__).resolve().parent / "digits"
    source = [str(digits / "digits.pt"), "--model", f"{digits / 'model.py'}:make_model"]
    nmcompile("inspect", *source, "--check")
    sys.path.insert(0, str(digits))
    from model import encode, load_digits_split

    _, x_test, _, _ = load_digits_split()
    calibration = work / "digits-test.npz"
    np.savez(calibration, spikes=encode(x_test[:64]).astype(np.int8))   # [T, 64, 64]: the reference input
    print(f"\n64 test digits, rate-encoded, saved as {calibration}: calibration and reference input")
    boards = {"loihi2": "lava://", "spinnaker2": "qemu://", "fpga": "verilator://"}
    for target in ("loihi2", "spinnaker2", "fpga"):
        out = work / f"digits-{target}"
        full = get_backend(target).available
        nmcompile("compile", *source, "--target", target, *(() if full else ("--stop-after", "analyse")),
                  "--calibration-spikes", str(calibration), "--reference-samples", "16", "-o", str(out))
        report = (out / "report.md").read_text().splitlines()
        for line in report:
            if any(key in line for key in ("latency L", "output agreement", "core(s) on", "energy on")):
                print("   ", line.strip())
        if full and target in boards:
            nmcompile("verify", str(out), "--board", boards[target], "--junit", str(work / f"verify-{target}.xml"))
        if full and target == "fpga":
            print(f"\n$ nmcompile report {out}   (Yosys synth_xilinx; the FPGA resources section)", flush=True)
            text = subprocess.run([sys.executable, "-m", "nmcompile", "report", str(out)], check=True,
                                  capture_output=True, text=True).stdout
            print(text[text.index("## FPGA resources"):])


if __name__ == "__main__":
    main()
