"""FPGA per-synapse delays and CSR storage: a projection becomes one table entry per distinct delay (each dense or
CSR, whichever is smaller); CSR rows bridge destination gaps over 255 with zero weights and take several entries
when their 16-bit row pointers would overflow. Checked in Python (the generator's statement `CsrRows.row`) and on
the RTL under Verilator against the integer reference; delays beyond the 5-bit field and tables beyond 255 entries
are refused in one line."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.backends.fpga import storage
from nmcompile.backends.fpga.lower import lower
from nmcompile.backends.fpga.storage import CsrRows, csr_chunks, csr_form
from nmcompile.errors import NmcError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.lowered import lower_network
from nmcompile.runtime.hil import verify_artifact
from nmcompile.targets import FPGA_MAX_DELAY, get_target
from tests.backends.test_fpga_storage import neuron, write_artifact

FPGA = get_target("fpga")


def test_csr_rows_hold_exactly_the_non_zero_weights():
    """Rows with gaps of 0, 255, 256, 510 and 700 destinations (bridged by weight-0 pairs), and an empty row."""
    block = np.zeros((4, 1200), dtype=np.int64)
    block[0, [0, 255, 511, 1021]] = [5, -7, 3, 127]           # gaps 0, 255, 256, 510
    block[2, [700, 701]] = [-128, 1]                          # gap 700: two fillers
    block[3, 1199] = 9
    rows = CsrRows.of(block)
    rebuilt = np.zeros_like(block)
    for j in range(block.shape[0]):
        for destination, weight in rows.row(j):
            rebuilt[j, destination] += weight
    assert np.array_equal(rebuilt, block)
    assert rows.row(1) == [] and int(rows.steps.max()) == 255
    assert rows.pairs == 7 + 1 + 1 + 2 + 4           # the synapses, then the fillers of gaps 256, 510, 700 and 1199
    image = rows.image()
    assert image.size == 2 * (5 + rows.pairs)
    assert int(image[2 * 5]) == 5 and int(image[2 * 5 + 1]) == 0                    # first pair: weight 5, step 0


def test_csr_is_chosen_only_when_smaller_and_split_when_its_pointers_overflow(monkeypatch):
    rng = np.random.default_rng(0)
    full = rng.integers(1, 50, (20, 30))
    assert csr_form(full) is None                                     # dense wins
    sparse = np.where(rng.random((20, 30)) < 0.1, full, 0)
    assert csr_form(sparse) == [(0, 20)]
    monkeypatch.setattr(storage, "FPGA_CSR_SYNAPSES", 12)
    chunks = csr_chunks(sparse)
    assert chunks[0][0] == 0 and chunks[-1][1] == 20 and len(chunks) > 1
    assert all(b0 == a1 for (_, b0), (a1, _) in itertools.pairwise(chunks))
    assert all(CsrRows.of(sparse[a:b]).pairs <= 12 for a, b in chunks)


def delay_network(rng, delays: np.ndarray) -> Graph:
    """in (64,) -> a sparse QLinear (about 10 %, exponent -1) with the given per-synapse delays -> l1 (600,)
    -> a dense QLinear with delays 1 and 3 (exponent 1) -> l2 (10,)."""
    g = Graph("fpgadelays")
    g.add("in", O.Input(shape=(64,)))
    w1 = np.where(rng.random((600, 64)) < 0.1, rng.integers(-40, 120, (600, 64)), 0)
    g.add("fa", O.QLinear(weight=w1, weight_exp=-1, delay=delays))
    g.add("l1", neuron((600,), vth=25))
    g.add("fb", O.QLinear(weight=rng.integers(-20, 40, (10, 600)), weight_exp=1,
                          delay=rng.choice([1, 3], (10, 600))))
    g.add("l2", neuron((10,), vth=900))
    g.add("out", O.Output(shape=(10,)))
    g.chain("in", "fa", "l1", "fb", "l2", "out")
    g.latency = 2
    return g


@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed")
def test_per_synapse_delays_up_to_the_limit_equal_reference_on_the_rtl(tmp_path, monkeypatch):
    """Delays 1..31 (the 32-slot ring), CSR rows with fillers, split into chained entries (the row-pointer limit
    lowered to 150 pairs), each delay's partial sums shifted on their own, and dense entries for a dense block."""
    monkeypatch.setattr(storage, "FPGA_CSR_SYNAPSES", 150)
    rng = np.random.default_rng(5)
    g = delay_network(rng, rng.integers(1, FPGA_MAX_DELAY + 1, (600, 64)))
    x = (rng.random((48, 2, 64)) < 0.3).astype(np.int64)
    out = write_artifact(g, x, tmp_path / g.name)
    layout = json.loads((out / "fpga" / "layout.json").read_text())
    fa = [p for p in layout["projections"] if p["name"] == "fa"]
    assert {p["delay"] for p in fa} == set(range(1, FPGA_MAX_DELAY + 1)) and {p["form"] for p in fa} == {"csr"}
    assert len(fa) > FPGA_MAX_DELAY and any(p["chained"] for p in fa)         # some delay's rows took two entries
    fb = [p for p in layout["projections"] if p["name"] == "fb"]
    assert sorted(p["delay"] for p in fb) == [1, 3] and {p["form"] for p in fb} == {"dense"}
    assert layout["design"]["hist_slots"] == 32
    config = lower(lower_network(g), FPGA)
    assert any(np.any(p.stored.reshape(-1)[1::2][p.src_len + 1:] == 255) for p in config.projections
               if p.form == "csr"), "no gap over 255: the fillers are not exercised"
    result = verify_artifact(out, "verilator://")
    assert result.passed, "\n".join(result.lines())
    _, expected = artifact.read(out).reference()
    assert expected["out"].any(), "the reference network is silent: the comparison would be vacuous"


def test_a_delay_beyond_the_field_is_refused_naming_projection_delay_and_limit(tmp_path):
    rng = np.random.default_rng(0)
    delays = rng.integers(1, 8, (600, 64))
    delays[3, 5] = FPGA_MAX_DELAY + 9
    g = delay_network(rng, delays)
    with pytest.raises(NmcError, match=rf"projection 'fa': a delay of 1\.\.{FPGA_MAX_DELAY + 9} steps is not "
                                       rf"supported by fpga .*fpga delay_range: 1\.\.{FPGA_MAX_DELAY}\)"):
        write_artifact(g, np.zeros((4, 1, 64), dtype=np.int64), tmp_path / "refused")


def test_a_table_beyond_255_entries_is_refused_naming_the_projection(monkeypatch):
    monkeypatch.setattr(storage, "FPGA_CSR_SYNAPSES", 10)       # 30 delays, each in several entries
    rng = np.random.default_rng(0)
    g = delay_network(rng, rng.integers(1, 31, (600, 64)))
    with pytest.raises(NmcError, match=r"need \d+ table entries on engine 0 \(projection 'fa': \d+, one per source "
                                       r"piece, destination piece and distinct delay\); .* holds 255"):
        lower(lower_network(g), FPGA)
