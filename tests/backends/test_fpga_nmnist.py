"""The snnTorch N-MNIST network (tests/backends/nmnist.py, 14,682 neurons) on the FPGA emulator: compiled from its
checkpoint for an xc7a100t (the eight engines the compiler chooses for it, or two; the convolutions stored as kernels),
then programmed, fed and read back through the UART pins of the Verilated RTL, bit-exact against the integer reference
(one sample, a few steps)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.runtime.hil import verify_artifact
from tests.backends import nmnist

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed")]


def compile_nmnist(factory: str, tmp: Path, steps: int = 6, part: str = "xc7a100t", engines: int | None = None) -> Path:
    import torch

    torch.save(getattr(nmnist, factory)().state_dict(), tmp / "model.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp / "calib.npz", spikes=(rng.random((steps, 1, 2 * 34 * 34)) < 0.1).astype(np.int64))
    out = tmp / f"nmnist-{factory}"
    compile_network(CompileRequest(source=tmp / "model.pt", target="fpga", out=out,
                                   options=SourceOptions(model=f"tests.backends.nmnist:{factory}",
                                                         input_shape=nmnist.INPUT_SHAPE),
                                   calibration_spikes=tmp / "calib.npz", reference_samples=1,
                                   backend_options={"fpga_part": part,
                                                    **({"fpga_engines": str(engines)} if engines else {})}),
                    log=lambda m: None)
    return out


@pytest.mark.parametrize(("factory", "engines"), [("subtract", None), ("zero", 2)])
def test_nmnist_is_bit_exact_through_the_uart(factory, engines, tmp_path):
    """Engines chosen for the xc7a100t (eight fit its 135 block RAMs: parameters per group of slots, synapse memory
    as deep as each engine's weights), and two given."""
    out = compile_nmnist(factory, tmp_path, engines=engines)
    layout = json.loads((out / "fpga" / "layout.json").read_text())
    assert layout["used"]["neurons"] == 12 * 30 * 30 + 32 * 11 * 11 + 10
    forms = {p["name"]: p["form"] for p in layout["projections"]}
    assert [forms[name] for name in sorted(forms) if not name.endswith("bias")] == ["conv", "conv", "dense"]
    assert layout["used"]["syn_words"] < 80_000, "the convolutions were expanded"
    assert layout["design"]["engines"] == (engines or 8)
    assert {p["engine"] for layer in layout["layers"].values() for p in layer["pieces"]} == set(range(engines or 8))
    result = verify_artifact(out, "verilator://")          # program.bin, inputs and outputs over the UART pins
    assert result.passed, "\n".join(result.lines())
    _, expected = artifact.read(out).reference()
    assert expected["output"].any(), "the reference network is silent: the comparison would be vacuous"
