"""Who connects to whom, without expanding convolutions: the geometry the partitioner reasons about.

A neuron layer is tiled into boxes (a box is a tuple of (start, stop) ranges over the layer's shape). For every
projection into a layer, `Projection` answers for a box of destination neurons: how many synapses end there and
which source neurons feed it (a box of the source for convolutions, an index array for dense/sparse matrices).
All answers are computed from kernel geometry or row/column structure, never from an expanded synapse list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmcompile.ir.graph import Graph

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


@dataclass
class Projection:
    """One weighted projection from `source` (a neuron layer, Input or Constant) into `dest`."""

    name: str
    source: str
    dest: str
    source_shape: tuple[int, ...]     # the source node's own shape
    kind: str                         # "dense" (Linear/QLinear), "sparse" (SparseLinear) or "conv"
    op: object
    out_shape: tuple[int, ...]        # the projection's output shape (the dest layer in conv geometry)
    in_shape: tuple[int, ...] = ()    # the projection's own input shape (after any Flatten)
    row_nnz: np.ndarray | None = None        # dense/sparse: synapses per destination unit
    row_prefix: np.ndarray | None = None
    fully_dense: bool = False
    delay_bits: bool = False                 # synapses carry individual delays

    def synapses(self, box: Box) -> int:
        if self.kind == "conv":
            return self._conv_synapses(box)
        rows = box_flat_indices(box, self.out_shape) if len(box) > 1 else None
        if rows is None:
            a, b = box[0]
            return int(self.row_prefix[b] - self.row_prefix[a])
        return int(self.row_nnz[rows].sum())

    def sources(self, box: Box) -> Box | np.ndarray:
        """The source neurons feeding `box`: a box of the source (conv) or flat indices (dense/sparse)."""
        if self.kind == "conv":
            return self._conv_sources(box)
        if self.fully_dense:
            return tuple((0, d) for d in self.source_shape)
        if self.kind == "sparse" and len(box) == 1:
            a, b = box[0]
            return distinct(self.op.indices[self.op.indptr[a] : self.op.indptr[b]])
        rows = box_flat_indices(box, self.out_shape) if len(box) > 1 else np.arange(*box[0])
        if self.kind == "sparse":
            indptr, indices = self.op.indptr, self.op.indices
            parts = [indices[indptr[r] : indptr[r + 1]] for r in rows.tolist()]
            return distinct(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.any(self.op.weight[rows] != 0, axis=0))

    # -- convolution geometry -----------------------------------------------------------------------------
    def _conv_geometry(self):
        op = self.op
        nd = op.weight.ndim - 2
        stride = tuple(np.atleast_1d(op.stride))
        padding = tuple(np.atleast_1d(op.padding))
        dilation = tuple(np.atleast_1d(op.dilation))
        return nd, stride, padding, dilation

    def _conv_synapses(self, box: Box) -> int:
        op = self.op
        nd, stride, padding, dilation = self._conv_geometry()
        in_spatial = self.source_spatial()
        (c0, c1), spatial = box[0], box[1:]
        taps = (op.weight[c0:c1] != 0).sum(axis=1)  # (channels, *kernel): input channels per tap
        total = taps.astype(np.float64)
        for axis in range(nd):
            a, b = spatial[axis]
            k = op.weight.shape[2 + axis]
            pos = np.arange(a, b)[:, None] * stride[axis] + np.arange(k)[None, :] * dilation[axis] - padding[axis]
            valid = ((pos >= 0) & (pos < in_spatial[axis])).sum(axis=0)  # per tap: outputs in range
            shape = [1] * (nd + 1)
            shape[1 + axis] = k
            total = total * valid.reshape(shape)
        return int(total.sum())

    def _conv_sources(self, box: Box) -> Box:
        op = self.op
        nd, stride, padding, dilation = self._conv_geometry()
        in_spatial = self.source_spatial()
        (c0, c1), spatial = box[0], box[1:]
        cout_g = op.weight.shape[0] // op.groups
        cin_g = op.weight.shape[1]
        g0, g1 = c0 // cout_g, (c1 - 1) // cout_g + 1
        ranges = [(g0 * cin_g, g1 * cin_g)]
        for axis in range(nd):
            a, b = spatial[axis]
            k = op.weight.shape[2 + axis]
            lo = a * stride[axis] - padding[axis]
            hi = (b - 1) * stride[axis] - padding[axis] + (k - 1) * dilation[axis] + 1
            ranges.append((max(lo, 0), min(hi, in_spatial[axis])))
        source_box = tuple(ranges)
        if len(self.source_shape) != len(source_box):  # the source is flattened: express as flat indices
            return box_flat_indices(source_box, (cin_g * op.groups, *in_spatial))
        return source_box

    def source_spatial(self) -> tuple[int, ...]:
        nd = self.op.weight.ndim - 2
        if len(self.source_shape) == nd + 1:
            return tuple(self.source_shape[1:])
        return tuple(self.in_shape[1:])


def projections(g: Graph) -> dict[str, list[Projection]]:
    """Neuron layer -> its projections (sources traced back through Flatten and Delay)."""
    shapes = g.shapes()
    result: dict[str, list[Projection]] = {}
    for name, op in g.nodes.items():
        kind = {"Linear": "dense", "QLinear": "dense", "QPlasticLinear": "dense", "SparseLinear": "sparse",
                "Conv1d": "conv", "Conv2d": "conv", "QConv": "conv"}.get(op.kind)
        if kind is None:
            continue
        source = _trace(g, name, backwards=True)
        dest = _trace(g, name, backwards=False)
        in_edges = g.in_edges(name)
        proj = Projection(name, source, dest, shapes[source], kind, op, shapes[name],
                          in_shape=shapes[in_edges[0].src])
        if kind == "dense":
            nz = op.weight != 0
            proj.row_nnz = nz.sum(axis=1).astype(np.int64)
            proj.fully_dense = bool(nz.all())
            delay = getattr(op, "delay", None) if op.kind.startswith("Q") else getattr(op, "delays", None)
            proj.delay_bits = delay is not None and np.ndim(delay) > 0 and bool(np.ptp(delay))
        elif kind == "sparse":
            proj.row_nnz = np.diff(op.indptr).astype(np.int64)
        if proj.row_nnz is not None:
            proj.row_prefix = np.concatenate([[0], np.cumsum(proj.row_nnz)])
        result.setdefault(dest, []).append(proj)
    return result


def _trace(g: Graph, name: str, backwards: bool) -> str:
    node = name
    while True:
        edges = g.in_edges(node) if backwards else g.out_edges(node)
        if len(edges) != 1:
            raise ValueError(f"projection '{name}' must have one source and one destination")
        node = edges[0].src if backwards else edges[0].dst
        if g.node(node).kind not in ("Flatten", "Delay"):
            return node
