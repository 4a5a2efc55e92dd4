"""Array kernels shared by the float and integer simulators: convolution, pooling and exact integer products.

Every function takes a batch of samples in front: x has shape [N, C, *spatial]. Integer products run through
float32 BLAS when every partial sum provably stays below 2^24, float64 below 2^53 (both exact: integers below
those bounds are represented exactly and sums of them are computed exactly, in any order), else through int64.
`ExactProduct` and `Convolution` choose per call between those, event-driven accumulation of spikes and torch's
convolution kernels (engine 'compiled'), or keep the numpy forms (engine 'numpy').
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

EXACT_FLOAT_LIMIT = 2**53
EXACT_FLOAT32_LIMIT = 2**24
_CHUNK_BYTES = 1 << 27  # bound on the im2col buffer per chunk


def _pad(x: np.ndarray, padding: tuple[int, ...]) -> np.ndarray:
    if not any(padding):
        return x
    widths = [(0, 0), (0, 0)] + [(p, p) for p in padding]
    return np.pad(x, widths)


def _windows(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...]) -> np.ndarray:
    """View of shape [N, C, *out_spatial, *kernel] (dilation applied)."""
    nd = len(kernel)
    span = tuple(dilation[k] * (kernel[k] - 1) + 1 for k in range(nd))
    view = sliding_window_view(x, span, axis=tuple(range(2, 2 + nd)))
    index = (slice(None), slice(None))
    index += tuple(slice(None, None, stride[k]) for k in range(nd))
    index += tuple(slice(None, None, dilation[k]) for k in range(nd))
    return view[index]


def conv(x: np.ndarray, weight: np.ndarray, stride: tuple[int, ...], padding: tuple[int, ...],
         dilation: tuple[int, ...], groups: int) -> np.ndarray:
    """PyTorch-style cross-correlation: x [N, C_in, *S], weight [C_out, C_in/groups, *K] -> [N, C_out, *S']."""
    nd = weight.ndim - 2
    kernel = tuple(weight.shape[2:])
    xp = _pad(x, padding)
    n = x.shape[0]
    c_out = weight.shape[0]
    cin_g = weight.shape[1]
    cout_g = c_out // groups
    win_probe = _windows(xp[:1], kernel, stride, dilation)
    out_spatial = win_probe.shape[2 : 2 + nd]
    out = np.empty((n, c_out, *out_spatial), dtype=np.result_type(x.dtype, weight.dtype))
    per_sample = max(int(np.prod(win_probe.shape)) * out.itemsize, 1)
    chunk = max(1, _CHUNK_BYTES // per_sample)
    # contraction axes: channel + kernel axes of the window view against the weight's
    w_axes = (1, *range(2, 2 + nd))
    for start in range(0, n, chunk):
        win = _windows(xp[start : start + chunk], kernel, stride, dilation)
        for g in range(groups):
            wg = weight[g * cout_g : (g + 1) * cout_g]
            xg = win[:, g * cin_g : (g + 1) * cin_g]
            x_axes = (1, *range(2 + nd, 2 + 2 * nd))
            res = np.tensordot(xg, wg, axes=(x_axes, w_axes))  # [n, *out_spatial, cout_g]
            out[start : start + chunk, g * cout_g : (g + 1) * cout_g] = np.moveaxis(res, -1, 1)
    return out


def sum_pool(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...],
             pads: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Sum over each window with zeros added (begin, end) per spatial axis: x [N, C, *S] -> [N, C, *S']."""
    if any(b or e for b, e in pads):
        x = np.pad(x, [(0, 0), (0, 0), *pads])
    win = _windows(x, kernel, stride, (1,) * len(kernel))
    return win.sum(axis=tuple(range(-len(kernel), 0)))


def max_pool(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...],
             pads: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Max over each window, padding ignored (filled with -inf): x [N, C, *S] -> [N, C, *S']."""
    if any(b or e for b, e in pads):
        x = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=-np.inf)
    win = _windows(x, kernel, stride, (1,) * len(kernel))
    return win.max(axis=tuple(range(-len(kernel), 0)))


def sum_pool2d(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int]) -> np.ndarray:
    """Sum over each window with zero padding: x [N, C, H, W] -> [N, C, H', W']."""
    return sum_pool(x, kernel, stride, tuple((p, p) for p in padding))


def int_matmul(x: np.ndarray, weight_t: np.ndarray, row_bound: int) -> np.ndarray:
    """Exact x @ weight_t for int64 arrays; `row_bound` = max over outputs of sum |w| (per input unit)."""
    xmax = int(np.abs(x).max()) if x.size else 0
    if xmax * row_bound < EXACT_FLOAT32_LIMIT:  # every partial sum is an integer below 2^24: exact in float32
        return (x.astype(np.float32) @ weight_t.astype(np.float32)).astype(np.int64)
    if xmax * row_bound < EXACT_FLOAT_LIMIT:
        return (x.astype(np.float64) @ weight_t.astype(np.float64)).astype(np.int64)
    return x.astype(np.int64) @ weight_t.astype(np.int64)


EVENT_DENSITY = 0.25   # at most this fraction of nonzero inputs: accumulate weight rows, else a BLAS product


def compact_int(array: np.ndarray) -> np.ndarray:
    """`array` in the narrowest of int8/int16/int32/int64 that holds it (less memory traffic per weight row)."""
    top = int(np.abs(array).max()) if array.size else 0
    for dtype in (np.int8, np.int16, np.int32):
        if top <= np.iinfo(dtype).max:
            return np.ascontiguousarray(array, dtype=dtype)
    return np.ascontiguousarray(array, dtype=np.int64)


class ExactProduct:
    """floor_shift(x @ weight.T, exp) for int64 x [rows, in], exact. Engine 'compiled': when at most EVENT_DENSITY
    of x is nonzero (spikes), only the weight rows of the active inputs are accumulated (nmcompile.ir.jit), in the
    narrowest of int16/int32/int64 that provably holds every partial sum: |partial| <= |x|max * min(active inputs of
    the row * |w|max, max_j sum_i |w_ji|); otherwise, and with engine 'numpy', `int_matmul`. Integer sums are exact
    in every order, so both give the same bits."""

    engine = "compiled"

    def __init__(self, weight: np.ndarray, exp: int):
        self.weight_t = np.ascontiguousarray(np.asarray(weight, dtype=np.int64).T)
        self.events_weight_t = compact_int(self.weight_t)
        self.row_bound = int(np.abs(weight).sum(axis=1).max()) if weight.size else 0
        self.weight_max = int(np.abs(weight).max()) if weight.size else 0
        self.exp = exp

    def set_engine(self, engine: str) -> None:
        self.engine = engine

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from nmcompile.ir import fixed

        total = self.product(x)
        return fixed.floor_shift(total, self.exp) if self.exp else total

    def product(self, x: np.ndarray) -> np.ndarray:
        if self.engine == "compiled" and x.size:
            active = int(np.count_nonzero(x))
            if active <= EVENT_DENSITY * x.size:
                return self.event_product(x, active)
        return int_matmul(x, self.weight_t, self.row_bound)

    def event_product(self, x: np.ndarray, active: int | None = None) -> np.ndarray:
        from nmcompile.ir import jit

        rows = jit.as_rows(x)
        xmax = max(int(rows.max()), -int(rows.min())) if rows.size else 0
        row_active = int(np.count_nonzero(rows, axis=1).max()) if rows.size else 0
        bound = xmax * min(row_active * self.weight_max, self.row_bound)
        acc_dtype = np.dtype(np.int16 if bound < 2**15 else np.int32 if bound < 2**31 else np.int64)
        active = int(np.count_nonzero(rows)) if active is None else active
        out = jit.accumulate(rows, self.events_weight_t, acc_dtype, active)
        return out.reshape((*x.shape[:-1], self.weight_t.shape[1]))


class Convolution:
    """conv(x, weight) for x [N, C_in, *S] (1-D or 2-D, PyTorch cross-correlation). Integer (int64 x, weight):
    exact; with engine 'compiled' in float32 when every partial sum stays below 2^24 (the event-driven form or
    torch's, as for float32 below), in torch's float64 below 2^53 (exact in any summation order), else `int_conv`.
    Float: float64 always through `conv` (numpy, the bits float64 results are defined by); float32 with engine
    'compiled' event-driven over sparse inputs
    (nmcompile.ir.float_events, when its cost model expects the scatter to be the faster form), else through
    torch's kernels (both a different summation order: docs/semantics.md allows float32 to differ in rare spikes)."""

    engine = "compiled"

    def __init__(self, weight: np.ndarray, stride, padding, dilation, groups: int, dtype: np.dtype,
                 bias: np.ndarray | None = None):
        self.weight = np.ascontiguousarray(weight, dtype=dtype)
        self.bias = bias                           # float only: added after the product, broadcast per channel
        self.stride, self.padding, self.dilation, self.groups = tuple(stride), tuple(padding), tuple(dilation), groups
        self.integer = np.dtype(dtype).kind == "i"
        self.bound = int(np.abs(self.weight).reshape(self.weight.shape[0], -1).sum(axis=1).max()) \
            if self.integer and self.weight.size else 0
        self._torch_weights: dict[np.dtype, object] = {}

    def set_engine(self, engine: str) -> None:
        self.engine = engine

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.integer:
            return self.exact(x)[0]
        if self.engine == "compiled" and x.dtype == np.float32 and x.size:
            return self._float32(x)
        y = conv(x, self.weight, self.stride, self.padding, self.dilation, self.groups)
        return y if self.bias is None else y + self.bias

    def exact(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """(the int64 convolution of integer x, max|x|). With engine 'compiled', every partial sum an integer below
        2^24 (2^53) is exact in float32 (float64) in any order, so the float result converts to int64 exactly."""
        if self.engine == "compiled" and x.size:
            from nmcompile.ir.exact_float import as_float32  # numba: only when a compiled convolution runs

            x32, xmax = as_float32(x)
            if xmax * self.bound < EXACT_FLOAT32_LIMIT:
                return self._float32(x32).astype(np.int64), xmax
            if xmax * self.bound < EXACT_FLOAT_LIMIT:
                return self._torch(x.astype(np.float64)).astype(np.int64), xmax
        else:
            xmax = int(np.abs(x).max()) if x.size else 0
        return int_conv(x, self.weight, self.stride, self.padding, self.dilation, self.groups), xmax

    def _float32(self, x: np.ndarray) -> np.ndarray:
        """The float32 convolution (plus the bias) of float32 x: event-driven where the cost model expects the
        scatter to be faster, else torch's kernels."""
        events = self._events()
        if events is not None:
            active = estimate_nonzero(x)
            scatter, dense = events.costs(x, active)
            if scatter <= dense:
                return events(x, active)
        return self._torch(x, with_bias=True)

    def _events(self):
        """The event-driven float32 form of this convolution (nmcompile.ir.float_events), or None where it has none."""
        if not hasattr(self, "_event_form"):
            from nmcompile.ir.float_events import EventConvolution

            self._event_form = EventConvolution(self.weight, self.stride, self.padding, self.dilation, self.bias) \
                if EventConvolution.applies(self.dilation, self.groups) else None
        return self._event_form

    def _torch(self, x: np.ndarray, with_bias: bool = False) -> np.ndarray:
        """torch's convolution of x in x's dtype (plus the bias, added inside torch's kernel, with `with_bias`).

        Each call runs torch on one thread per share of the samples, the shares split over this process's cores by
        nmcompile.ir.jit.split_rows: torch's own OpenMP team would keep spinning on the cores after the call, against
        the compiled loops that run next, and stalls at its barriers whenever the machine is loaded."""
        import torch
        import torch.nn.functional as F

        from nmcompile.ir import jit

        dtype = x.dtype
        if dtype not in self._torch_weights:
            bias = None if self.bias is None else torch.from_numpy(self.bias.reshape(-1).astype(dtype))
            self._torch_weights[dtype] = (torch.from_numpy(self.weight.astype(dtype)), bias)
        weight, bias = self._torch_weights[dtype]
        run = F.conv2d if self.weight.ndim == 4 else F.conv1d
        x = torch.from_numpy(np.ascontiguousarray(x))
        spatial = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in zip(
            x.shape[2:], self.weight.shape[2:], self.stride, self.padding, self.dilation, strict=True))
        multiply_adds = x.shape[0] * int(np.prod(spatial)) * self.weight.shape[0] * int(np.prod(self.weight.shape[1:]))
        parallel = multiply_adds >= jit.PARALLEL_MIN_ADDS
        out = np.empty((x.shape[0], self.weight.shape[0], *spatial), dtype=dtype) if parallel else None
        whole: list[np.ndarray] = []

        def share(first: int, stop: int) -> None:     # each share's result is copied into `out` on its own thread
            with one_torch_thread(), torch.no_grad():
                part = run(x[first:stop], weight, bias if with_bias else None, self.stride, self.padding,
                           self.dilation, self.groups)
                if stop - first == x.shape[0]:
                    whole.append(part.numpy())         # one share: its result as it is
                else:
                    torch.from_numpy(out[first:stop]).copy_(part)

        jit.split_rows(x.shape[0], parallel, share, 1)
        return whole[0] if whole else out


class Float32Linear:
    """x @ weight.T (+ bias) for float32 x [rows, in]. Engine 'compiled': nmcompile.ir.linear_sums, each output one
    sum of fused multiply-adds in input order from zero, then the bias, over the nonzero inputs (or all of them: the
    same bits), whatever the call's rows, threads or machine (torch's CPU kernel, used here before, sums a row
    otherwise when a call has fewer than 16 rows, and splits long sums into blocks whose sizes depend on the shape);
    engine 'numpy': numpy's product. float64 products never come here (they stay numpy's, bit for bit)."""

    engine = "compiled"

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None):
        self.weight_t = np.ascontiguousarray(np.asarray(weight, np.float32).T)
        self.bias = None if bias is None else np.asarray(bias, np.float32)
        self._sums = None

    def set_engine(self, engine: str) -> None:
        self.engine = engine

    @property
    def sums(self):
        """The compiled engine's product (a linear_sums.LinearSums), its weights laid out on first use."""
        if self._sums is None:
            from nmcompile.ir.linear_sums import LinearSums  # numba: only when a compiled product runs

            self._sums = LinearSums(self.weight_t.T, self.bias)
        return self._sums

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.engine != "compiled" or x.dtype != np.float32:
            return x @ self.weight_t if self.bias is None else x @ self.weight_t + self.bias
        return self.sums(x)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch limited to the calling thread (OpenMP's thread count is per calling thread), restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def count_nonzero_bits(x: np.ndarray) -> int:
    """The values of a float array whose bits are not all zero (-0.0 counts: an estimate of its nonzero values for
    choosing a product, never a result): numpy counts nonzero integers several times faster than floats."""
    x = np.ascontiguousarray(x)
    return int(np.count_nonzero(x.view(np.dtype(f"i{x.dtype.itemsize}"))))


ESTIMATE_ROWS = 16   # rows whose nonzero values `estimate_nonzero` counts


def estimate_nonzero(x: np.ndarray) -> int:
    """About the number of nonzero values of x [R, ...] (for choosing a product, never a result): those of at most
    ESTIMATE_ROWS evenly spaced rows (`count_nonzero_bits`), scaled to R rows. At batch 1 of the conv net of
    benchmarks/bench_simulate.py the second convolution's input (100 x 10,800 values) took 0.16 ms to count whole."""
    rows = x.shape[0]
    if rows <= ESTIMATE_ROWS or not x.flags.c_contiguous:
        return count_nonzero_bits(x)
    sample = x[:: -(-rows // ESTIMATE_ROWS)]           # whole rows, counted in place (no copy)
    return int(np.count_nonzero(sample.view(np.dtype(f"i{x.dtype.itemsize}")))) * rows // sample.shape[0]


def int_conv(x: np.ndarray, weight: np.ndarray, stride, padding, dilation, groups: int) -> np.ndarray:
    """Exact integer convolution (float64 BLAS when provably exact, else int64)."""
    xmax = int(np.abs(x).max()) if x.size else 0
    bound = int(np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max()) if weight.size else 0
    if xmax * bound < EXACT_FLOAT_LIMIT:
        out = conv(x.astype(np.float64), weight.astype(np.float64), stride, padding, dilation, groups)
        return np.rint(out).astype(np.int64)
    return conv(x.astype(np.int64), weight.astype(np.int64), stride, padding, dilation, groups)
