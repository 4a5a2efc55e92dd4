"""Boxes: a box is a tuple of (start, stop) ranges over a layer's shape. The partitioner tiles layers into boxes;
`nmcompile.lowered.Projection` answers for a box of destination neurons how many synapses end there and which
source neurons feed it."""

from __future__ import annotations

import numpy as np

Box = tuple[tuple[int, int], ...]


def box_volume(box: Box) -> int:
    return int(np.prod([b - a for a, b in box]))


def flat_range_to_boxes(start: int, stop: int, shape: tuple[int, ...]) -> list[Box]:
    """Decompose the C-order flat index range [start, stop) of `shape` into boxes."""
    if len(shape) == 1 or start >= stop:
        return [((start, stop),)] if start < stop else []
    inner = int(np.prod(shape[1:]))
    boxes: list[Box] = []
    first, last = start // inner, (stop - 1) // inner
    if first == last:
        for sub in flat_range_to_boxes(start - first * inner, stop - first * inner, shape[1:]):
            boxes.append(((first, first + 1), *sub))
        return boxes
    if start % inner:
        for sub in flat_range_to_boxes(start % inner, inner, shape[1:]):
            boxes.append(((first, first + 1), *sub))
        first += 1
    full_end = stop // inner
    if full_end > first:
        boxes.append(((first, full_end), *((0, d) for d in shape[1:])))
    if stop % inner:
        for sub in flat_range_to_boxes(0, stop % inner, shape[1:]):
            boxes.append(((full_end, full_end + 1), *sub))
    return boxes


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a sort and a mask: faster than np.unique's hashing for these sizes)."""
    if values.size == 0:
        return values.astype(np.int64)
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep].astype(np.int64)


def box_flat_indices(box: Box, shape: tuple[int, ...]) -> np.ndarray:
    grids = np.ix_(*(np.arange(a, b) for a, b in box))
    return np.ravel_multi_index(grids, shape).reshape(-1)


def contiguous_ranges(flat: np.ndarray) -> list[tuple[int, int]]:
    if flat.size == 0:
        return []
    flat = np.sort(flat)
    breaks = np.flatnonzero(np.diff(flat) != 1)
    starts = np.concatenate([[flat[0]], flat[breaks + 1]])
    stops = np.concatenate([flat[breaks] + 1, [flat[-1] + 1]])
    return list(zip(starts.tolist(), stops.tolist(), strict=True))
