"""Host runtime throughput and latency on the two wires, each output checked against the reference first.

UDP loopback (SpiNNaker 2 datagram protocol, docs/formats/spinnaker2-udp.md):
  protocol   full SPIKES datagrams (360 keys) through the reliable channel (sequence numbers, acks, window) to a
             receiver process, against the same datagrams sent raw (no acks, no ordering) in the same run
  board      `nmcompile run`-style: a 1024-input network on the emulated board (`nmcompile emulate`, model PEs,
             its own process) through udp://: input events/s and steps/s; the peer is ref:// on the same input
  latency    one step at a time through stream(): the round trip of a step (send its input, receive its output)
UART over a pty (FPGA, docs/formats/fpga-uart.md): the Verilated RTL behind a pseudo-terminal, driven by serial://
  at 1 Mbaud, one sample streamed (STREAM, the input pipelined under credit flow control): steps/s, and the line use
  of the stream in the RTL's own time = wire bit times of its frames / the stream's clock cycles, each way; an
  output-heavy network (the line from the board is the bound) and an input-heavy one (the line to it); the same
  output-heavy run through `nmcompile emulate ART --listen pty` (its process holds the pty and relays the bytes to a
  model per host session over pipes) against the model's own pty (the peer) shows what the relay costs.

    python benchmarks/bench_runtime.py [--steps 2000] [--datagrams 20000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nmcompile.api import CompileRequest, compile_network
from nmcompile.ir import ops as O
from nmcompile.ir.graph import Graph
from nmcompile.ir.serialize import save
from nmcompile.protocols.spinnaker2_udp import MAX_KEYS, Kind, fragments, pack
from nmcompile.runtime.board import open_board
from nmcompile.runtime.udp_channel import Channel


# -- protocol ----------------------------------------------------------------------------------------------------
def _receiver(port_queue, count: int, reliable: bool, done) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    port_queue.put(sock.getsockname()[1])
    received = 0
    if reliable:
        sock.setblocking(False)
        channel = Channel(sock, None, session=1, window=256, timeout=30)
        while received < count:
            channel.receive()
            received += 1
        channel.poll(0.2)                          # the last acks
    else:
        sock.settimeout(2.0)
        try:
            while received < count:
                sock.recv(2048)
                received += 1
        except TimeoutError:
            pass
    done.put(received)


def protocol_rate(count: int, reliable: bool) -> tuple[float, int]:
    """Events/s of `count` full SPIKES datagrams to a receiver process, and how many it received."""
    ctx = mp.get_context("spawn")
    ports, done = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_receiver, args=(ports, count, reliable, done))
    proc.start()
    port = ports.get(timeout=30)
    payload = fragments(0, np.arange(MAX_KEYS) * 7 % 1024)[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.perf_counter()
    if reliable:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        channel = Channel(sock, ("127.0.0.1", port), session=1, window=256, timeout=30)
        for _ in range(count):
            channel.send(Kind.SPIKES, payload)
        channel.flush()
    else:
        raw = pack(Kind.SPIKES, 1, 0, 0, payload)
        for _ in range(count):
            sock.sendto(raw, ("127.0.0.1", port))
    received = done.get(timeout=120)
    seconds = time.perf_counter() - start
    proc.join(timeout=30)
    sock.close()
    return count * MAX_KEYS / seconds, received


# -- boards --------------------------------------------------------------------------------------------------------
def wide_network(work: Path, target: str, inputs: int, neurons: int) -> Path:
    rng = np.random.default_rng(0)
    g = Graph("wide")
    g.add("in", O.Input(shape=(inputs,)))
    g.add("fc", O.Linear(weight=rng.normal(0.0, 3.0 / np.sqrt(inputs), (neurons, inputs))))
    g.add("lif", O.LIF(shape=(neurons,), beta=0.9, threshold=1.0))
    g.add("out", O.Output(shape=(neurons,)))
    g.chain("in", "fc", "lif", "out")
    out = work / f"wide-{target}"
    compile_network(CompileRequest(source=save(g, work / f"wide-{target}.nmir"), target=target, out=out,
                                   reference_samples=1), log=lambda m: None)
    return out


def reference(art: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    with open_board("ref://") as ref:
        ref.load(art)
        start = time.perf_counter()
        out = ref.run(x)
        return out, time.perf_counter() - start


def udp_board(art: Path, steps: int) -> dict[str, float]:
    x = (np.random.default_rng(1).random((steps, 1, 1024)) < 0.25).astype(np.int8)
    expected, ref_seconds = reference(art, x)
    emulator = subprocess.Popen([sys.executable, "-m", "nmcompile", "emulate", str(art), "--listen",
                                 "udp://127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = emulator.stdout.readline().split()[1]
        with open_board(url) as board:
            board.load(art)
            start = time.perf_counter()
            out = board.run(x)
            seconds = time.perf_counter() - start
            assert np.array_equal(out, expected), "udp:// differs from the reference"
            retransmitted = board.counters["retransmitted"]
            latencies = []
            for _chunk in board.stream(x[k:k + 1] for k in range(min(steps, 300))):
                latencies.append(time.perf_counter())
            # the generator yields after each step's round trip: differences are per-step latencies
            step_times = np.diff(np.asarray(latencies)) * 1e3
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        emulator.stdout.close()
    return {"events": int(x.sum()), "seconds": seconds, "ref_seconds": ref_seconds, "retransmitted": retransmitted,
            "latency_median_ms": float(np.median(step_times)), "latency_p99_ms": float(np.percentile(step_times, 99))}


def uart_board(art: Path, inputs: int, steps: int, emulated: bool = False) -> dict[str, float]:
    """A sample streamed over a pty to the Verilated RTL (the model's own pty, or with `emulated` the pty of
    `nmcompile emulate --listen pty`); line use of the STREAM in the RTL's own clock: the bytes of its frames each
    way (from the host's and the board's counters) x 10 bits x clocks per bit / the stream's clock cycles (the
    board's DONE)."""
    from nmcompile.runtime.fpga_board import SerialBoard
    from nmcompile.runtime.verilator_build import SIM_CLKS_PER_BIT, build_model

    x = (np.random.default_rng(2).random((steps, 1, inputs)) < 0.25).astype(np.int8)
    expected, ref_seconds = reference(art, x)
    binary = build_model(art / "fpga")
    if emulated:
        proc = subprocess.Popen([sys.executable, "-m", "nmcompile", "emulate", str(art), "--listen", "pty"],
                                cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    else:
        proc = subprocess.Popen([str(binary), "--pty"], cwd=art / "fpga", stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    try:
        pty = proc.stdout.readline().split()[1]
        with SerialBoard(pty, baud=1_000_000) as board:
            board.load(art)
            start = time.perf_counter()
            out = board.run(x)
            seconds = time.perf_counter() - start
            assert np.array_equal(out, expected), "serial:// differs from the reference"
            counters = dict(board.link.counters)
            design, size = board.layout["design"], board.layout["output"]["size"]
    finally:
        proc.terminate()                          # SIGTERM: emulate stops its model too
        proc.wait()
        proc.stdout.close()
    c = counters
    to_board = 10 + 6 * c["inject_frames"] + 4 * design["in_words"] * c["input_steps"]     # STREAM, INJECTs
    from_board = 6 * c["inject_answers"] + (10 + (size + 7) // 8) * c["spikes_frames"] + 30   # answers, SPIKES, DONE
    line = 10 * SIM_CLKS_PER_BIT / c["board_clock_cycles"]
    return {"events": int(x.sum()), "seconds": seconds, "ref_seconds": ref_seconds, "to_board": to_board,
            "from_board": from_board, "cycles": c["board_clock_cycles"], "credit_waits": c["credit_waits"],
            "line_use_in": to_board * line, "line_use_out": from_board * line}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--datagrams", type=int, default=20000)
    args = parser.parse_args()
    random.seed(0)
    raw_rate, raw_received = protocol_rate(args.datagrams, reliable=False)
    rate, received = protocol_rate(args.datagrams, reliable=True)
    print(f"protocol, {args.datagrams} datagrams of {MAX_KEYS} keys over loopback:")
    print(f"  reliable channel  {rate / 1e6:6.2f} M events/s ({received}/{args.datagrams} delivered in order)")
    print(f"  raw UDP (peer)    {raw_rate / 1e6:6.2f} M events/s ({raw_received}/{args.datagrams} arrived)  "
          f"ratio {rate / raw_rate:.2f}")
    with tempfile.TemporaryDirectory(prefix="nmc-bench-runtime-") as tmp:
        work = Path(tmp)
        udp = udp_board(wide_network(work, "spinnaker2", 1024, 32), args.steps)
        print(f"udp:// emulated board (1024 inputs at 25 %, 32 LIF, {args.steps} steps, model PEs): "
              f"{udp['events'] / udp['seconds'] / 1e6:.3f} M events/s, {args.steps / udp['seconds']:.0f} steps/s, "
              f"{udp['retransmitted']} retransmissions; ref:// in process {args.steps / udp['ref_seconds']:.0f} "
              f"steps/s; per-step round trip median {udp['latency_median_ms']:.2f} ms, "
              f"p99 {udp['latency_p99_ms']:.2f} ms")
        steps = max(args.steps // 4, 100)
        for inputs, outputs in ((64, 16), (256, 8)):
            uart = uart_board(wide_network(work, "fpga", inputs, outputs), inputs, steps)
            print(f"serial:// over a pty to the Verilated RTL ({inputs} inputs at 25 %, {outputs} LIF, {steps} steps, "
                  f"STREAM): {steps / uart['seconds']:.0f} steps/s, {uart['events'] / uart['seconds']:.0f} events/s "
                  f"wall clock (ref:// {steps / uart['ref_seconds']:.0f} steps/s); line use during the stream in the "
                  f"RTL's time: to the board {100 * uart['line_use_in']:.1f} % ({uart['to_board']} bytes), from it "
                  f"{100 * uart['line_use_out']:.1f} % ({uart['from_board']} bytes) of {uart['cycles']} cycles; "
                  f"the host waited for credit {uart['credit_waits']} times")
        art = wide_network(work, "fpga", 64, 16)
        direct, relayed = uart_board(art, 64, args.steps), uart_board(art, 64, args.steps, emulated=True)
        print(f"serial:// to `nmcompile emulate --listen pty` (64 inputs, 16 LIF, {args.steps} steps): "
              f"{args.steps / relayed['seconds']:.0f} steps/s against {args.steps / direct['seconds']:.0f} steps/s "
              f"on the model's own pty (peer, same run): ratio {direct['seconds'] / relayed['seconds']:.2f}")

if __name__ == "__main__":
    main()
