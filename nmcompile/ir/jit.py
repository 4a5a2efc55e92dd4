"""Compiled (numba) loops of the reference simulator: the neuron updates and event-driven synaptic accumulation.

Each loop is the scalar form of a numpy kernel in `nmcompile.ir.kernels`, fused over the state variables and run
over all steps, samples and neurons of a call. They mirror the rounding rules of `nmcompile.ir.fixed` exactly:

    decay(x, d)    = trunc_shift(x * (4096 - d), 12) = sign(p) * (|p| >> 12),  p = x * (4096 - d)
    wrap_current   u - 2M if u > M;  u + 2M if u <= -M                 (M = 2^23, a single conditional wrap)
    clip_voltage   min(max(v, -(M - 1)), M - 1)

Integer arithmetic is int64 and wraps modulo 2^64 as numpy's does (numba emits plain LLVM add/mul/shl), so the
results equal the numpy kernels bit for bit also outside the ranges hardware can reach; tests/ir/test_jit.py checks
both on random and extreme states with hypothesis. Float loops do each operation in the array dtype in numpy's
order (no fastmath, no contraction into fused multiply-adds), so float64 and float32 results equal numpy's bits.

Importing this module imports numba and compiles nothing: each function compiles on its first call for the
argument types it sees, and the machine code is cached on disk (`cache_dir()`, a per-user cache directory, never
inside the installed package), so later processes load it instead of compiling again.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SOURCES_KEPT_DAYS = 7        # a cache of other sources unused this long is removed


def cache_dir() -> Path:
    """Where numba keeps the compiled kernels: $NUMBA_CACHE_DIR if set, else a directory named after the sources
    (`sources_key()`) in the user cache directory (platformdirs: ~/.cache/nmcompile/numba on Linux), else, when that
    cannot be written (a read-only home), in a per-user directory under the system's temporary directory.

    numba checks a cached function against its own file's time stamp only: after an edit of a module it inlines
    (an intrinsic of vector_ops, say), it would load the stale machine code. Keyed by the sources, every change of
    nmcompile/ir starts a cache of its own; the caches of other sources unused for SOURCES_KEPT_DAYS are removed."""
    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        return Path(configured)
    from platformdirs import user_cache_dir

    key = f"sources-{sources_key()}"
    for base in (Path(user_cache_dir("nmcompile")) / "numba",
                 Path(tempfile.gettempdir()) / f"nmcompile-numba-{os.getuid()}"):
        candidate = base / key
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            os.utime(candidate)                       # its time of last use, for the pruning of the others
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            _prune_other_sources(base, key)
            return candidate
    raise OSError("no writable directory for numba's cache; set NUMBA_CACHE_DIR")


def sources_key() -> str:
    """A digest of the compiled modules' sources (nmcompile/ir/*.py), 16 hex digits."""
    digest = hashlib.sha1()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _prune_other_sources(base: Path, key: str) -> None:
    """Remove the caches of other sources under `base` unused for SOURCES_KEPT_DAYS (best effort)."""
    oldest = time.time() - SOURCES_KEPT_DAYS * 86400
    for other in base.glob("sources-*"):
        try:
            if other.name != key and other.stat().st_mtime < oldest:
                shutil.rmtree(other, ignore_errors=True)
        except OSError:
            pass


_CACHE = cache_dir()
os.environ.setdefault("NUMBA_CACHE_DIR", str(_CACHE))

import numba  # noqa: E402  (the cache directory must be set before numba reads its configuration)
import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba.core import cgutils, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

if not numba.config.CACHE_DIR:       # numba was imported before this module, without NUMBA_CACHE_DIR
    numba.config.CACHE_DIR = str(_CACHE)

UV_LIMIT = 1 << 23                   # fixed.UV_LIMIT (a literal: numba compiles it as a constant)
DECAY_UNITY = 4096                   # fixed.DECAY_UNITY
DECAY_BITS = 12                      # fixed.DECAY_BITS
ACT_SHIFT = 6                        # fixed.ACT_SHIFT

RESET_NONE, RESET_ZERO, RESET_SUBTRACT = 0, 1, 2
TIMING_IMMEDIATE, TIMING_DELAYED, TIMING_SNNTORCH = 0, 1, 2

jit = numba.njit(cache=True, nogil=True)


INT64_MIN = -(1 << 63)
inline = numba.njit(inline="always")


