"""The compile side does not import the runtime: emitters write wire formats through nmcompile.protocols."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COMPILE_SIDE = ("nmcompile.backends", "nmcompile.backends.fpga.emit", "nmcompile.backends.fpga.synth",
                "nmcompile.backends.loihi.emit")


def test_emitters_do_not_import_the_runtime():
    code = (f"import importlib, sys\nfor m in {COMPILE_SIDE!r}: importlib.import_module(m)\n"
            "print(' '.join(sorted(m for m in sys.modules if m == 'nmcompile.runtime' or "
            "m.startswith('nmcompile.runtime.'))))\n"
            "print('protocols' if 'nmcompile.protocols.fpga_uart' in sys.modules else '')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    runtime, protocols = proc.stdout.split("\n")[:2]
    assert runtime == "", f"importing {', '.join(COMPILE_SIDE)} imported {runtime}"
    assert protocols == "protocols"          # the FPGA emitter's frames come from nmcompile.protocols


def test_a_whole_compile_imports_no_runtime_module(tmp_path):
    """api.compile_network for every available backend, calibration spikes included (a spike file)."""
    code = f"""
import sys
import numpy as np
from pathlib import Path
from nmcompile.api import CompileRequest, compile_network
from nmcompile.backends import BACKENDS
from nmcompile.ir.serialize import save
from tests.backends.networks import mlp
tmp = Path({str(tmp_path)!r})
source = save(mlp(np.random.default_rng(0)), tmp / "m.nmir")
np.savez(tmp / "c.npz", spikes=(np.random.default_rng(1).random((10, 2, 20)) < 0.3).astype(np.int8))
for name, backend in BACKENDS.items():
    stop = None if backend.available else "partition"
    compile_network(CompileRequest(source=source, target=name, out=tmp / name, calibration_spikes=tmp / "c.npz",
                                   stop_after=stop))
print(" ".join(sorted(m for m in sys.modules if m.startswith("nmcompile.runtime"))))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"compiling imported {proc.stdout.strip()}"
