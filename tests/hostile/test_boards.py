"""Boards that misbehave: every malformed, chatty, slow or silent answer is one ProtocolError line within the
host's deadline; cached Verilator builds are checked before use."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmcompile.errors import BoardError
from nmcompile.protocols.fpga_uart import SYNC_CORE, Command, ProtocolError, Reply, frame
from nmcompile.runtime.fpga_board import SerialBoard
from nmcompile.runtime.fpga_link import FpgaLink
from tests.hostile.fake_board import BEHAVIOURS, FakeBoard

DEADLINE = 1.0


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_a_misbehaving_board_is_one_error_within_the_deadline(behaviour, artifacts):
    art = artifacts["fpga"]
    layout = json.loads((art / "fpga" / "layout.json").read_text())
    inputs = (np.random.default_rng(0).random((20, 1, 12)) < 0.3).astype(np.int8)
    with FakeBoard(layout, behaviour) as fake:
        board = SerialBoard(fake.device, timeout=DEADLINE)
        start = time.monotonic()
        with pytest.raises(BoardError) as caught:
            try:
                board.load(art)
                board.run(inputs)
            finally:
                board.close()
    assert time.monotonic() - start < 4 * DEADLINE + 2
    assert "\n" not in str(caught.value)


class Replay:
    """A byte stream that answers with `data` (in pieces), then nothing."""

    def __init__(self, data: bytes, piece: int = 7):
        self.data, self.piece, self.written = bytearray(data), piece, b""

    def write(self, raw: bytes) -> None:
        self.written += raw

    def read(self, n: int) -> bytes:
        chunk = bytes(self.data[:min(n, self.piece)])
        del self.data[:len(chunk)]
        return chunk


FRAMES = st.one_of(
    st.builds(lambda code, payload: frame(code, payload, sync=SYNC_CORE),
              st.sampled_from([Reply.SPIKES, Reply.DONE, Reply.ERROR, 0x81, 0x85, 0x00]), st.binary(max_size=20)),
    st.binary(max_size=30))


@settings(max_examples=150, deadline=None)
@given(stream=st.lists(FRAMES, max_size=8).map(b"".join), steps=st.integers(1, 4))
def test_any_answer_to_run_is_spikes_or_one_protocol_error(stream, steps):
    """Random frames and bytes as the answer to RUN: either exactly `steps` SPIKES frames and DONE, or one
    ProtocolError, never another exception, never a wait beyond the deadline."""
    link = FpgaLink(Replay(stream), timeout=0.2)
    start = time.monotonic()
    try:
        outputs, _ = link.run(steps, out_len=8)
    except ProtocolError as err:
        assert "\n" not in str(err)
    else:
        assert len(outputs) == steps and all(len(o) == 1 for o in outputs)
    assert time.monotonic() - start < 1.0


def test_a_chatty_board_is_stopped_at_the_first_frame_too_many():
    spikes = b"".join(frame(Reply.SPIKES, struct.pack("<I", k) + b"\x00", sync=SYNC_CORE) for k in range(1000))
    link = FpgaLink(Replay(spikes, piece=4096), timeout=5)
    with pytest.raises(ProtocolError, match="a SPIKES frame more than the 3 steps"):
        link.run(3, out_len=8)


def test_a_wrong_answer_code_is_named():
    link = FpgaLink(Replay(frame(Reply.DONE, bytes(12), sync=SYNC_CORE)), timeout=1)
    with pytest.raises(ProtocolError, match=r"unexpected frame 0x87 \(DONE\).*expected 0x84 \(RESET answer\)"):
        link.transact(frame(Command.RESET))


def test_a_damaged_cached_build_is_not_used(tmp_path):
    from nmcompile.runtime.verilator_build import BINARY, DIGEST, _cached_build_ok

    build = tmp_path / "key"
    build.mkdir()
    (build / BINARY).write_bytes(b"\x7fELF binary")
    (build / BINARY).chmod(0o755)
    assert not _cached_build_ok(build)                              # no recorded digest
    import hashlib

    (build / DIGEST).write_text(hashlib.sha256(b"\x7fELF binary").hexdigest() + "\n")
    assert _cached_build_ok(build)
    (build / BINARY).write_bytes(b"")                               # emptied
    assert not _cached_build_ok(build)
    (build / BINARY).write_bytes(b"\x7fELF binarx")                 # altered
    assert not _cached_build_ok(build)
