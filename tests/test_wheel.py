"""The installed package works without the checkout: build a wheel, install it into a fresh venv outside the
checkout, and from a directory outside the checkout compile the digits example for fpga and verify it under
Verilator (the HDL comes from the wheel's package data, the runners from the installed package).

Marked `wheel` (and `slow`): part of `make test`; about 30 s with a warm Verilator cache. Run it alone with
`pytest -m wheel`, skip it with `pytest -m "not wheel"`. The fresh venv gets the test interpreter's own
site-packages appended through a .pth file, so torch and the other dependencies are not downloaded again; nmcompile
itself must come from the wheel (asserted).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.wheel,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("verilator") is None,
                       reason="verilator is not installed (make installs it with apt-get when run as root)"),
]


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def source_tree(dest: Path) -> Path:
    """The files a wheel is built from, copied out of the checkout (the build writes build/ and *.egg-info)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "nmcompile", dest / "nmcompile",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


def test_wheel_installs_and_verifies_digits_on_verilator(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    outside = tmp_path / "work"
    outside.mkdir()
    assert not outside.resolve().is_relative_to(ROOT.resolve())

    # 1. the wheel, built without network (setuptools is a dev dependency of the test venv)
    src = source_tree(tmp_path / "src")
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", src,
         "-w", dist], cwd=outside, env=env)
    wheel = next(dist.glob("nmcompile-*.whl"))

    # 2. a fresh venv outside the checkout; the dependencies come from the test interpreter's site-packages,
    #    appended after the venv's own, so nmcompile is only found in the wheel
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=outside, env=env)
    python = venv / "bin" / "python"
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=outside,
                       env=env).stdout.strip())
    (purelib / "zz_nmcompile_test_dependencies.pth").write_text(
        "".join(f"{p}\n" for p in dict.fromkeys(site.getsitepackages())))
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], cwd=outside, env=env)
    probe = run([python, "-c", "import nmcompile, importlib.resources as r; h = r.files('nmcompile') / 'hdl'; "
                 "print(nmcompile.__file__); print(' '.join(sorted(p.name for p in h.iterdir())))"],
                cwd=outside, env=env).stdout.splitlines()
    assert Path(probe[0]).resolve().is_relative_to(venv.resolve()), probe[0]
    assert {"nmc_core.v", "nmc_host.v", "nmc_neuron.v", "nmc_ram.v", "nmc_uart_rx.v", "nmc_uart_tx.v",
            "tb"} <= set(probe[1].split())

    # 3. compile the digits example for fpga and verify it under Verilator, with the installed console script
    digits = shutil.copytree(ROOT / "examples" / "digits", outside / "digits",
                             ignore=shutil.ignore_patterns("__pycache__"))
    nmcompile = venv / "bin" / "nmcompile"
    art = outside / "digits-fpga"
    run([nmcompile, "compile", digits / "digits.pt", "--model", f"{digits / 'model.py'}:make_model", "--target",
         "fpga", "-o", art], cwd=outside, env=env)
    for source in (ROOT / "nmcompile" / "hdl").glob("*.v"):
        assert (art / "fpga" / "hdl" / source.name).read_bytes() == source.read_bytes()
    proc = run([nmcompile, "verify", art, "--board", "verilator://"], cwd=outside, env=env)
    assert "PASS output" in proc.stdout and "equals the integer reference" in proc.stdout, proc.stdout
