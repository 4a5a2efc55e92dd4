"""Faults on the FPGA UART wire, injected between the host link and the Verilated RTL: a corrupted frame from the
board, a corrupted frame to the board, a board that stops answering and one that dies mid-stream each end in one
BoardError line, never in wrong or missing spikes."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import serial

from nmcompile import artifact
from nmcompile.errors import BoardError
from nmcompile.protocols.fpga_uart import Command, frame
from nmcompile.runtime.fpga_board import VerilatorBoard
from nmcompile.runtime.fpga_link import FpgaLink
from nmcompile.testing.uart_faults import FaultyStream
from tests.runtime.test_fpga_uart import project  # noqa: F401  (the module's compiled fpga artifact fixture)

pytestmark = pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not installed")


class FaultyVerilatorBoard(VerilatorBoard):
    """The Verilated RTL with its pipes behind a FaultyStream, armed after loading (`arm(**faults)`)."""

    def open_link(self, fpga_dir):
        link = super().open_link(fpga_dir)
        self.faulty = FaultyStream(link.stream)
        return FpgaLink(self.faulty, timeout=2.0)

    def arm(self, **faults) -> None:
        for name, offset in faults.items():
            setattr(self.faulty, name, offset + (self.faulty.written_count if "write" in name
                                                 else self.faulty.read_count))


@pytest.mark.parametrize(("fault", "message"), [
    ({"corrupt_read_at": 40}, "failed its CRC"),
    ({"corrupt_write_at": 20}, "CRC mismatch"),
    ({"silent_after": 30},
     "no answer from the board within 2 s|did not complete a (RUN|frame of a STREAM) .* within its deadline"),
], ids=["from-board", "to-board", "silent"])
def test_uart_faults_are_reported(project, fault, message):  # noqa: F811
    inputs, expected = artifact.read(project).reference()
    with FaultyVerilatorBoard() as board:
        board.load(project)
        clean = board.run(inputs[:, :1])
        np.testing.assert_array_equal(clean, expected["out"][:inputs.shape[0], :1])
        board.arm(**fault)
        with pytest.raises(BoardError, match=message):
            board.run(inputs[:, :1])


def test_a_board_that_dies_mid_stream_is_reported(project):  # noqa: F811
    inputs, _ = artifact.read(project).reference()
    with VerilatorBoard() as board:
        board.load(project)
        stream = board.stream([inputs[:10, :1], inputs[10:20, :1]])
        next(stream)
        board.proc.kill()
        board.proc.wait()
        with pytest.raises(BoardError, match="simulator"):
            next(stream)


def test_emulate_serves_the_rtl_on_a_pty_session_after_session(project):  # noqa: F811
    """Hosts come and go on the pty as on a serial port: a second verify after the first, and one after a host that
    left a STREAM half done, each start from a fresh board; the emulator runs until SIGTERM."""
    cli = [sys.executable, "-m", "nmcompile"]
    proc = subprocess.Popen([*cli, "emulate", str(project), "--listen", "pty"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "PTY", proc.stderr.read()
        url = f"serial://{line[1]}?timeout=20"
        for session in range(2):
            done = subprocess.run([*cli, "verify", str(project), "--board", url], capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, f"session {session + 1}: {done.stdout + done.stderr}"
            assert proc.poll() is None, "the emulator ended with the host's session"
            if session == 0:                             # a host that starts a long STREAM and goes away
                with serial.Serial(line[1], 1_000_000, timeout=0.05) as port:
                    port.write(frame(Command.STREAM, struct.pack("<I", 1000)))
                    port.flush()
                    time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0, stderr
    assert "session 3: a host opened" in stderr, stderr
