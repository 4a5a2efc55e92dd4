"""An emulated FPGA board behind a pseudo-terminal: what `nmcompile emulate ART --listen pty` runs.

    board = PtyBoard(project, log=print)          # project: an artifact's fpga/ directory; board.device: /dev/pts/N
    board.serve()                                 # until stop() (SIGTERM) or Ctrl-C

The pty stays open while hosts come and go, as a serial port does: `serial:///dev/pts/N` may be opened again and
again. A session is the time from a host's first byte to its closing the port; each session talks to a freshly
started Verilated model (the harness reading the UART's bytes on stdin and writing the answers on stdout, as for
verilator://), so it begins as a board that was just switched on: the host interface idle (no STREAM left half
done by a host that went away), the memories as their images left them, no byte of an earlier session in either
direction. The host then loads the network and RESETs the core, as docs/formats/fpga-uart.md describes.

A host that closes the port is seen by the kernel's hang-up on the pty master (EIO on read, POLLHUP); the model of
that session is stopped and the next one started, so it is ready for the next host. Hosts take turns: like a
serial port, the pty has one user at a time.
"""

from __future__ import annotations

import errno
import os
import select
import subprocess
import termios
import tty
from collections.abc import Callable
from pathlib import Path

from nmcompile.errors import BoardError

CHUNK = 65536
IDLE_POLL = 0.01      # seconds between looks at a pty no host holds open (its master reports a hang-up at once)
BUSY_POLL = 0.2       # the longest wait while a host is connected (a stop() is noticed within it)


class PtyBoard:
    """The pty, the model of the current session and the bytes in flight between them."""

    def __init__(self, project: Path, log: Callable[[str], None] | None = None):
        from nmcompile.runtime.verilator_build import build_model

        self.project = Path(project)
        self.binary = build_model(self.project, log=log)
        self.log = log or (lambda message: None)
        self.master, slave = os.openpty()
        tty.setraw(slave)                        # bytes pass unchanged (a host's pyserial sets raw mode too)
        self.device = os.ttyname(slave)
        os.close(slave)                          # the master reads EIO until a host opens the device
        os.set_blocking(self.master, False)
        self.sessions = 0
        self._stopping = False
        self._connected = False
        self._to_model = bytearray()
        self._to_host = bytearray()
        self.model = self._start_model()

    def _start_model(self) -> subprocess.Popen:
        try:
            # its own session: Ctrl-C on the terminal stops the emulator, which stops the model (the model alone
            # exits when its stdin closes, should the emulator be killed)
            model = subprocess.Popen([str(self.binary)], cwd=self.project, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as err:
            raise BoardError(f"cannot start the Verilated model {self.binary}: {err}") from None
        os.set_blocking(model.stdin.fileno(), False)
        os.set_blocking(model.stdout.fileno(), False)
        return model

    def _stop_model(self) -> None:
        if self.model.poll() is None:
            self.model.kill()
        self.model.wait()
        self.model.stdin.close()
        self.model.stdout.close()

    # -- the loop --------------------------------------------------------------------------------------------
    def serve(self) -> None:
        while not self._stopping:
            self._pump()

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self._stopping = True
        self._stop_model()
        os.close(self.master)

    def _pump(self) -> None:
        """Wait for bytes either way (or a hang-up), then move what can move."""
        poller = select.poll()
        model_in, model_out = self.model.stdin.fileno(), self.model.stdout.fileno()
        poller.register(model_out, select.POLLIN)
        if self._to_model:
            poller.register(model_in, select.POLLOUT)
        if self._connected:                      # the master of a pty nobody holds reports POLLHUP at once
            poller.register(self.master, select.POLLIN | (select.POLLOUT if self._to_host else 0))
        poller.poll(1000 * (BUSY_POLL if self._connected else IDLE_POLL))
        self._from_host()
        self._from_model(model_out)
        self._to_model = self._flush(model_in, self._to_model)
        if self._connected:
            self._to_host = self._flush(self.master, self._to_host)

    def _from_host(self) -> None:
        try:
            data = os.read(self.master, CHUNK)
        except BlockingIOError:
            return
        except OSError as err:
            if err.errno != errno.EIO:
                raise BoardError(f"the pty {self.device} failed: {err.strerror}") from None
            if self._connected:                  # the host closed the port: the session is over
                self._end_session()
            return
        if data and not self._connected:
            self._connected = True
            self.sessions += 1
            self.log(f"session {self.sessions}: a host opened {self.device}")
        self._to_model += data

    def _from_model(self, fd: int) -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        if not data:
            code = self.model.wait()
            raise BoardError(f"the Verilated model {self.binary} exited (status {code}) while serving {self.device}")
        if self._connected:
            self._to_host += data                # answers to a host that has gone are dropped with its session

    def _flush(self, fd: int, pending: bytearray) -> bytearray:
        """Write what the peer takes now; the rest stays pending."""
        if not pending:
            return pending
        try:
            written = os.write(fd, pending)
        except BlockingIOError:
            return pending
        except OSError as err:
            if fd == self.master and err.errno == errno.EIO:
                return bytearray()               # the host went away meanwhile; its end is noticed on read
            if err.errno == errno.EPIPE:
                return bytearray()               # the model is gone; reported when its stdout ends
            raise
        return pending[written:]

    def _end_session(self) -> None:
        self._connected = False
        self._to_model, self._to_host = bytearray(), bytearray()
        termios.tcflush(self.master, termios.TCIOFLUSH)     # no byte of this session reaches the next host
        self._stop_model()
        self.model = self._start_model()
        self.log(f"session {self.sessions}: the host closed {self.device}; a fresh model waits for the next one")
