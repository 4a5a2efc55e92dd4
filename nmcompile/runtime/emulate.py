"""`nmcompile emulate ART --listen ...`: an emulated board in its own process, reached over the same wire as the
real one, so `run`/`verify --board URL` exercise the host code a user runs against hardware.

    spinnaker2 artifact, --listen udp://HOST:PORT   the emulated board of nmcompile.runtime.udp_emulator (PORT 0:
                                                    any free port); prints `LISTEN udp://HOST:PORT`; PEs by the
                                                    kernel's rules in numpy (--pe model) or by QEMU (--pe qemu)
    fpga artifact, --listen pty                     the Verilated RTL of the artifact's design behind a
                                                    pseudo-terminal (nmcompile.runtime.pty_emulator); prints
                                                    `PTY /dev/pts/N` for serial:///dev/pts/N; hosts may open and
                                                    close the port again and again, each session with a fresh model

Both serve session after session until SIGTERM or Ctrl-C. The artifact picks the board kind (and for fpga the
design size); the host still loads the network over the wire, as on a real board.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from nmcompile import artifact
from nmcompile.errors import UnsupportedError


def parse_udp_listen(listen: str) -> tuple[str, int]:
    parsed = urlparse(listen)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "udp" or not parsed.hostname or port is None or parsed.path not in ("", "/") or \
            parsed.query:
        raise UnsupportedError(f"--listen {listen!r}: a spinnaker2 board listens on udp://HOST:PORT (PORT 0: any "
                               "free port), e.g. udp://127.0.0.1:17893")
    return parsed.hostname, port


def emulate(path: Path, listen: str, pe: str, announce: Callable[[str], None],
            log: Callable[[str], None]) -> None:
    """Serve the board an artifact's target runs on (see the module doc) until stopped."""
    art = artifact.read(path)
    if art.target == "spinnaker2":
        from nmcompile.runtime.udp_emulator import EmulatedBoard

        host, port = parse_udp_listen(listen)
        board = EmulatedBoard(host, port, pe=pe, log=log)
        serve_until_stopped(board, f"LISTEN udp://{board.address[0]}:{board.address[1]}", announce)
    elif art.target == "fpga":
        if listen != "pty":
            raise UnsupportedError(f"--listen {listen!r}: an fpga board is emulated behind a pty: --listen pty")
        if pe != "model":
            raise UnsupportedError("--pe chooses how spinnaker2 PEs compute; an fpga board is the Verilated RTL")
        from nmcompile.runtime.pty_emulator import PtyBoard

        board = PtyBoard(art.path / "fpga", log=log)
        serve_until_stopped(board, f"PTY {board.device}", announce)
    else:
        raise UnsupportedError(f"{path}: nmcompile emulate serves spinnaker2 (udp://) and fpga (pty) boards; this "
                               f"artifact is for {art.target}")


def serve_until_stopped(board, announcement: str, announce: Callable[[str], None]) -> None:
    """`announce(announcement)`, then `board.serve()` until SIGTERM (which calls `board.stop()`) or Ctrl-C; the board
    is closed in every case."""
    import signal

    previous = signal.signal(signal.SIGTERM, lambda *_: board.stop())
    try:
        announce(announcement)
        board.serve()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        board.close()
