"""FPGA weight storage forms: convolutions stored as kernels (nmcompile/hdl/nmc_conv_addr.v) next to dense blocks.

The address generator's Python statement (`ConvGeometry.scatter`) is checked against the exact dense matrix of the
convolution; the RTL is checked against the integer reference under Verilator on integer networks that use every
branch: strides, padding, non-square kernels, 1-d kernels, negative exponents (partial sums), delays, an expanded
fallback (dilation: CSR rows) and a plastic dense projection behind two kernel entries in the table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.backends.fpga.emit import emit
from nmcompile.backends.fpga.lower import lower
from nmcompile.backends.fpga.storage import ConvGeometry, kernel_geometry, reciprocal
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.lowered import lower_network
from nmcompile.lowered.weights import ConvWeights
from nmcompile.runtime.hil import verify_artifact
from nmcompile.targets import get_target

FPGA = get_target("fpga")


def conv_weights(rng, c_in, c_out, kernel, stride, padding, in_spatial, dilation=None, groups=1) -> ConvWeights:
    nd = len(kernel)
    dilation = dilation or (1,) * nd
    out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, k, s, p, d in zip(in_spatial, kernel, stride, padding, dilation, strict=True))
    weight = rng.integers(-5, 6, (c_out, c_in // groups, *kernel))
    return ConvWeights(weight, tuple(stride), tuple(padding), tuple(dilation), groups, (c_in, *in_spatial),
                       (c_out, *out))


@pytest.mark.parametrize(("kernel", "stride", "padding", "spatial"), [
    ((3, 3), (1, 1), (1, 1), (6, 6)),
    ((5, 2), (2, 1), (2, 0), (9, 7)),
    ((10, 10), (2, 2), (0, 0), (14, 14)),     # a 5x5 conv behind a 2x2 sum pool, fused
    ((3, 4), (4, 2), (3, 1), (11, 10)),
    ((4,), (2,), (1,), (13,)),                # 1-d
])
def test_scatter_equals_the_dense_matrix(kernel, stride, padding, spatial):
    rng = np.random.default_rng(len(kernel) + sum(kernel))
    w = conv_weights(rng, 3, 4, kernel, stride, padding, spatial)
    geometry = kernel_geometry(w, FPGA)
    assert geometry is not None
    dense = w.to_dense()                                     # [out, in]
    flat = w.kernel.reshape(-1)
    rebuilt = np.zeros_like(dense)
    ones = ConvWeights(np.ones_like(w.kernel), w.stride, w.padding, w.dilation, w.groups, w.in_shape, w.out_shape)
    assert np.array_equal(geometry.fan_out(), (ones.to_dense() != 0).sum(axis=0))
    for i in range(dense.shape[1]):
        pairs = geometry.scatter(i)
        outputs = [o for _, o in pairs]
        assert len(set(outputs)) == len(outputs), "a spike reaches an output twice"
        for k, o in pairs:
            rebuilt[o, i] += flat[k]
    assert np.array_equal(rebuilt, dense)


def test_reciprocals_divide_exactly():
    for divisor in (1, 2, 3, 7, 34, 900, 1156, 4096, 65535):
        m, s = reciprocal(divisor, 1 << 16)
        i = np.arange(1 << 16, dtype=np.int64)
        assert np.array_equal((i * m) >> s, i // divisor) and m < 1 << 17


@pytest.mark.parametrize(("change", "reason"), [
    ({"dilation": (2, 2)}, "dilation"),
    ({"groups": 2}, "groups"),
    ({"stride": (3, 1)}, "stride"),
])
def test_convolutions_outside_the_generator_are_stored_dense(change, reason):
    rng = np.random.default_rng(0)
    w = conv_weights(rng, 4, 4, (3, 3), change.get("stride", (1, 1)), (1, 1), (8, 8), change.get("dilation"),
                     change.get("groups", 1))
    assert reason in FPGA.synapse_format.kernels.stores(w.kernel.shape, w.stride, w.padding, w.dilation, w.groups,
                                                        w.in_shape, w.out_shape)
    assert kernel_geometry(w, FPGA) is None


def test_geometry_entry_fields():
    g = ConvGeometry(in_c=12, in_h=30, in_w=30, out_c=32, out_h=11, out_w=11, k_h=10, k_w=10, stride_y=2,
                     stride_x=2, pad_y=0, pad_x=0)
    word = int.from_bytes(g.entry(), "little")
    field = lambda low, bits: (word >> low) & ((1 << bits) - 1)  # noqa: E731
    assert (field(48, 16), field(64, 16), field(80, 16), field(96, 16), field(112, 16)) == (900, 30, 11, 121, 11)
    assert (field(128, 5), field(133, 5), field(138, 2), field(140, 2)) == (10, 10, 1, 1)
    assert (field(154, 10), field(164, 10), field(176, 16)) == (100, 32, 1200)


# ---- the RTL ---------------------------------------------------------------------------------------------------
def neuron(shape, vth=30) -> O.QNeuron:
    return O.QNeuron(shape=shape, du=4095, dv=600, vth=vth)


def conv2d_network(rng) -> Graph:
    """in (2, 9, 7) -> 3x2 conv, stride (2, 1), padding (2, 1), exp -2 -> l1 (3, 6, 8) -> 2x2 conv dilation 2
    (expanded: CSR rows), delay 2 -> l2 (4, 4, 6) -> 4x3 conv stride (2, 2), padding (1, 1), exp 1 -> l3 (2, 2, 3)
    -> flatten -> plastic dense -> l4 (5,)."""
    g = Graph("convforms")
    g.add("in", O.Input(shape=(2, 9, 7)))
    g.add("ca", O.QConv(weight=rng.integers(-20, 90, (3, 2, 3, 2)), stride=(2, 1), padding=(2, 1), weight_exp=-2,
                        wrap_bits=0))
    g.add("l1", neuron((3, 6, 8)))
    g.add("cb", O.QConv(weight=rng.integers(-10, 40, (4, 3, 2, 2)), dilation=(2, 2), wrap_bits=0, delay=2))
    g.add("l2", neuron((4, 4, 6)))
    g.add("cc", O.QConv(weight=rng.integers(-6, 20, (2, 4, 4, 3)), stride=(2, 2), padding=(1, 1), weight_exp=1,
                        wrap_bits=0))
    g.add("l3", neuron((2, 2, 3)))
    g.add("flat", O.Flatten())
    g.add("fc", O.QPlasticLinear(weight=rng.integers(0, 60, (5, 12)), num_weight_bits=9, w_min=-20, w_max=70,
                                 ltp_shift=3, ltd_shift=3))
    g.add("l4", neuron((5,), vth=20))
    g.add("out", O.Output(shape=(5,)))
    g.chain("in", "ca", "l1", "cb", "l2", "cc", "l3", "flat", "fc", "l4", "out")
    g.latency = 5
    return g


def conv1d_network(rng) -> Graph:
    """in (3, 40) -> 1-d conv k 4, stride 2, padding 1 -> l1 (8, 20) -> 1-d conv k 3, padding 2, exp -1
    -> l2 (2, 22)."""
    g = Graph("conv1d")
    g.add("in", O.Input(shape=(3, 40)))
    g.add("ca", O.QConv(weight=rng.integers(-20, 90, (8, 3, 4)), stride=(2,), padding=(1,), wrap_bits=0))
    g.add("l1", neuron((8, 20)))
    g.add("cb", O.QConv(weight=rng.integers(-10, 60, (2, 8, 3)), padding=(2,), weight_exp=-1, wrap_bits=0))
    g.add("l2", neuron((2, 22), vth=400))             # about 40 % active: a wrong partial sum shows
    g.add("out", O.Output(shape=(2, 22)))
    g.chain("in", "ca", "l1", "cb", "l2", "out")
    g.latency = 2
    return g


def write_artifact(g: Graph, x: np.ndarray, out: Path, engines: int = 1) -> Path:
    files = emit(lower_network(g), FPGA, {"fpga_engines": engines}, lambda m: None).files
    artifact.write(out, graph=g, target="fpga", source=Path("test"), pipeline=[], inputs=x, report="", files=files,
                   compile_options={"backend_options": {"fpga_engines": engines}})
    return out


def test_forms_chosen_per_projection():
    g = conv2d_network(np.random.default_rng(0))
    config = lower(lower_network(g), FPGA)
    assert {p.name: p.form for p in config.projections} == {"ca": "conv", "cb": "csr", "cc": "conv", "fc": "dense"}
    cb = next(p for p in config.projections if p.name == "cb")          # the dilated conv: 12 of 144 inputs each
    assert cb.csr.shape == (144, 96) and np.count_nonzero(cb.csr) == 96 * 12
    assert cb.stored.size == 2 * (144 + 1) + 2 * 96 * 12 < 144 * 96       # row pointers and pairs, no fillers
    assert config.syn_words == 3 * 2 * 3 * 2 + cb.stored.size + 2 * 4 * 4 * 3 + 12 * 5   # kernels, CSR, plastic


@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed")
@pytest.mark.parametrize(("build", "engines"), [(conv2d_network, 1), (conv1d_network, 1), (conv2d_network, 4),
                                                (conv1d_network, 2)])
def test_kernel_storage_equals_reference_on_the_rtl(build, engines, tmp_path):
    """One engine, and several: layers cut at channel boundaries, kernels sliced, the output and the plastic
    projection on engines other than 0, a negative exponent summed over two source pieces (chained entries)."""
    rng = np.random.default_rng(3)
    g = build(rng)
    shape = g.node("in").shape
    x = (rng.random((24, 2, *shape)) < 0.3).astype(np.int64)
    out = write_artifact(g, x, tmp_path / g.name, engines)
    layout = json.loads((out / "fpga" / "layout.json").read_text())
    assert any(p["form"] == "conv" for p in layout["projections"])
    assert layout["design"]["engines"] == engines
    if engines > 1:
        assert len({p["engine"] for p in layout["projections"]}) > 1
        assert any(len(layer["pieces"]) > 1 for layer in layout["layers"].values())
        assert build is not conv1d_network or any(p["chained"] for p in layout["projections"])
    result = verify_artifact(out, "verilator://")
    assert result.passed, "\n".join(result.lines())
    _, expected = artifact.read(out).reference()
    assert expected["out"].any(), "the reference network is silent: the comparison would be vacuous"
    if "weight:fc" in expected:
        assert np.any(expected["weight:fc"] != g.node("fc").weight), "the plastic weights did not change"
