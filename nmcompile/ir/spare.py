"""Output arrays reused from one call of a kernel to the next, once nothing else holds them.

A kernel that returns a fresh `np.empty` of several MiB per call pays for it in page faults: glibc maps an allocation
that large anew (or trims the freed memory back to the system), and the kernel of the operating system zeroes every
4 KiB page on its first write. At batch 1 of the N-MNIST-sized conv net of benchmarks/bench_simulate.py, whose run of
100 steps is one chunk of 4.3 MB per node, that was about 2,000 faults per run (1-2 ms of a 5-8 ms run on this
project's virtual machine). `SpareOutputs.take` hands back an array of an earlier call instead, but only when no
reference to it (nor to any view of it: a view holds its base) is left anywhere: the caller's values of the previous
chunk, a streamed output the user keeps, a recorded run's values. Results are never shared between calls.
"""

from __future__ import annotations

import sys

import numpy as np

SPARES = 2      # arrays kept per kernel: a chunk's output is still held (the previous chunk's values, the last step
                # kept for recurrent edges) while the next chunk runs, so two alternate in a run of many chunks


class SpareOutputs:
    """The last SPARES output arrays of one kernel."""

    def __init__(self) -> None:
        self._arrays: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-contiguous array of `shape` and `dtype`: a kept one that nothing else references (its
        only references: the list, the loop variable and getrefcount's argument), else a new one, kept in place of
        the oldest."""
        for array in self._arrays:
            if array.shape == shape and array.dtype == dtype and sys.getrefcount(array) <= 3:
                return array
        array = np.empty(shape, dtype)
        self._arrays = [array, *self._arrays[: SPARES - 1]]
        return array
