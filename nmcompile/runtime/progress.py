"""Progress of a long run on a board: a one-line bar on a terminal (sample-steps done, their rate, ETA), nothing
otherwise. A sample-step is one step of one sample: a run of T steps x B samples is T * B sample-steps.

    bar = ProgressBar(steps * samples, stream=sys.stderr)  # enabled only when stream is a terminal
    outputs = run_in_slices(board, spikes, bar)            # board.run_all over slices of samples, bar updated
    say = bar.above(print_to_stderr)                       # a message printed on its own line, the bar redrawn below

Every board runs each sample from a fresh state, so running the samples slice by slice gives the same spikes as
one run_all; slices are sized from the board's measured fixed cost per run (run_in_slices). A single sample is
streamed in slices of steps on boards that stream (the state is kept between slices).

With an executor (`nmcompile run --executor`), each worker runs its shard in slices the same way and sends the
steps x samples it finished through a queue of the executor (`Executor.progress_queue`: in process, a
multiprocessing manager's queue, a Dask distributed Queue); `WorkerProgress` drains it into the bar from a thread
of this process while the jobs run. Messages printed meanwhile (a shard finished) go through `bar.above`, which
blanks the bar's line first, so a message never shares a line with the bar.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class ProgressBar:
    """`[#####.....] 1200/5000 sample-steps  340 sample-steps/s  ETA 11s` rewritten in place; enabled when
    `stream` is a terminal (or `enabled` says so), silent otherwise. Safe to update from several threads."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None, width: int = 30,
                 unit: str = "sample-steps"):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled if enabled is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.total, self.width, self.unit = max(total, 0), width, unit
        self.done = 0
        self.start = time.perf_counter()
        self._lock = threading.RLock()
        self._shown = 0                 # characters of the bar on the terminal's current line (0: none)

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.done / elapsed
        fraction = self.done / self.total if self.total else 1.0
        filled = round(fraction * self.width)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {self.unit}  "
                f"{rate:,.0f} {self.unit}/s  ETA {format_seconds(eta)}")

    def update(self, count: int) -> None:
        with self._lock:
            self.done = min(self.done + count, self.total)
            if self.enabled:
                self._draw()

    def _draw(self) -> None:
        text = self.line()
        self.stream.write("\r" + text + " " * max(self._shown - len(text), 0))
        self.stream.flush()
        self._shown = max(self._shown, len(text))

    def above(self, write: Callable[[str], Any]) -> Callable[[str], None]:
        """`write` (a one-line message printer on the bar's terminal) made to blank the bar's line first and draw
        the bar again below the message."""
        def say(message: str) -> None:
            with self._lock:
                if not (self.enabled and self._shown):
                    write(message)
                    return
                self.stream.write("\r" + " " * self._shown + "\r")
                self.stream.flush()
                self._shown = 0
                write(message)
                self._draw()
        return say

    def close(self) -> None:
        with self._lock:
            if self.enabled:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()
                self._shown = 0


def run_in_slices(board, spikes: np.ndarray, bar: ProgressBar, updates: int = 50) -> dict[str, np.ndarray]:
    """board.run_all(spikes) over slices of samples, updating `bar` by sample-steps after each slice. Without an
    enabled bar the whole batch runs at once.

    Slice sizes adapt to the board: the first two slices (1 and 2 samples) measure a run's fixed cost c (starting
    Lava's interpreter, a reset) and the cost p per sample, t(n) = c + p * n; later slices hold
    max(B / updates, 10 c / p) samples, so the fixed costs add at most about 10 % to the run."""
    steps, batch = spikes.shape[:2]
    if bar.enabled and batch == 1 and steps > 1 and len(board.outputs) == 1:
        streamed = _stream_in_slices(board, spikes, bar, updates)
        if streamed is not None:
            return streamed
    if not bar.enabled or batch <= 1:
        outputs = board.run_all(spikes)
        bar.update(steps * batch)
        return outputs
    parts: dict[str, list[np.ndarray]] = {}
    timings: list[float] = []
    first, size = 0, 1
    while first < batch:
        chunk = spikes[:, first:first + size]
        start = time.perf_counter()
        for name, value in board.run_all(chunk).items():
            parts.setdefault(name, []).append(value)
        timings.append(time.perf_counter() - start)
        bar.update(steps * chunk.shape[1])
        first += chunk.shape[1]
        size = _next_slice(timings, batch, updates)
    # outputs [T, B, ...] join on the sample axis; learned weights [B, out, in] on the first
    return {name: np.concatenate(values, axis=0 if name.startswith("weight:") else 1) for name, values in
            parts.items()}


def _next_slice(timings: list[float], batch: int, updates: int) -> int:
    if len(timings) == 1:
        return 2
    per_sample = timings[1] - timings[0]
    fixed = max(timings[0] - per_sample, 0.0)
    if per_sample <= 0:
        return batch                                 # no measurable cost per sample: the rest at once
    return max(math.ceil(batch / updates), math.ceil(10 * fixed / per_sample), 1)


def _stream_in_slices(board, spikes: np.ndarray, bar: ProgressBar, updates: int) -> dict[str, np.ndarray] | None:
    """One sample streamed in slices of steps (the same spikes as running it whole); None when the board does not
    stream."""
    from nmcompile.errors import UnsupportedError

    size = max(1, math.ceil(spikes.shape[0] / updates))
    parts = []
    try:
        for out in board.stream(spikes[k:k + size] for k in range(0, spikes.shape[0], size)):
            parts.append(out)
            bar.update(out.shape[0])
    except UnsupportedError:
        if parts:
            raise
        return None
    return {board.outputs[0]: np.concatenate(parts)}


class QueueSink:
    """A picklable `update(count)` for a worker: puts the count into the executor's progress queue."""

    enabled = True

    def __init__(self, channel: Any):
        self.channel = channel

    def update(self, count: int) -> None:
        self.channel.put(int(count))


class WorkerProgress:
    """Moves the counts workers put into `channel` to `bar` from a thread of this process until closed (then what
    is left is drained too).

        with WorkerProgress(bar, executor.progress_queue()) as sink:     # sink goes to the workers with their jobs
            executor.map(job, items)"""

    POLL = 0.1

    def __init__(self, bar: ProgressBar, channel: Any):
        self.bar, self.channel = bar, channel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="nmc-progress", daemon=True)

    def __enter__(self) -> QueueSink:
        self._thread.start()
        return QueueSink(self.channel)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10 * self.POLL + 5)

    def _drain(self) -> None:
        while True:
            try:
                count = self.channel.get(timeout=self.POLL)
            except (queue.Empty, TimeoutError):
                if self._stop.is_set():
                    return
                continue
            except Exception:           # the executor's queue went away (the run failed): the bar just stops
                return
            self.bar.update(count)