@inline
def _decay(x, d):
    """trunc12(x * (4096 - d)), as fixed.decay: sign(p) * (|p| >> 12), branch-free: a negative p is rounded toward
    zero by adding 4095 before the arithmetic shift. p = -2^63 has no |p| in int64: numpy's sign * (|p| >> 12)
    gives +2^51 there, and so does this."""
    p = x * (DECAY_UNITY - d)
    q = (p + ((p >> 63) & (DECAY_UNITY - 1))) >> DECAY_BITS
    return (1 << 51) if p == INT64_MIN else q


@inline
def _wrap_current(u):
    """u - 2M if u > M, else u + 2M if u <= -M (one conditional wrap, as fixed.wrap_current)."""
    u = u - 2 * UV_LIMIT if u > UV_LIMIT else u
    return u + 2 * UV_LIMIT if u <= -UV_LIMIT else u


@inline
def _clip_voltage(v):
    return min(max(v, -(UV_LIMIT - 1)), UV_LIMIT - 1)


@jit
def integer_neuron(a, u, v, refractory_left, du_plus, dv, vth, bias, clears_current, spiking, compare_ge,
                   reset_mode, delayed, refractory, out, record_u, record_v, record):
    """Steps t = 0..T-1 of the integer CUBA LIF (QNeuron) for a[T, B, N] (int64 synaptic input).

    u, v, refractory_left [B, N] hold the state and are updated in place; out[T, B, N] receives the spikes (or v for
    a readout); with `record`, record_u/record_v[T, B, N] receive u and v after each step. Per-neuron parameters
    du_plus (= du + 1), dv, vth (already << 6) and bias (already mant << exp) are [N]."""
    steps, batch, size = a.shape
    zero_reset, subtract_reset = reset_mode == RESET_ZERO, reset_mode == RESET_SUBTRACT
    for t in range(steps):
        for b in range(batch):
            for n in range(size):
                drive = a[t, b, n] << ACT_SHIFT
                cur = _wrap_current(drive if clears_current else _decay(u[b, n], du_plus[n]) + drive)
                u[b, n] = cur
                old = v[b, n]
                h = _decay(old, dv[n]) + cur + bias[n]
                if not spiking:
                    h = _clip_voltage(h)
                    v[b, n] = h
                    out[t, b, n] = h
                else:
                    threshold = vth[n]
                    pending = delayed and (old >= threshold if compare_ge else old > threshold)
                    h = h - threshold if pending and subtract_reset else h
                    h = 0 if pending and zero_reset else h
                    h = _clip_voltage(h)
                    held = False
                    if refractory > 0:
                        held = refractory_left[b, n] > 0
                        h = 0 if held else h
                    fire = h >= threshold if compare_ge else h > threshold
                    if refractory > 0:
                        fire = fire and not held
                        left = refractory_left[b, n]
                        refractory_left[b, n] = refractory if fire else max(left - 1, 0)
                    reset = fire and not delayed
                    h = 0 if reset and zero_reset else h
                    h = h - threshold if reset and subtract_reset else h
                    v[b, n] = h
                    out[t, b, n] = 1 if fire else 0
                if record:
                    record_u[t, b, n] = cur
                    record_v[t, b, n] = v[b, n]


@jit
def integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, clears_current, compare_ge, reset_mode, out, first, stop):
    """`integer_neuron` for its most common form, with nothing to branch on per neuron (spiking, immediate reset, no
    refractory period, nothing recorded), for the neurons first..stop-1 (threads take disjoint ranges): the same
    operations, in a loop the compiler vectorises."""
    steps, batch, _ = a.shape
    zero_reset, subtract_reset = reset_mode == RESET_ZERO, reset_mode == RESET_SUBTRACT
    # slices and a loop from 0: a loop over n in range(first, stop) was measured not to vectorise
    du_plus, dv, vth, bias = du_plus[first:stop], dv[first:stop], vth[first:stop], bias[first:stop]
    for t in range(steps):
        for b in range(batch):
            u_row, v_row = u[b, first:stop], v[b, first:stop]
            a_row, out_row = a[t, b, first:stop], out[t, b, first:stop]
            for n in range(stop - first):
                drive = a_row[n] << ACT_SHIFT
                cur = _wrap_current(drive if clears_current else _decay(u_row[n], du_plus[n]) + drive)
                u_row[n] = cur
                h = _clip_voltage(_decay(v_row[n], dv[n]) + cur + bias[n])
                threshold = vth[n]
                fire = h >= threshold if compare_ge else h > threshold
                h = 0 if fire and zero_reset else h
                h = h - threshold if fire and subtract_reset else h
                v_row[n] = h
                out_row[n] = fire


