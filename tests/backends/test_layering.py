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
