"""`.nmir` save/load: exact round trips, byte determinism and one-line errors for damaged files."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile.errors import InputFileError
from nmcompile.ir import ops as O
from nmcompile.ir.base import Provenance
from nmcompile.ir.dump import dump
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import graph_from_bytes, graph_to_bytes, load, save
from tests.conftest import mlp


def every_op_graph() -> Graph:
    rng = np.random.default_rng(3)
    g = Graph("all", dt=1e-3)
    g.add("in", O.Input(shape=(2, 8, 8)))
    g.add("conv", O.Conv2d(weight=rng.normal(size=(4, 2, 3, 3)), bias=rng.normal(size=4), padding=1,
                           provenance=Provenance("torch", "features.0")))
    g.add("bn", O.BatchNorm(mean=rng.normal(size=4), var=rng.uniform(1, 2, 4), weight=rng.normal(size=4),
                            bias=rng.normal(size=4), eps=1e-3))
    g.add("mp", O.MPBNLIF(shape=(4, 8, 8), beta=0.25, bn_mean=np.zeros((4, 1, 1)), reset_amount=0.7))
    g.add("pool", O.AvgPool2d(kernel_size=2, stride=2))
    g.add("sp", O.SumPool2d(kernel_size=(2, 1), stride=(2, 1)))
    g.add("rows", O.Reshape(shape=(8, 4), provenance=Provenance("torch", "unflatten")))
    g.add("flat", O.Flatten(start_dim=0, end_dim=-1))
    g.add("scale", O.Scale(scale=0.5))
    g.add("delay", O.Delay(delay=np.arange(32) % 3))
    g.add("fc", O.Linear(weight=rng.normal(size=(6, 32)), delays=rng.integers(0, 3, (6, 32))))
    g.add("cuba", O.CubaLIF(shape=(6,), alpha=0.3, beta=0.8, threshold=rng.uniform(0.5, 1, 6), compare=">=",
                            reset_mode="subtract", reset_timing="delayed"))
    g.add("li", O.LI(shape=(6,), beta=0.95, reset_mode="none"))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "conv", "bn", "mp", "pool", "sp", "rows", "flat", "scale", "delay", "fc", "cuba", "li", "out")
    g.verify()
    return g


@pytest.mark.parametrize("make", [every_op_graph, lambda: mlp(np.random.default_rng(0), recurrent=True)])
def test_round_trip_is_exact_and_deterministic(tmp_path, make):
    g = make()
    path = save(g, tmp_path / "g.nmir")
    back = load(path)
    assert back.equals(g)
    assert dump(back) == dump(g)
    assert graph_to_bytes(back) == path.read_bytes() == graph_to_bytes(make())


def test_integer_graph_round_trip(tmp_path):
    g = Graph("q")
    g.add("in", O.Input(shape=(3,)))
    g.add("fc", O.QLinear(weight=[[1, -2, 3]], weight_exp=-1, num_weight_bits=6, delay=[[1, 2, 3]]))
    g.add("n", O.QNeuron(shape=(1,), du=10, dv=20, vth=7, reset_timing="delayed", reset_mode="subtract"))
    g.add("out", O.Output(shape=(1,)))
    g.chain("in", "fc", "n", "out")
    assert load(save(g, tmp_path / "q.nmir")).equals(g)


def test_damaged_files_give_one_line_errors(tmp_path):
    data = graph_to_bytes(every_op_graph())
    (tmp_path / "empty.nmir").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"empty\.nmir: file is empty"):
        load(tmp_path / "empty.nmir")
    (tmp_path / "cut.nmir").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=r"cut\.nmir: truncated or not an nmcompile IR file"):
        load(tmp_path / "cut.nmir")
    with pytest.raises(InputFileError, match="no such file"):
        load(tmp_path / "missing.nmir")
    with pytest.raises(InputFileError, match="not an nmcompile IR file"):
        graph_from_bytes(b"PK\x05\x06" + b"\x00" * 18)
