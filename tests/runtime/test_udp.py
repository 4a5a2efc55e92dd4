"""The SpiNNaker 2 UDP protocol end to end: the udp:// host board against the emulated board (in a thread, and as
the `nmcompile emulate` process), bit-exact against the reference, with faults injected on the wire: dropped,
duplicated, reordered and corrupted datagrams recovered, with counters proving no spike was lost or duplicated; a
board that stops answering or restarts mid-run reported as one error line."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from nmcompile.api import CompileRequest, compile_network
from nmcompile.errors import BoardError, UnsupportedError
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.protocols.spinnaker2_udp import (
    BITMAP,
    LAST,
    MAX_DATAGRAM,
    MAX_KEYS,
    VALUES,
    Kind,
    ProtocolError,
    RecordPacker,
    VersionMismatch,
    fragments,
    pack,
    parse_records,
    parse_spikes,
    step_records,
    unpack,
)
from nmcompile.runtime.board import open_board
from nmcompile.runtime.events import EventChunk, spikes_to_events
from nmcompile.runtime.udp_channel import Channel
from nmcompile.runtime.udp_emulator import EmulatedBoard
from nmcompile.testing.udp_faults import Faults, FaultyProxy


@pytest.fixture(scope="module")
def s2(tmp_path_factory) -> Path:
    """A small network on three PEs (spinnaker2 artifact)."""
    rng = np.random.default_rng(0)
    g = Graph("tiny")
    g.add("in", O.Input(shape=(12,)))
    g.add("fc", O.Linear(weight=rng.normal(0.4, 0.5, (8, 12))))
    g.add("lif", O.LIF(shape=(8,), beta=0.9, threshold=1.0))
    g.add("fc2", O.Linear(weight=rng.normal(0.3, 0.5, (6, 8))))
    g.add("lif2", O.LIF(shape=(6,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(6,)))
    g.chain("in", "fc", "lif", "fc2", "lif2", "out")
    work = tmp_path_factory.mktemp("udp")
    out = work / "s2"
    compile_network(CompileRequest(source=save(g, work / "tiny.nmir"), target="spinnaker2", out=out,
                                   reference_samples=2, target_overrides={"neurons_per_core": 4}),
                    log=lambda m: None)
    return out


@pytest.fixture()
def board():
    """An emulated board serving in a thread on a free loopback port."""
    emulated = EmulatedBoard("127.0.0.1", 0)
    thread = threading.Thread(target=emulated.serve, daemon=True)
    thread.start()
    yield emulated
    emulated.stop()
    thread.join(timeout=5)
    emulated.close()


def inputs(steps=30, batch=2, seed=1) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, batch, 12)) < 0.4).astype(np.int8)


def reference(s2: Path, x: np.ndarray) -> np.ndarray:
    with open_board("ref://") as ref:
        ref.load(s2)
        return ref.run(x)


def test_datagrams_carry_a_crc_and_fragment_steps():
    raw = pack(Kind.SPIKES, 7, 3, 2, fragments(5, np.arange(4))[0])
    datagram = unpack(raw)
    assert (datagram.kind, datagram.session, datagram.seq, datagram.ack) == (Kind.SPIKES, 7, 3, 2)
    assert parse_spikes(datagram.payload)[0] == 5
    with pytest.raises(ProtocolError, match="CRC"):
        unpack(raw[:-1] + bytes([raw[-1] ^ 1]))
    pieces = fragments(9, np.arange(MAX_KEYS + 1))
    assert len(pieces) == 2 and max(len(pack(Kind.SPIKES, 0, 0, 0, p)) for p in pieces) <= MAX_DATAGRAM
    assert [parse_spikes(p)[2] & 1 for p in pieces] == [0, 1]          # LAST only on the final fragment
    assert len(fragments(0, np.zeros(0))) == 1                          # an empty step is still one message
    values = np.array([-(1 << 23), -1, 0, (1 << 23) - 1])
    assert parse_spikes(fragments(2, values, VALUES)[0])[3].tolist() == values.tolist()


def test_steps_share_datagrams_as_bitmaps_or_keys():
    """A step goes as a bitmap when that is smaller than its keys; records of many steps share a datagram up to
    its size and come back in order."""
    dense, sparse = np.arange(0, 1024, 3), np.array([5, 700])
    assert parse_spikes(step_records(4, dense, 1024)[0])[2] == LAST | BITMAP        # 128 bytes, not 1368
    assert parse_spikes(step_records(4, sparse, 1024)[0])[2] == LAST                 # 8 bytes of keys, not 128
    payloads: list[bytes] = []
    packer = RecordPacker(payloads.append)
    steps = [dense if t % 2 else sparse for t in range(40)]
    for t, keys in enumerate(steps):
        for record in step_records(t, keys, 1024):
            packer.add(record)
    packer.flush()
    assert 1 < len(payloads) < 40 and max(map(len, payloads)) <= MAX_DATAGRAM - 22
    records = [record for payload in payloads for record in parse_records(payload)]
    assert [r[0] for r in records] == list(range(40))
    assert all(np.array_equal(r[3], keys) for r, keys in zip(records, steps, strict=True))
    with pytest.raises(ProtocolError, match="bytes are left"):
        parse_records(payloads[0][:-1])


def test_run_and_stream_equal_the_reference(s2, board):
    x = inputs()
    expected = reference(s2, x)
    with open_board(f"udp://127.0.0.1:{board.address[1]}?timeout=5") as udp:
        udp.load(s2)
        np.testing.assert_array_equal(udp.run(x), expected)
        events = spikes_to_events(x[:, :1])
        chunks = [EventChunk(10, events[(events[:, 0] >= k) & (events[:, 0] < k + 10)] - [k, 0])
                  for k in range(0, 30, 10)]
        streamed = np.concatenate(list(udp.stream(chunks)))
        np.testing.assert_array_equal(streamed, expected[:, :1])
        assert udp.board_counters["spikes_in"] == udp.sent_spikes == int(x.sum() + x[:, 0].sum())


def test_faults_on_the_wire_are_recovered_and_counted(s2, board):
    x = inputs(steps=40, batch=2, seed=2)
    expected = reference(s2, x)
    faults = Faults(drop=0.08, duplicate=0.08, reorder=0.08, corrupt=0.05, seed=3)
    with FaultyProxy(("127.0.0.1", board.address[1]), faults) as proxy, \
            open_board(f"udp://127.0.0.1:{proxy.port}?timeout=10") as udp:
        udp.load(s2)
        np.testing.assert_array_equal(udp.run(x), expected)
        host, emulated = udp.counters, udp.board_counters
    assert all(proxy.injected[k] > 0 for k in ("dropped", "duplicated", "reordered", "corrupted")), proxy.injected
    assert host["retransmitted"] + emulated["channel_retransmitted"] > 0
    assert host["duplicates"] + emulated["channel_duplicates"] > 0
    assert host["corrupt"] + emulated["channel_corrupt"] > 0
    # every message was delivered exactly once each way (the board counted before sending its COUNTERS answer)
    assert emulated["channel_delivered"] == host["sent"] and host["delivered"] == emulated["channel_sent"] + 1
    assert emulated["spikes_in"] == int(x.sum()) and emulated["spikes_out"] == int(expected.sum())


def test_a_board_that_stops_answering_is_reported(s2, board):
    with FaultyProxy(("127.0.0.1", board.address[1]), Faults()) as proxy, \
            open_board(f"udp://127.0.0.1:{proxy.port}?timeout=1") as udp:
        udp.load(s2)
        proxy.silent = True
        with pytest.raises(BoardError, match="stopped answering"):
            udp.run(inputs())


def test_a_board_restarted_mid_run_is_reported(s2, board):
    port = board.address[1]
    with open_board(f"udp://127.0.0.1:{port}?timeout=5") as udp:
        udp.load(s2)
        stream = udp.stream(iter([inputs(10, 1)] * 3))
        next(stream)
        board.stop()                                          # power cycle: a new board process on the same port
        board.close()
        restarted = EmulatedBoard("127.0.0.1", port)
        thread = threading.Thread(target=restarted.serve, daemon=True)
        thread.start()
        try:
            with pytest.raises(BoardError, match="restarted"):
                next(stream)
        finally:
            restarted.stop()
            thread.join(timeout=5)
            restarted.close()
        board.sock = restarted.sock                            # the fixture's close() must not fail


def test_udp_urls_are_checked():
    for url, message in [("udp://127.0.0.1", "HOST:PORT"), ("udp://127.0.0.1:9/x", "no path"),
                         ("udp://127.0.0.1:9?speed=1", "no option 'speed'"),
                         ("udp://127.0.0.1:9?window=5000", "at most 4096")]:
        with pytest.raises(UnsupportedError, match=message):
            open_board(url)


def test_emulate_and_verify_on_the_command_line(s2, tmp_path):
    cli = [sys.executable, "-m", "nmcompile"]
    proc = subprocess.Popen([*cli, "emulate", str(s2), "--listen", "udp://127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "LISTEN", proc.stderr.read()
        junit = tmp_path / "verify.xml"
        done = subprocess.run([*cli, "verify", str(s2), "--board", line[1], "--junit", str(junit)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "equals the integer reference" in done.stdout and b'failures="0"' in junit.read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0
    bad = subprocess.run([*cli, "emulate", str(s2), "--listen", "pty"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("error: --listen 'pty'")


def test_no_board_at_the_address_is_one_error_line_and_a_junit_error(s2, tmp_path):
    quiet = EmulatedBoard("127.0.0.1", 0)                     # bound but never served: a board that does not answer
    junit = tmp_path / "err.xml"
    try:
        done = subprocess.run([sys.executable, "-m", "nmcompile", "verify", str(s2), "--board",
                               f"udp://127.0.0.1:{quiet.address[1]}?timeout=1", "--junit", str(junit)],
                              capture_output=True, text=True, timeout=60)
    finally:
        quiet.close()
    message = (f"the board at udp://127.0.0.1:{quiet.address[1]} stopped answering (nothing for 1 s; 1 message(s) "
               "unacknowledged)")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: {message}"]
    suite = ET.parse(junit).getroot()                         # CI gets its report exactly when the board fails
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")
    assert suite.find("testcase/error").get("message") == message


def test_a_host_faster_than_the_board_loses_nothing(s2, board):
    """The board buffers fewer messages than the host's window: what it cannot hold is dropped, counted and
    retransmitted; the spikes equal the reference and the counters agree."""
    board.channel.buffer = 3
    handle = board._spikes

    def slow_spikes(datagram):               # a board slower than the host whatever the machine's load: the host's
        time.sleep(0.002)                   # window then outruns the board's 3 buffered messages
        return handle(datagram)
    board._spikes = slow_spikes
    x = inputs(steps=40, batch=1, seed=5)
    with open_board(f"udp://127.0.0.1:{board.address[1]}?timeout=10") as udp:
        udp.load(s2)
        np.testing.assert_array_equal(udp.run(x), reference(s2, x))
        emulated, host = udp.board_counters, udp.counters
    assert emulated["channel_overrun"] > 0 and host["retransmitted"] > 0 and host["nacks_received"] > 0
    assert emulated["spikes_in"] == int(x.sum())


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm is not installed")
def test_the_emulated_board_runs_its_pes_under_qemu(s2):
    emulated = EmulatedBoard("127.0.0.1", 0, pe="qemu")
    thread = threading.Thread(target=emulated.serve, daemon=True)
    thread.start()
    try:
        x = inputs(steps=12, batch=1, seed=6)
        with open_board(f"udp://127.0.0.1:{emulated.address[1]}?timeout=30") as udp:
            udp.load(s2)
            np.testing.assert_array_equal(udp.run(x), reference(s2, x))
    finally:
        emulated.stop()
        thread.join(timeout=10)
        emulated.close()


def test_readout_values_travel_as_signed_values(board, tmp_path):
    """A non-spiking readout layer's voltages come back as signed 32-bit values (the VALUES flag)."""
    from tests.backends.test_spinnaker2 import readout_network

    x = (np.random.default_rng(1).random((25, 2, 10)) < 0.3).astype(np.int8)
    np.savez(tmp_path / "calib.npz", spikes=x)
    art = tmp_path / "ro"
    compile_network(CompileRequest(source=save(readout_network(), tmp_path / "ro.nmir"), target="spinnaker2",
                                   out=art, calibration_spikes=tmp_path / "calib.npz", reference_samples=2,
                                   target_overrides={"neurons_per_core": 5}), log=lambda m: None)
    expected = reference(art, x)
    assert (expected > 1).any()
    with open_board(f"udp://127.0.0.1:{board.address[1]}?timeout=5") as udp:
        udp.load(art)
        np.testing.assert_array_equal(udp.run(x), expected)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm is not installed")