@jit
def integer_neuron_fixed(a, u, v, du_plus, dv, vth, bias, clears_current, compare_ge, reset_mode, out, first, stop):
    """`integer_neuron_plain` with its three flags handed to it as constants, one branch per combination: the
    compiled loop then has the flags folded in (measured in the fused chain: 0.67 against 1.47 ns per update with
    the flags as run-time values, on blocks that stay in cache; over arrays that stream from memory, as
    `run_integer_neuron`'s, the run-time form was measured 15 % faster: 2.0 against 2.3 ns per update)."""
    if clears_current and compare_ge and reset_mode == RESET_ZERO:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, True, True, RESET_ZERO, out, first, stop)
    elif clears_current and compare_ge and reset_mode == RESET_SUBTRACT:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, True, True, RESET_SUBTRACT, out, first, stop)
    elif clears_current and compare_ge:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, True, True, RESET_NONE, out, first, stop)
    elif clears_current and not compare_ge and reset_mode == RESET_ZERO:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, True, False, RESET_ZERO, out, first, stop)
    elif clears_current and not compare_ge and reset_mode == RESET_SUBTRACT:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, True, False, RESET_SUBTRACT, out, first, stop)
    elif clears_current and not compare_ge:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, True, False, RESET_NONE, out, first, stop)
    elif not clears_current and compare_ge and reset_mode == RESET_ZERO:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, False, True, RESET_ZERO, out, first, stop)
    elif not clears_current and compare_ge and reset_mode == RESET_SUBTRACT:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, False, True, RESET_SUBTRACT, out, first, stop)
    elif not clears_current and compare_ge:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, False, True, RESET_NONE, out, first, stop)
    elif not clears_current and not compare_ge and reset_mode == RESET_ZERO:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, False, False, RESET_ZERO, out, first, stop)
    elif not clears_current and not compare_ge and reset_mode == RESET_SUBTRACT:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, False, False, RESET_SUBTRACT, out, first, stop)
    else:
        integer_neuron_plain(a, u, v, du_plus, dv, vth, bias, False, False, RESET_NONE, out, first, stop)


@jit
def float_neuron(x, v, i, refractory_left, alpha, syn_gain, beta, gain, bias, threshold, v_reset, reset_amount,
                 bn_scale, bn_shift, cuba, has_beta, unit_gain, zero_bias, mpbn, spiking, compare_ge, reset_mode,
                 timing, refractory, zero, one, out, record_v, record_i, record):
    """Steps t = 0..T-1 of the float neuron (nmcompile.ir.neurons) for x[T, B, N], in the dtype of the arrays.

    v, i, refractory_left [B, N] hold the state (i unused unless `cuba`) and are updated in place; out[T, B, N]
    receives the spikes as 0/1 (or the membrane of a readout); `zero`/`one` are 0 and 1 in the array dtype; with
    `record`, record_v/record_i receive v and i after each step. Parameters are [N] arrays; every operation and its
    order is that of kernels.FloatNeuron.step."""
    steps, batch, size = x.shape
    for t in range(steps):
        for b in range(batch):
            for n in range(size):
                if cuba:
                    current = alpha[n] * i[b, n] + syn_gain[n] * x[t, b, n]
                    i[b, n] = current
                else:
                    current = x[t, b, n]
                drive = current if unit_gain else gain[n] * current
                old = v[b, n]
                h = beta[n] * old + drive if has_beta else old + drive
                if not zero_bias:
                    h = h + bias[n]
                if not spiking:
                    v[b, n] = h
                    out[t, b, n] = h
                else:
                    theta = threshold[n]
                    pending = zero
                    if timing != TIMING_IMMEDIATE:
                        pending = one if (old >= theta if compare_ge else old > theta) else zero
                        if reset_mode == RESET_SUBTRACT:
                            h = h - pending * theta
                        elif reset_mode == RESET_ZERO and pending == one:
                            h = v_reset[n]
                    held = False
                    if refractory > 0:
                        held = refractory_left[b, n] > 0
                        if held:
                            h = v_reset[n]
                    y = h * bn_scale[n] + bn_shift[n] if mpbn else h
                    fire = y >= theta if compare_ge else y > theta
                    if refractory > 0:
                        fire = fire and not held
                        if fire:
                            refractory_left[b, n] = refractory
                        elif refractory_left[b, n] > 0:
                            refractory_left[b, n] -= 1
                    spike = one if fire else zero
                    if timing == TIMING_IMMEDIATE:
                        if reset_mode == RESET_ZERO:
                            if fire:
                                h = v_reset[n]
                        elif reset_mode == RESET_SUBTRACT:
                            h = h - spike * (reset_amount[n] if mpbn else theta)
                    elif timing == TIMING_SNNTORCH:
                        h = h - (spike - pending) * theta
                    v[b, n] = h
                    out[t, b, n] = spike
                if record:
                    record_v[t, b, n] = v[b, n]
                    if cuba:
                        record_i[t, b, n] = i[b, n]


