"""Shared test helpers: small hand-built networks and golden-file comparison."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session", autouse=True)
def private_build_cache(tmp_path_factory):
    """Verilated models are built into a cache of this test session (removed with pytest's temporary files),
    unless NMC_CACHE points somewhere on purpose."""
    if "NMC_CACHE" in os.environ:
        yield
        return
    os.environ["NMC_CACHE"] = str(tmp_path_factory.mktemp("nmc-cache"))
    yield
    os.environ.pop("NMC_CACHE", None)


def assert_golden(name: str, text: str) -> None:
    """Compare `text` with tests/golden/<name>; NMC_UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("NMC_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"golden file {path} missing; run with NMC_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"output differs from {path}; inspect and rerun with NMC_UPDATE_GOLDEN=1"


def mlp(rng: np.random.Generator, sizes=(6, 8, 4), *, beta=0.9, reset_mode="subtract", reset_timing="immediate",
        recurrent=False, bias=True, neuron="LIF") -> Graph:
    """Input -> (Linear -> neuron)* -> Output with random weights."""
    g = Graph("mlp")
    prev = g.add("input", O.Input(shape=(sizes[0],)))
    for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        fc = g.add(f"fc{k}", O.Linear(weight=rng.normal(0, 0.8, (n_out, n_in)),
                                      bias=rng.normal(0, 0.1, n_out) if bias else None))
        g.connect(prev, fc)
        params = dict(shape=(n_out,), threshold=1.0, reset_mode=reset_mode, reset_timing=reset_timing)
        if neuron == "LIF":
            lif = O.LIF(beta=rng.uniform(0.5, 1.0, n_out) if beta is None else beta, **params)
        elif neuron == "CubaLIF":
            lif = O.CubaLIF(alpha=0.5, beta=beta, **params)
        else:
            lif = O.IF(**params)
        name = g.add(f"lif{k}", lif)
        g.connect(fc, name)
        if recurrent and k == 0:
            rec = g.add(f"rec{k}", O.Linear(weight=rng.normal(0, 0.3, (n_out, n_out))))
            g.connect(name, rec, recurrent=True)
            g.connect(rec, name)
        prev = name
    out = g.add("output", O.Output(shape=(sizes[-1],)))
    g.connect(prev, out)
    g.verify()
    return g


def random_spikes(rng: np.random.Generator, steps: int, batch: int, shape, rate: float = 0.3) -> np.ndarray:
    return (rng.random((steps, batch, *np.atleast_1d(shape))) < rate).astype(np.int8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