def test_qemu_board_streams_like_it_runs(s2):
    x = inputs(steps=15, batch=1, seed=7)
    with open_board("qemu://") as qemu:
        qemu.load(s2)
        whole = qemu.run(x)
        streamed = np.concatenate(list(qemu.stream([x[:4], EventChunk(11, spikes_to_events(x[4:]))])))
    np.testing.assert_array_equal(streamed, whole)
    np.testing.assert_array_equal(whole, reference(s2, x))


def other_version(raw: bytes, version: int) -> bytes:
    """`raw` re-stamped as a datagram of protocol `version` with a valid CRC under the same header layout."""
    import struct
    import zlib

    stamped = raw[:2] + bytes([version]) + raw[3:18] + b"\0\0\0\0" + raw[22:]
    crc = zlib.crc32(stamped[22:], zlib.crc32(stamped[:22]))
    return stamped[:18] + struct.pack("<I", crc) + stamped[22:]


def test_another_protocol_version_is_told_apart_from_corruption():
    raw = pack(Kind.HELLO, 5, 0, 0, b"\x40\x00")
    with pytest.raises(VersionMismatch) as intact:
        unpack(other_version(raw, 3))
    assert (intact.value.version, intact.value.session, intact.value.intact) == (3, 5, True)
    with pytest.raises(VersionMismatch) as flipped:                 # a corrupted version byte fails the CRC
        unpack(raw[:2] + bytes([raw[2] ^ 4]) + raw[3:])
    assert not flipped.value.intact


