"""Spikes as event lists, and event-camera recordings binned into steps.

A board takes and returns dense spikes [T, B, N] (0/1). Sparse inputs are event lists instead:

    events = spikes_to_events(out)                  # [E, 2] int64 rows (step, neuron) of a [T, 1, N] array
    spikes = events_to_spikes(events, steps, 34)    # back to [T, 1, N]
    board.stream([EventChunk(10, events)])          # an event list as one chunk of 10 steps (board.stream accepts it)
    for out in board.stream(bin_recording(rec, sensor_size=(34, 34, 2), step_us=1000, chunk_steps=50)): ...

Binning rule of an event-camera recording (a structured array with fields x, y, p, t as `tonic` writes it, t in
microseconds): event e falls into step k = floor((t_e - t0) / step_us), t0 being `t0` if given, else 0 (tonic's
datasets start their timestamps near 0); events at k >= steps (when `steps` is given) are dropped, so are events
with t_e < t0. Its channel is the index of (p, y, x) in the flattened [P, H, W] frame, p * H * W + y * W + x, the
layout of tonic's ToFrame ([T, P, H, W]) for sensor_size (W, H, P). Several events of one pixel and polarity in
one step make one spike (inputs are 0/1), as tonic's ToFrame followed by clamping to 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nmcompile.errors import ShapeError


@dataclass(frozen=True)
class EventChunk:
    """`steps` steps of one sample's input as events: rows (step within the chunk, neuron)."""

    steps: int
    events: np.ndarray

    def to_spikes(self, neurons: int) -> np.ndarray:
        """The chunk as [steps, 1, neurons]."""
        return events_to_spikes(self.events, self.steps, neurons)


def events_to_spikes(events: np.ndarray, steps: int, neurons: int) -> np.ndarray:
    """Rows (step, neuron) -> spikes [steps, 1, neurons] (int8, a repeated event is one spike)."""
    events = np.asarray(events, dtype=np.int64).reshape(-1, 2)
    if events.size and (events[:, 0].min() < 0 or events[:, 0].max() >= steps):
        raise ShapeError(f"an event's step is outside 0..{steps - 1}")
    if events.size and (events[:, 1].min() < 0 or events[:, 1].max() >= neurons):
        raise ShapeError(f"an event's neuron is outside 0..{neurons - 1}")
    spikes = np.zeros((steps, 1, neurons), dtype=np.int8)
    spikes[events[:, 0], 0, events[:, 1]] = 1
    return spikes


def spikes_to_events(spikes: np.ndarray) -> np.ndarray:
    """Spikes [T, N] or [T, 1, N] (or [T, 1, *shape], flattened) -> rows (step, neuron), in step then neuron
    order."""
    spikes = np.asarray(spikes)
    if spikes.ndim >= 3:
        if spikes.shape[1] != 1:
            raise ShapeError(f"an event list holds one sample; these spikes have batch {spikes.shape[1]}")
        spikes = spikes.reshape(spikes.shape[0], -1)
    if spikes.ndim != 2:
        raise ShapeError(f"spikes must be [T, N] or [T, 1, N], got {spikes.shape}")
    return np.argwhere(spikes != 0).astype(np.int64)


def recording_channels(recording: np.ndarray, sensor_size: tuple[int, int, int]) -> np.ndarray:
    """The flat channel p * H * W + y * W + x of every event of a tonic recording (sensor_size = (W, H, P))."""
    missing = [f for f in ("x", "y", "p", "t") if recording.dtype.names is None or f not in recording.dtype.names]
    if missing:
        raise ShapeError(f"an event recording is a structured array with fields x, y, p, t (tonic's layout); "
                         f"missing: {', '.join(missing)}")
    width, height, polarities = sensor_size
    x, y = recording["x"].astype(np.int64), recording["y"].astype(np.int64)
    p = recording["p"].astype(np.int64)
    bad = (x < 0) | (x >= width) | (y < 0) | (y >= height) | (p < 0) | (p >= polarities)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ShapeError(f"event {k} (x={x[k]}, y={y[k]}, p={p[k]}) lies outside sensor_size {sensor_size}")
    return p * height * width + y * width + x


def bin_recording_steps(recording: np.ndarray, sensor_size: tuple[int, int, int], step_us: float,
                        steps: int | None = None, t0: float = 0.0) -> np.ndarray:
    """Rows (step, channel) of a recording by the module's binning rule (a repeated pixel in a step: one row)."""
    if not step_us > 0:
        raise ShapeError(f"step_us must be positive, got {step_us}")
    channels = recording_channels(recording, sensor_size)
    step = np.floor((recording["t"].astype(np.float64) - t0) / step_us).astype(np.int64)
    keep = step >= 0
    if steps is not None:
        keep &= step < steps
    rows = np.unique(np.stack([step[keep], channels[keep]], axis=1), axis=0)
    return rows.reshape(-1, 2)


def bin_recording(recording: np.ndarray, sensor_size: tuple[int, int, int], step_us: float,
                  steps: int | None = None, chunk_steps: int = 100, t0: float = 0.0) -> Iterator[EventChunk]:
    """A recording as EventChunks of `chunk_steps` steps each (the last one shorter), for `board.stream`. Without
    `steps` the recording lasts up to its last event's step."""
    if chunk_steps <= 0:
        raise ShapeError(f"chunk_steps must be positive, got {chunk_steps}")
    rows = bin_recording_steps(recording, sensor_size, step_us, steps, t0)
    total = steps if steps is not None else (int(rows[:, 0].max()) + 1 if rows.size else 0)
    for first in range(0, total, chunk_steps):
        n = min(chunk_steps, total - first)
        sel = (rows[:, 0] >= first) & (rows[:, 0] < first + n)
        chunk = rows[sel].copy()
        chunk[:, 0] -= first
        yield EventChunk(n, chunk)
