"""lava-dl netx networks (.net) read into the integer IR: spike for spike what lava-dl 0.6.0's own netx reader runs
in Lava; compiled without quantize for every target and verified bit-exactly; nmcompile -> netx -> nmcompile is
identical; what netx files hold that the IR cannot express is refused naming the block."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.errors import NmcError
from nmcompile.frontend.netx import read_netx
from nmcompile.ir.serialize import save
from nmcompile.ir.simulate import simulate
from nmcompile.runtime.lava_board import lava_python
from tests.frontend import netx_files
from tests.frontend.netx_files import cuba

RUNNER = Path(__file__).with_name("netx_lava_runner.py")


def lava_netx() -> tuple[Path, dict]:
    """The Lava interpreter and an environment with lava-dl's netx on its path (fails with the make command)."""
    python = lava_python()
    folder = python.parent.parent / "netx"
    if not (folder / ".installed").exists():
        pytest.fail(f"lava-dl's netx reader is not installed next to the Lava venv ({folder}); run: make lava-netx")
    return python, {**os.environ, "PYTHONPATH": str(folder)}


def run_in_netx(net: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    python, env = lava_netx()
    np.save(tmp / "in.npy", x)
    subprocess.run([str(python), str(RUNNER), str(net), str(tmp / "in.npy"), str(tmp / "out.npy")], env=env,
                   check=True, capture_output=True)
    return np.load(tmp / "out.npy")


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_reader_equals_lava_dl_netx_in_lava(kind, tmp_path):
    """Dense blocks with biases, odd weights, decaying currents and delays per output and per input; a conv block
    with slayer's 5-D weights, flatten, dense."""
    rng = np.random.default_rng(0)
    layers = netx_files.dense_layers(rng) if kind == "dense" else netx_files.conv_layers(rng)
    net = netx_files.write(tmp_path / f"{kind}.net", layers)
    graph = read_netx(net)
    x = (rng.random((40, 1, *graph.node("input").shape)) < 0.3).astype(np.int64)
    ours = simulate(graph, x).output[:, 0]
    theirs = run_in_netx(net, x[:, 0], tmp_path)
    assert ours.any() and np.array_equal(ours, theirs.reshape(ours.shape))
    if kind == "dense":
        assert {int(d) for d in np.unique(graph.node("layer1.synapse").delay)} == {1, 2, 3, 4}


def test_netx_weight_formats_are_read_exactly():
    """Slayer's even weights and odd ones are kept as they are (exponent 0); a block without a neuron group gets
    netx's default (no decay of v, vThMant 1 << 17)."""
    rng = np.random.default_rng(1)
    layers = netx_files.dense_layers(rng, delays=False)
    del layers[3]["neuron"]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"formats-{os.getpid()}.net"
    graph = read_netx(netx_files.write(path, layers))
    path.unlink()
    first, second = graph.node("layer1.synapse"), graph.node("layer2.synapse")
    assert (first.weight_exp, first.num_weight_bits) == (0, 8) and (second.weight_exp, second.num_weight_bits) == (0, 9)
    np.testing.assert_array_equal(first.effective_weight(), layers[1]["weight"])
    np.testing.assert_array_equal(second.effective_weight(), layers[2]["weight"])
    last = graph.node("layer3")
    assert (int(last.du), int(last.dv), int(last.vth)) == (-1, 4096, 1 << 17)
    assert int(graph.node("layer1").bias_exp) == 6 and graph.latency == 3


@pytest.mark.parametrize("target", ["spinnaker2", "fpga", "loihi2"])
def test_compiles_without_quantize_and_verifies_bit_exactly(target, tmp_path):
    rng = np.random.default_rng(2)
    layers = netx_files.conv_layers(rng) if target != "fpga" else netx_files.dense_layers(rng)   # netx delays
    net = netx_files.write(tmp_path / "net.net", layers)
    out = tmp_path / target
    compile_network(CompileRequest(source=net, target=target, out=out, options=SourceOptions(), reference_samples=2))
    art = artifact.read(out)
    assert art.manifest["pipeline"][0] == "retarget" and "quantize" not in art.manifest["pipeline"]
    x = (rng.random((30, 2, *art.graph.node("input").shape)) < 0.3).astype(np.int64)
    np.testing.assert_array_equal(simulate(art.graph, x).output, simulate(read_netx(net), x).output)
    if target == "spinnaker2":
        from tests.backends.test_spinnaker2 import verify_on_qemu

        verify_on_qemu(out)
    elif target == "fpga":
        from tests.backends.test_fpga import assert_verified

        assert_verified(out)
    else:
        from tests.backends.test_loihi2 import assert_conformant

        assert_conformant(out)


def test_round_trip_nmcompile_netx_nmcompile_is_identical(tmp_path):
    """An integer network compiled for loihi2 writes model.net; reading it and compiling again writes the same file,
    and the graph read back computes exactly what the compiled network computes."""
    from tests.backends.networks import integer_mlp

    rng = np.random.default_rng(0)
    first = tmp_path / "first"
    compile_network(CompileRequest(source=save(integer_mlp(rng), tmp_path / "imlp.nmir"), target="loihi2", out=first,
                                   options=SourceOptions(), reference_samples=2))
    second = tmp_path / "second"
    compile_network(CompileRequest(source=first / "model.net", target="loihi2", out=second, options=SourceOptions(),
                                   reference_samples=2))
    assert (second / "model.net").read_bytes() == (first / "model.net").read_bytes()
    back = read_netx(first / "model.net")
    assert back.equals(read_netx(second / "model.net"))
    x = (rng.random((30, 3, 20)) < 0.3).astype(np.int64)
    out = simulate(back, x).output
    np.testing.assert_array_equal(out, simulate(artifact.read(first).graph, x).output)
    assert out.any()


@pytest.mark.parametrize(("change", "message"), [
    (lambda layers: layers.insert(2, {"type": "pool", "shape": np.array([30])}), r"layer 2 \(pool\): .*'pool'"),
    (lambda layers: layers[1]["neuron"].update(type="SDNN"), r"layer 1 \(dense\): neuron type 'SDNN'"),
    (lambda layers: layers[2]["neuron"].update(messageBits=16), r"layer 2 \(dense\): graded spikes"),
    (lambda layers: layers[1]["neuron"].update(gradedSpike=True), r"layer 1 \(dense\): graded spikes"),
    (lambda layers: layers[0].update(neuron=cuba(4096, 4096, 1)), r"layer 0 \(input\) has a neuron"),
    (lambda layers: layers[1].update(delay=np.arange(7)), r"layer 1 \(dense\): delay of shape \(7,\)"),
])
def test_what_the_ir_cannot_express_is_refused_naming_the_block(change, message, tmp_path):
    layers = netx_files.dense_layers(np.random.default_rng(0))
    change(layers)
    with pytest.raises(NmcError, match=message):
        read_netx(netx_files.write(tmp_path / "bad.net", layers))


def test_cli_inspect_reads_a_net_file(tmp_path):
    net = netx_files.write(tmp_path / "n.net", netx_files.conv_layers(np.random.default_rng(0)))
    proc = subprocess.run([sys.executable, "-m", "nmcompile", "inspect", str(net)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "QConv" in proc.stdout or "layer1" in proc.stdout
    bad = tmp_path / "bad.net"
    bad.write_bytes(b"not hdf5")
    proc = subprocess.run([sys.executable, "-m", "nmcompile", "inspect", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