def test_a_board_of_another_protocol_version_is_one_error_line(s2):
    """A board answering in version 3 is named as such (not 'stopped answering'); one corrupted version byte from a
    board of this version is only counted."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)

    def answer_in_version_3():
        with contextlib.suppress(OSError):
            raw, addr = sock.recvfrom(2048)
            sock.sendto(other_version(pack(Kind.INFO, unpack(raw).session, 0, 1), 3), addr)

    thread = threading.Thread(target=answer_in_version_3, daemon=True)
    thread.start()
    try:
        message = (r"speaks version 3 of the SpiNNaker 2 UDP protocol and this nmcompile version 2: run the same "
                   r"nmcompile release on both ends")
        with pytest.raises(BoardError, match=message), \
                open_board(f"udp://127.0.0.1:{sock.getsockname()[1]}?timeout=5") as udp:
            udp.load(s2)
    finally:
        thread.join(timeout=5)
        sock.close()
    channel = Channel(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), ("127.0.0.1", 9), session=1)
    raw = pack(Kind.ACK, 1, 0, 0, b"\0\0\0\0")
    channel._incoming(raw[:2] + bytes([raw[2] ^ 1]) + raw[3:], ("127.0.0.1", 9))
    channel._incoming(raw, ("127.0.0.1", 9))
    assert channel.counters.other_version == 1
    channel.sock.close()


def test_the_board_tells_a_host_of_another_version_its_own(board):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    try:
        sock.sendto(other_version(pack(Kind.HELLO, 77, 0, 0, b"\x40\x00"), 3), board.address)
        raw, _ = sock.recvfrom(2048)
    finally:
        sock.close()
    answer = unpack(raw)                       # this version's ERROR, to the host's session
    assert (answer.kind, answer.session) == (Kind.ERROR, 77)
    assert answer.payload.decode().startswith("this board speaks version 2 of the SpiNNaker 2 UDP protocol and the "
                                              "host version 3")
    assert board.channel.counters.other_version == 1