@jit
def float_neuron_plain(x, v, beta, gain, bias, threshold, v_reset, has_beta, unit_gain, zero_bias, compare_ge,
                       reset_mode, zero, one, out):
    """`float_neuron` for its most common form (LIF or IF, spiking, immediate reset, no refractory period, no batch
    norm, nothing recorded): the same operations in the same order, in a loop without per-neuron branches."""
    steps, batch, size = x.shape
    zero_reset, subtract_reset = reset_mode == RESET_ZERO, reset_mode == RESET_SUBTRACT
    for t in range(steps):
        for b in range(batch):
            v_row, x_row, out_row = v[b], x[t, b], out[t, b]
            for n in range(size):
                drive = x_row[n] if unit_gain else gain[n] * x_row[n]
                h = beta[n] * v_row[n] + drive if has_beta else v_row[n] + drive
                h = h if zero_bias else h + bias[n]
                theta = threshold[n]
                fire = h >= theta if compare_ge else h > theta
                spike = one if fire else zero
                h = v_reset[n] if fire and zero_reset else h
                h = h - spike * theta if subtract_reset else h
                v_row[n] = h
                out_row[n] = spike


@jit
def accumulate_events(x, weight_t, out, acc):
    """out[r, :] = sum over k with x[r, k] != 0 of x[r, k] * weight_t[k, :]: a product that reads only the weight
    rows of active inputs (spikes). Each row sums in the scratch row `acc` [outputs] (its dtype: int32 or int64;
    exact when no partial sum overflows it), then is stored to out[r, :] (int64)."""
    rows, inputs = x.shape
    outputs = weight_t.shape[1]
    for r in range(rows):
        acc[:] = 0
        for k in range(inputs):
            value = x[r, k]
            if value == 0:
                continue
            if value == 1:
                for j in range(outputs):
                    acc[j] += weight_t[k, j]
            else:
                for j in range(outputs):
                    acc[j] += value * weight_t[k, j]
        for j in range(outputs):
            out[r, j] = acc[j]


PARALLEL_MIN_ADDS = 1 << 25      # below this much work per call (~3 ms), one thread: waking another costs from
                                 # ~10 us on an idle machine to milliseconds on a loaded one
PARALLEL_MIN_FLOAT_UPDATES = 1 << 20  # the same for float neuron updates (~1 ms: an update reads and writes its state)
_pool: ThreadPoolExecutor | None = None
_pool_threads = 0


