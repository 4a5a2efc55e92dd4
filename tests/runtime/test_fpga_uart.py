"""The FPGA emulator's UART protocol, byte for byte: the Verilated RTL behind a pseudo-terminal, opened with
pyserial by the same FpgaLink the host runtime uses (serial://), plus framing errors and recovery."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from nmcompile import artifact
from nmcompile.api import CompileRequest, SourceOptions, compile_network
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.protocols.fpga_uart import (
    Command,
    Info,
    ProtocolError,
    Region,
    crc16,
    frame,
    pack_inputs,
    split_frames,
    unpack_outputs,
)
from nmcompile.runtime.fpga_board import SerialBoard
from nmcompile.runtime.fpga_link import FpgaLink
from nmcompile.runtime.hil import verify_artifact
from nmcompile.runtime.verilator_build import build_model

pytestmark = pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed")


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1                       # the catalogue check value of CRC-16/CCITT-FALSE
    raw = frame(Command.RUN, struct.pack("<I", 7))
    assert raw[:4] == bytes([0xA5, 0x06, 0x04, 0x00]) and split_frames(raw) == [raw]


def test_bitmaps_pack_lsb_first():
    x = np.zeros((2, 40), dtype=np.int64)
    x[0, 0] = x[0, 9] = x[1, 39] = 1
    packed = pack_inputs(x, 2)
    assert packed[:8] == bytes([0x01, 0x02, 0, 0, 0, 0, 0, 0]) and packed[8 + 4] == 0x80
    assert np.array_equal(unpack_outputs([packed[:8], packed[8:]], 40), x)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    g = Graph("uart")
    g.add("in", O.Input(shape=(24,)))
    g.add("fc", O.Linear(weight=rng.normal(0.3, 0.5, (16, 24)), bias=rng.normal(0.1, 0.1, 16)))
    g.add("l1", O.LIF(shape=(16,), beta=0.9, threshold=1.0))
    g.add("fc2", O.Linear(weight=rng.normal(0.3, 0.5, (8, 16))))
    g.add("l2", O.LIF(shape=(8,), beta=0.9, threshold=1.0, reset_mode="subtract"))
    g.add("out", O.Output(shape=(8,)))
    g.chain("in", "fc", "l1", "fc2", "l2", "out")
    work = tmp_path_factory.mktemp("uart")
    np.savez(work / "calib.npz", spikes=(rng.random((40, 3, 24)) < 0.3).astype(np.int64))
    out = work / "uart-fpga"
    compile_network(CompileRequest(source=save(g, work / "uart.nmir"), target="fpga", out=out,
                                   options=SourceOptions(), calibration_spikes=work / "calib.npz",
                                   reference_samples=3), log=lambda m: None)
    return out


@pytest.fixture()
def pty_rtl(project):
    """The Verilated RTL bridged to a pty: yields the device path; the simulator exits when the port closes."""
    binary = build_model(project / "fpga")
    proc = subprocess.Popen([str(binary), "--pty"], cwd=project / "fpga", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    assert line and line[0] == "PTY", proc.stderr.read()
    yield line[1]
    proc.terminate()
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def test_verify_over_a_serial_port(project, pty_rtl):
    result = verify_artifact(project, f"serial://{pty_rtl}", board=SerialBoard(pty_rtl, baud=1_000_000))
    assert result.passed, "\n".join(result.lines())


def test_commands_and_errors_byte_by_byte(project, pty_rtl):
    with serial.Serial(pty_rtl, 1_000_000, timeout=0.05) as port:
        link = FpgaLink(port, timeout=20)
        info = link.info()
        layout = __import__("json").loads((project / "fpga" / "layout.json").read_text())
        assert (info.version, info.neurons, info.in_words) == (3, layout["design"]["neurons"],
                                                               layout["design"]["in_words"])
        link.program((project / "fpga" / "program.bin").read_bytes())
        # weights read back equal the image
        n = layout["used"]["syn_words"]
        words = (project / "fpga" / "syn.hex").read_text().split()[:(n + 1) // 2]     # 16-bit words, little-endian
        syn = b"".join(int(w, 16).to_bytes(2, "little") for w in words)[:n]
        assert link.read(Region.SYN, 0, n) == syn
        # a corrupted WRITE is refused and nothing of it is written: the words are committed after the CRC checks
        changed = bytes((b + 1) & 0xFF for b in syn[:8])
        for corrupt in (-1, 9):                           # the CRC, or a data byte
            bad = bytearray(frame(Command.WRITE, bytes([Region.SYN, 0, 0, 0]) + changed))
            bad[corrupt] ^= 0xFF
            port.write(bytes(bad))
            with pytest.raises(ProtocolError, match="CRC mismatch"):
                link.receive()
            assert link.read(Region.SYN, 0, 8) == syn[:8]
        # a WRITE whose last word lies beyond the region, or with more data than the buffer holds: nothing written
        last = info.syn_depth - 4
        port.write(frame(Command.WRITE, bytes([Region.SYN]) + last.to_bytes(3, "little") + b"\x11" * 5))
        with pytest.raises(ProtocolError, match="bad region or address"):
            link.receive()
        port.write(frame(Command.WRITE, bytes([Region.SYN, 0, 0, 0]) + changed * 129))
        with pytest.raises(ProtocolError, match="bad length"):
            link.receive()
        assert link.read(Region.SYN, 0, 8) == syn[:8] and link.read(Region.SYN, last, 4) != b"\x11" * 4
        link.write(Region.SYN, 0, changed)                # a good WRITE takes effect
        assert link.read(Region.SYN, 0, 8) == changed
        link.write(Region.SYN, 0, syn[:8])
        # unknown command, bad region and an address beyond the memory
        for raw, message in [(frame(0x3F), "unknown command"),
                             (frame(Command.READ, bytes([9, 0, 0, 0, 1, 0])), "bad region or address"),
                             (frame(Command.READ, bytes([Region.PARAM]) + (info.neurons).to_bytes(3, "little")
                                    + b"\x01\x00"), "bad region or address"),
                             (frame(Command.INJECT, b"\x00" * 3), "bad length")]:
            port.write(raw)
            with pytest.raises(ProtocolError, match=message):
                link.receive()
        # garbage and a frame abandoned half-way are skipped: the next frame is answered
        port.write(b"\x00\x13\x37" + frame(Command.WRITE)[:3])
        time.sleep(0.5)
        probe = FpgaLink(port, timeout=1.0)      # a fresh INFO each second (the RTL's quiet timeout is simulated
        for _ in range(30):                      # clock cycles: slower than 0.5 s of wall time on a loaded machine)
            port.write(frame(Command.INFO))
            try:
                assert Info.unpack(probe.receive()[1]).neurons == info.neurons
                break
            except ProtocolError:
                continue
        else:
            pytest.fail("the RTL never abandoned the half frame")
        # the input queue refuses more than it holds
        too_many = b"\x00" * (4 * info.in_words * (info.queue_steps + 1))
        with pytest.raises(ProtocolError, match="input queue full"):
            link.inject(too_many)
        # a run streams one frame per step and reports its cycles
        art = artifact.read(project)
        inputs, expected = art.reference()
        link.reset()
        spikes, cycles = link.run_sample(inputs[:, 0], info.in_words, 8)
        assert np.array_equal(spikes, expected["out"][: inputs.shape[0], 0]) and cycles > 0


def test_a_stream_loses_nothing_when_the_host_is_faster(project, pty_rtl):
    """STREAM with the input pipelined: the host always has the rest of the sample ready, so only the credit (at
    most QSTEPS steps in flight) holds it back; the board's counters equal the host's and the spikes are the
    reference's. A host that ignores the credit is refused (input queue full), never silently dropped, and RESET
    ends the stream."""
    from nmcompile.runtime.board import open_board

    steps = 300
    x = (np.random.default_rng(5).random((steps, 1, 24)) < 0.3).astype(np.int64)
    with open_board("ref://") as ref:
        ref.load(project)
        expected = ref.run(x)
    with serial.Serial(pty_rtl, 1_000_000, timeout=0.05) as port:
        link = FpgaLink(port, timeout=20)
        info = link.info()
        link.program((project / "fpga" / "program.bin").read_bytes())
        link.reset()
        spikes, cycles = link.stream_sample(x[:, 0], info.in_words, 8)
        assert np.array_equal(spikes, expected.reshape(steps, -1)) and cycles > 0
        c = link.counters
        assert c["input_steps"] == c["board_input_steps"] == c["spikes_frames"] == c["board_steps"] == steps
        assert c["inject_answers"] == c["inject_frames"] and c["credit_waits"] > 0
        assert info.queue_steps // 4 <= c["most_in_flight"] <= info.queue_steps
        # over the credit: the INJECT is refused whole; a command other than INJECT or RESET is refused too
        link.reset()
        port.write(frame(Command.STREAM, struct.pack("<I", 5)))
        port.write(frame(Command.INJECT, b"\x00" * (4 * info.in_words * (info.queue_steps + 1))))
        with pytest.raises(ProtocolError, match="input queue full"):
            link.receive()
        port.write(frame(Command.INFO))
        with pytest.raises(ProtocolError, match="not accepted while a stream runs"):
            link.receive()
        port.write(frame(Command.INJECT, b"\x00" * (4 * info.in_words * 2)))
        assert link.receive() == (Command.INJECT | 0x80, b"")
        code, payload = link.receive()                   # the two queued steps run
        assert code == 0x86 and struct.unpack_from("<I", payload)[0] == 0
        assert link.receive()[0] == 0x86
        link.reset()                                    # RESET ends the stream: the core is idle and empty again
        spikes, _ = link.stream_sample(x[:20, 0], info.in_words, 8)
        assert np.array_equal(spikes, expected.reshape(steps, -1)[:20])