def worker_threads() -> int:
    """Threads for the row-parallel loops: OMP_NUM_THREADS when set (the local executor's workers set it to their
    share of the cores), else the CPUs this process may run on less the threads other work keeps busy
    (`busy_elsewhere`), at least 1 (measured on a 2-core machine at load average 7: a helper thread that waits for a
    busy core made a single-sample run 2.5x slower)."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit():
        return max(1, int(configured))
    cpus = len(os.sched_getaffinity(0))
    return max(1, min(cpus, cpus - busy_elsewhere()))


def busy_elsewhere(loadavg: str | None = None) -> int:
    """Runnable threads besides the calling one, now: the running count of /proc/loadavg ("0.52 0.58 0.59 3/412 9")
    less 1, where Linux has it, else the 1-minute load average less 1, rounded. The 1-minute average counts this
    process's own recent threads as other work: after a minute of a two-thread run on 2 cores it reads 1.6 and the
    next chunks would run on one thread."""
    try:
        if loadavg is None:
            with open("/proc/loadavg") as f:
                loadavg = f.read()
        return max(0, int(loadavg.split()[3].split("/")[0]) - 1)
    except (OSError, IndexError, ValueError):
        return max(0, int(os.getloadavg()[0] - 1 + 0.5))


def accumulate(x: np.ndarray, weight_t: np.ndarray, acc_dtype: np.dtype, active: int) -> np.ndarray:
    """`accumulate_events` of x [rows, in] into a new int64 [rows, out]; the rows are split over `worker_threads()`
    threads (the loop releases the GIL) when the `active` inputs bring enough work."""
    rows, outputs = x.shape[0], weight_t.shape[1]
    out = np.empty((rows, outputs), dtype=np.int64)
    split_rows(rows, active * outputs >= PARALLEL_MIN_ADDS,
               lambda a, b: accumulate_events(x[a:b], weight_t, out[a:b], np.empty(outputs, dtype=acc_dtype)))
    return out


@jit
def _exponents_all_set(bits, first, stop, exponent):
    """Whether some bits[first:stop] & exponent == exponent (an IEEE float with every exponent bit set: inf or
    NaN), without an early exit (so LLVM makes it a vector reduction)."""
    found = False
    for i in range(first, stop):
        found |= (bits[i] & exponent) == exponent
    return found


FINITE_PARALLEL_MIN = 1 << 22    # values from which `all_finite` splits the array over the threads


def all_finite(x: np.ndarray) -> bool:
    """np.all(np.isfinite(x)) for a float32/float64 array, in one pass over its bits without a temporary array,
    split over `worker_threads()` threads from FINITE_PARALLEL_MIN values (measured at batch 128 of
    bench_simulate's conv net, a 59 MB chunk: 10.6 ms with numpy, which writes and reads a bool array first)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    if flat.dtype == np.float32:
        bits, exponent = flat.view(np.int32), np.int32(0x7F800000)
    elif flat.dtype == np.float64:
        bits, exponent = flat.view(np.int64), np.int64(0x7FF0000000000000)
    else:
        return bool(np.all(np.isfinite(flat)))
    found = split_rows(flat.size, flat.size >= FINITE_PARALLEL_MIN,
                       lambda a, b: _exponents_all_set(bits, a, b, exponent), 1)
    return not any(found)


PARALLEL_MIN_UPDATES = 1 << 17   # neuron updates per call (~150 us) from which `integer_neuron_plain` is split
PIECES_PER_THREAD = 4            # row ranges per thread: a thread that gets no CPU leaves its share to the others


def split_rows(rows: int, parallel: bool, part, pieces_per_thread: int = PIECES_PER_THREAD) -> list:
    """[part(a, b) for row ranges a..b that cover 0..rows]: one range, or with `parallel` `pieces_per_thread`
    ranges per `worker_threads()` thread, taken in turn by the calling thread and the pool's threads (`part` must
    release the GIL: a nogil compiled loop). The calling thread works too and cancels the helpers that have not started
    when it runs out of ranges, so on a loaded machine, where a helper may wait milliseconds for a CPU, the call
    costs about what one thread costs."""
    global _pool, _pool_threads
    threads = min(worker_threads(), rows) if parallel else 1
    if threads <= 1:
        return [part(0, rows)]
    if _pool is None or _pool_threads != threads:
        _pool, _pool_threads = ThreadPoolExecutor(threads - 1, thread_name_prefix="nmcompile-jit"), threads
    edges = np.linspace(0, rows, threads * pieces_per_thread + 1).astype(int)
    ranges = [(a, b) for a, b in itertools.pairwise(edges) if b > a]
    results: list = [None] * len(ranges)
    taken = itertools.count()                 # next() on a count is atomic under the GIL

    def work() -> None:
        for index in iter(taken.__next__, None):
            if index >= len(ranges):
                return
            results[index] = part(*ranges[index])

    helpers = [_pool.submit(work) for _ in range(threads - 1)]
    work()
    for helper in helpers:
        if not helper.cancel():
            helper.result()
    return results


def as_rows(x: np.ndarray) -> np.ndarray:
    """x as a C-contiguous [rows, last] view or copy (what the loops above index)."""
    return np.ascontiguousarray(x.reshape(-1, x.shape[-1]))


# -- register-tiled products of spikes (nmcompile.ir.event_product) ------------------------------------------
TILE_BITS = 512              # one SIMD register (AVX-512); LLVM splits it into two 256-bit halves on AVX2 machines
TILE_WIDTH = 64              # output columns per tile: two registers of int16 sums (measured: 32, 64 and 128
                             # columns within 10 % of each other), four of int32


def _tile_sum(acc_bits: int, floating: bool = False):
    """The intrinsic tile_sum(weight [inputs, TILE_WIDTH], active [n], count, out [m], at):

        out[at + j] = sum over a < count of weight[active[a], j]        for j < TILE_WIDTH

    in registers of TILE_BITS / acc_bits lanes of acc_bits-bit integers (weights sign-extended to them; a sum
    wraps as the lanes do, so the caller bounds the sums), stored sign-extended to out's dtype; `floating`: float32
    weights and out, one IEEE float32 addition per lane and active input from +0.0, in increasing a (one lane per
    output, so the vector width orders no sum). Written in LLVM IR so that the sums are vector registers across the
    loop over active inputs (numba's own loops keep them in memory)."""
    lanes = TILE_BITS // acc_bits
    vectors = TILE_WIDTH // lanes

    @intrinsic
    def tile_sum(typingctx, weight, active, count, out, at):
        if floating and not all(isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"
                                for a in (weight, out)):
            return None

        def codegen(context, builder, signature, args):
            weight_ty, active_ty, count_ty, out_ty, at_ty = signature.args
            intp = context.get_value_type(types.intp)
            weight_arr = context.make_array(weight_ty)(context, builder, args[0])
            active_arr = context.make_array(active_ty)(context, builder, args[1])
            out_arr = context.make_array(out_ty)(context, builder, args[3])
            weight_bits, out_bits = weight_ty.dtype.bitwidth, out_ty.dtype.bitwidth
            scalar = ir.FloatType() if floating else ir.IntType(acc_bits)
            acc_type = ir.VectorType(scalar, lanes)
            piece_type = acc_type if floating else ir.VectorType(ir.IntType(weight_bits), lanes)
            out_type = acc_type if floating else ir.VectorType(ir.IntType(out_bits), lanes)
            row_bytes = builder.extract_value(weight_arr.strides, 0)
            base = builder.bitcast(weight_arr.data, ir.IntType(8).as_pointer())
            sums = [cgutils.alloca_once_value(builder, ir.Constant(acc_type, None)) for _ in range(vectors)]
            count = context.cast(builder, args[2], count_ty, types.intp)
            with cgutils.for_range_slice(builder, ir.Constant(intp, 0), count, ir.Constant(intp, 1)) as (a, _):
                k = builder.sext(builder.load(builder.gep(active_arr.data, [a])), intp)
                row = builder.gep(base, [builder.mul(k, row_bytes)])
                for v in range(vectors):
                    offset = ir.Constant(intp, v * lanes * weight_bits // 8)
                    piece = builder.load(builder.bitcast(builder.gep(row, [offset]), piece_type.as_pointer()),
                                         align=1)
                    if floating:
                        builder.store(builder.fadd(builder.load(sums[v]), piece), sums[v])
                        continue
                    if weight_bits < acc_bits:
                        piece = builder.sext(piece, acc_type)
                    builder.store(builder.add(builder.load(sums[v]), piece), sums[v])
            first = builder.gep(out_arr.data, [context.cast(builder, args[4], at_ty, types.intp)])
            for v in range(vectors):
                target = builder.bitcast(builder.gep(first, [ir.Constant(intp, v * lanes)]), out_type.as_pointer())
                total = builder.load(sums[v])
                builder.store(total if floating else builder.sext(total, out_type), target, align=out_bits // 8)
            return context.get_dummy_value()

        return types.void(weight, active, count, out, at), codegen

    return tile_sum


tile_sum16 = _tile_sum(16)
tile_sum32 = _tile_sum(32)
tile_sum_float32 = _tile_sum(32, floating=True)


@jit
def spike_lists(x, active, starts):
    """The active inputs of every row of x, packed: active[starts[r] : starts[r + 1]] = the k with x[r, k] != 0
    (in order; `active` has room for x.size + 1 entries); returns whether every x is 0 or 1."""
    rows, inputs = x.shape
    binary = True
    found = 0
    for r in range(rows):
        starts[r] = found
        for k in range(inputs):
            value = x[r, k]
            active[found] = k
            found += value != 0
            binary &= (value == 0) | (value == 1)
    starts[rows] = found
    return binary


@jit
def tiled_sums(active, starts, weight_tiles, out, wide):
    """out[r, j] = sum of weight[k, j] over the k in active[starts[r] : starts[r + 1]] (weight_tiles [tiles,
    inputs, width]: the weights [inputs, outputs] cut into column tiles, zero-padded); int16 lanes, int32 when
    `wide`."""
    rows, outputs = out.shape
    tiles, _, width = weight_tiles.shape
    scratch = np.empty(width, dtype=out.dtype)
    for tile in range(tiles):
        weight = weight_tiles[tile]
        column = tile * width
        whole = column + width <= outputs
        for r in range(rows):
            target, at = (out[r], column) if whole else (scratch, 0)
            row_active, count = active[starts[r]:], starts[r + 1] - starts[r]
            if wide:
                tile_sum32(weight, row_active, count, target, at)
            else:
                tile_sum16(weight, row_active, count, target, at)
            if not whole:
                out[r, column:] = scratch[: outputs - column]


@jit
def spike_product(x, active, starts, weight_tiles, out, weight_max, max_active):
    """`spike_lists` then `tiled_sums` on rows of x; returns False, leaving out unwritten, when x is not binary,
    has more than `max_active` nonzero values or a partial sum could reach 2^31 (the caller then takes the general
    path). int16 lanes when every row's active count * weight_max < 2^15, else int32."""
    if not spike_lists(x, active, starts):
        return False
    most = 0
    for r in range(x.shape[0]):
        most = max(most, starts[r + 1] - starts[r])
    bound = most * weight_max
    if starts[x.shape[0]] > max_active or bound >= 1 << 31:
        return False
    tiled_sums(active, starts, weight_tiles, out, bound >= 1 << 15)
    return True


# -- glue: a neuron kernel (nmcompile.ir.kernels) run through the loops above ----------------------------------------
_MODES = {"none": RESET_NONE, "zero": RESET_ZERO, "subtract": RESET_SUBTRACT}
_TIMINGS = {"immediate": TIMING_IMMEDIATE, "delayed": TIMING_DELAYED, "snntorch_immediate": TIMING_SNNTORCH}


def _no_state() -> np.ndarray:
    return np.zeros((0, 0), dtype=np.int64)


def _records(rec: dict[str, np.ndarray], key: str, dtype: np.dtype) -> np.ndarray:
    """The [T, B, N] view of a recorded state, or an empty array when `key` is not recorded."""
    if key in rec:
        return rec[key].reshape(rec[key].shape[0], rec[key].shape[1], -1)
    return np.empty((0, 0, 0), dtype=dtype)


FLOAT_PARAMETERS = 10    # float_arguments' first items: the per-neuron arrays alpha .. bn_shift
FLAGS = {name: FLOAT_PARAMETERS + k for k, name in enumerate(   # float_arguments' items after them, by name
    ("cuba", "has_beta", "unit_gain", "zero_bias", "mpbn", "spiking", "compare_ge", "reset_mode", "timing",
     "refractory", "zero", "one"))}


def float_arguments(kernel) -> tuple:
    """The parameters of `float_neuron` (from alpha to one) for a kernels.FloatNeuron, built once per kernel."""
    if not hasattr(kernel, "_fused_args"):
        op, p, one = kernel.op, kernel.p, kernel.dtype.type(1)
        flat = {k: kernel._flat(p[k]) for k in ("gain", "bias", "threshold", "v_reset")}
        flat["beta"] = kernel._flat(p["beta"] if kernel.beta is not None else one)
        for key in ("alpha", "syn_gain"):
            flat[key] = kernel._flat(p[key] if kernel.cuba else one)
        flat["reset_amount"] = kernel._flat(p["reset_amount"] if kernel.mpbn else one)
        flat["bn_scale"] = kernel._flat(kernel.bn_scale if kernel.mpbn else one)
        flat["bn_shift"] = kernel._flat(kernel.bn_shift if kernel.mpbn else one)
        kernel._fused_args = (
            flat["alpha"], flat["syn_gain"], flat["beta"], flat["gain"], flat["bias"], flat["threshold"],
            flat["v_reset"], flat["reset_amount"], flat["bn_scale"], flat["bn_shift"], kernel.cuba,
            kernel.beta is not None, kernel.unit_gain, kernel.zero_bias, kernel.mpbn, op.spiking, op.compare == ">=",
            _MODES[op.reset_mode], _TIMINGS[op.reset_timing], op.refractory, kernel.dtype.type(0), one)
    return kernel._fused_args


def plain_float_form(kernel) -> bool:
    """Whether a kernels.FloatNeuron runs `float_neuron_plain` (when nothing is recorded): spiking, immediate reset,
    no synaptic current, membrane batch norm or refractory period."""
    op = kernel.op
    return (op.spiking and not kernel.cuba and not kernel.mpbn and op.reset_timing == "immediate"
            and not op.refractory)


SHORT_ROW = 32   # neurons per sample below which `float_neuron_plain` runs the batch as one row: LLVM vectorises its
                 # loop over a row 16 lanes x 2 at a time, so shorter rows ran scalar (one thread, 25 steps x 128
                 # samples: 3.6-4.4 ns per update for 8 to 16 neurons, 0.63-0.71 ns for 32 to 100)


def _repeated_parameters(kernel, batch: int, parameters: tuple) -> tuple:
    """The per-neuron parameter arrays, each repeated `batch` times (for the batch as one row), kept per batch."""
    cached = kernel.__dict__.get("_repeated")
    if cached is None or cached[0] != batch:
        cached = kernel._repeated = (batch, tuple(np.tile(p, batch) for p in parameters))
    return cached[1]


def run_float_neuron(kernel, x: np.ndarray, out: np.ndarray, rec: dict[str, np.ndarray]) -> None:
    """Advance a kernels.FloatNeuron by x [T, B, *shape] (its dtype, contiguous): spikes into out, states into rec
    (when recording), its v (and i) updated."""
    args = float_arguments(kernel)
    batch = x.shape[1]
    v = np.ascontiguousarray(kernel.v)
    flat_x = x.reshape(x.shape[0], batch, -1)
    if plain_float_form(kernel) and not rec:
        _, _, beta, gain, bias, threshold, v_reset, _, _, _, _, has_beta, unit_gain, zero_bias, _, _, compare_ge, \
            reset_mode, _, _, zero, one = args
        rows, flat_out = kernel._rows(v), out.reshape(flat_x.shape)
        steps, size = flat_x.shape[0], flat_x.shape[2]
        short = 1 < size < SHORT_ROW and batch > 1       # a range of samples as one row, parameters repeated per sample
        repeated = _repeated_parameters(kernel, batch, (beta, gain, bias, threshold, v_reset)) if short else ()

        def run(first: int, stop: int) -> None:      # samples are independent: split over the cores
            if short:
                float_neuron_plain(flat_x[:, first:stop].reshape(steps, 1, -1), rows[first:stop].reshape(1, -1),
                                   *(p[first * size:stop * size] for p in repeated), has_beta, unit_gain, zero_bias,
                                   compare_ge, reset_mode, zero, one, flat_out[:, first:stop].reshape(steps, 1, -1))
                return
            float_neuron_plain(flat_x[:, first:stop], rows[first:stop], beta, gain, bias, threshold, v_reset,
                               has_beta, unit_gain, zero_bias, compare_ge, reset_mode, zero, one,
                               flat_out[:, first:stop])

        split_rows(batch, flat_x.size >= PARALLEL_MIN_FLOAT_UPDATES, run)
        kernel.v = v
        return
    i = np.ascontiguousarray(kernel.i) if kernel.cuba else np.zeros((batch, 1), dtype=kernel.dtype)
    left = kernel.refractory_left if kernel.refractory_left is not None else _no_state()
    float_neuron(flat_x, kernel._rows(v), kernel._rows(i), kernel._rows(left), *args, out.reshape(flat_x.shape),
                 _records(rec, "v", v.dtype), _records(rec, "i", v.dtype), bool(rec))
    kernel.v = v
    if kernel.cuba:
        kernel.i = i


def run_integer_neuron(kernel, x: np.ndarray, out: np.ndarray, rec: dict[str, np.ndarray]) -> None:
    """Advance a kernels.IntegerNeuron by x [T, B, *shape] (int64, contiguous): spikes (or v) into out, u and v
    into rec (when recording), its u and v updated."""
    op = kernel.op
    if not hasattr(kernel, "_fused_args"):
        kernel._fused_args = (
            kernel._flat(kernel.du_plus), kernel._flat(kernel.dv), kernel._flat(kernel.vth), kernel._flat(kernel.bias),
            kernel.clears_current, op.spiking, op.compare == ">=", _MODES[op.reset_mode],
            op.reset_timing == "delayed", op.refractory)
    u, v = np.ascontiguousarray(kernel.u), np.ascontiguousarray(kernel.v)
    flat_x = x.reshape(x.shape[0], x.shape[1], -1)
    if op.spiking and op.reset_timing == "immediate" and not op.refractory and not rec:
        du_plus, dv, vth, bias, clears_current, _, compare_ge, reset_mode, _, _ = kernel._fused_args
        u_rows, v_rows, flat_out = kernel._rows(u), kernel._rows(v), out.reshape(flat_x.shape)
        split_rows(flat_x.shape[2], flat_x.size >= PARALLEL_MIN_UPDATES,
                   lambda first, stop: integer_neuron_plain(flat_x, u_rows, v_rows, du_plus, dv, vth, bias,
                                                            clears_current, compare_ge, reset_mode, flat_out, first,
                                                            stop))
    else:
        left = kernel.refractory_left if kernel.refractory_left is not None else _no_state()
        integer_neuron(flat_x, kernel._rows(u), kernel._rows(v), kernel._rows(left), *kernel._fused_args,
                       out.reshape(flat_x.shape), _records(rec, "u", u.dtype), _records(rec, "v", v.dtype), bool(rec))
    kernel.u, kernel.v = u, v
