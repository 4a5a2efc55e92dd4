"""The float32 vector intrinsics of the event-driven convolution (nmcompile.ir.vector_ops) against numpy, exactly:
each lane is one IEEE float32 operation in the same order as numpy's, and the transpose only moves values."""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest

from nmcompile.ir import arraymath
from nmcompile.ir.vector_ops import (
    MAX_UNROLLED_RUN,
    VECTOR,
    add_runs,
    add_scaled_runs,
    list_nonzero,
    prefetch_array,
    store_transposed,
)


@numba.njit
def _add_runs(target, at, at_step, source, start, start_step, runs, count):
    add_runs(target, at, at_step, source, start, start_step, runs, count)


@numba.njit
def _add_scaled_runs(target, at, at_step, source, start, start_step, runs, count, scale):
    add_scaled_runs(target, at, at_step, source, start, start_step, runs, count, scale)


@numba.njit
def _store_transposed(scratch, lanes, bias, out, positions, c_out, first, group):
    store_transposed(scratch, lanes, bias, out, positions, c_out, first, group)


@numba.njit
def _nonzero_columns(line, listed):
    """The listing loop of float_events.conv_events over a channel's plane: whole vectors, then one value per step."""
    width, count = line.shape[0], 0
    whole = width - width % VECTOR
    for start in range(0, whole, VECTOR):
        count += list_nonzero(line, start, listed, count)
    for p in range(whole, width):
        listed[count] = p
        count += line[p] != 0
    return count


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("count", [0, 1, 2, 5, MAX_UNROLLED_RUN, MAX_UNROLLED_RUN + 1, 13])
def test_add_runs_equals_numpy_lane_for_lane(scaled, count):
    """Every unrolled run length, and the loop beyond them (and an empty run: no add)."""
    rng = np.random.default_rng(count)
    at, at_step, start, start_step, runs = 45 * VECTOR, -15 * VECTOR, 3 * VECTOR, 14 * VECTOR, 3
    target = rng.normal(0, 1, 60 * VECTOR).astype(np.float32)
    source = rng.normal(0, 1, 50 * VECTOR).astype(np.float32)
    scale = np.float32(-2.75)
    expected = target.copy()
    for run in range(runs):               # numpy: product then sum, both rounded to float32, run after run
        to = slice(at + run * at_step, at + run * at_step + count * VECTOR)
        piece = source[start + run * start_step:start + run * start_step + count * VECTOR]
        expected[to] = expected[to] + (scale * piece if scaled else piece)
    if scaled:
        _add_scaled_runs(target, at, at_step, source, start, start_step, runs, count, scale)
    else:
        _add_runs(target, at, at_step, source, start, start_step, runs, count)
    np.testing.assert_array_equal(target, expected)


def test_add_runs_accumulate_overlapping_runs_in_order():
    """Runs that hit the same vector (at_step 0) add one after the other: the float32 sum in run order."""
    source = np.repeat(np.array([1e8, 1.0, -1e8, 1.0], np.float32), VECTOR)
    target = np.zeros(VECTOR, np.float32)
    _add_runs(target, 0, 0, source, 0, VECTOR, 4, 1)
    expected = np.zeros(VECTOR, np.float32)
    for run in range(4):
        expected = expected + source[run * VECTOR:(run + 1) * VECTOR]
    np.testing.assert_array_equal(target, expected)
    assert np.all(target == np.float32(1.0))          # ((1e8 + 1) - 1e8) + 1 in float32: the first 1 is lost


@pytest.mark.parametrize(("lanes", "c_out", "group"), [(16, 12, 0), (32, 32, 1), (48, 40, 2)])
def test_store_transposed_moves_a_tile_channels_first_and_restores_the_bias(lanes, c_out, group):
    rng = np.random.default_rng(1)
    positions, first = 50, 16
    scratch = rng.normal(0, 1, positions * lanes).astype(np.float32)
    original = scratch.copy().reshape(positions, lanes)
    bias = rng.normal(0, 1, lanes).astype(np.float32)
    out = np.full(c_out * positions, np.nan, np.float32)
    _store_transposed(scratch, lanes, bias, out, positions, c_out, first, group)
    channels = range(VECTOR * group, min(VECTOR * (group + 1), c_out))
    tile = slice(first, first + VECTOR)
    grid = out.reshape(c_out, positions)
    for o in channels:
        np.testing.assert_array_equal(grid[o, tile], original[tile, o])
    untouched = np.ones(grid.shape, bool)
    untouched[list(channels), tile] = False
    assert np.all(np.isnan(grid[untouched]))           # nothing else written, no channel past c_out
    restored = scratch.reshape(positions, lanes)
    lanes_of_group = slice(VECTOR * group, VECTOR * (group + 1))
    np.testing.assert_array_equal(restored[tile, lanes_of_group],
                                  np.broadcast_to(bias[lanes_of_group], (VECTOR, VECTOR)))
    kept = np.ones(restored.shape, bool)
    kept[tile, lanes_of_group] = False
    np.testing.assert_array_equal(restored[kept], original[kept])


@pytest.mark.parametrize("width", [1, 15, 16, 17, 30, 34, 64, 70, 900])
def test_nonzero_inputs_from_compress_stores_equal_flatnonzero(width):
    """list_nonzero packs the indices of nonzero values (-0.0 is zero, as for numpy), ascending; nothing is written
    past the listed ones but within the vector's 16 slots."""
    rng = np.random.default_rng(width)
    for density in (0.0, 0.1, 0.5, 1.0):
        line = (rng.random(width) < density).astype(np.float32) * rng.normal(0, 1, width).astype(np.float32)
        line[rng.random(width) < 0.1] = -0.0
        listed = np.full(width + VECTOR, -7, np.int32)
        count = _nonzero_columns(line, listed)
        np.testing.assert_array_equal(listed[:count], np.flatnonzero(line))
        assert (listed[count + VECTOR:] == -7).all()


def test_nonzero_listing_without_avx512_takes_the_portable_compress_store(tmp_path):
    """Compiled for a CPU without AVX-512 (NUMBA_CPU_NAME=generic, a fresh cache), list_nonzero takes LLVM's masked
    compress-store, which LLVM expands into scalar code: the same list."""
    import subprocess
    import sys

    script = (
        "import numba, numpy as np\n"
        "from nmcompile.ir import vector_ops as V\n"
        "assert not V.REGISTER_COMPRESS\n"
        "@numba.njit\n"
        "def lst(v, out):\n"
        "    c = 0\n"
        "    for s in range(0, v.shape[0] - 15, 16):\n"
        "        c += V.list_nonzero(v, s, out, c)\n"
        "    return c\n"
        "v = (np.random.default_rng(3).random(64) < 0.3).astype(np.float32)\n"
        "out = np.empty(80, np.int32)\n"
        "c = lst(v, out)\n"
        "assert np.array_equal(out[:c], np.flatnonzero(v)), (out[:c], np.flatnonzero(v))\n"
        "print(c)\n")
    env = {**__import__("os").environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 0


def test_float32_linear_stays_within_the_summation_bound_and_the_numpy_engine_is_numpy():
    rng = np.random.default_rng(2)
    weight, bias = rng.normal(0, 1, (10, 300)), rng.normal(0, 1, 10)
    x = (rng.random((7, 300)) < 0.2).astype(np.float32)
    linear = arraymath.Float32Linear(weight, bias)
    exact = x.astype(np.float64) @ weight.astype(np.float32).astype(np.float64).T + bias.astype(np.float32)
    magnitude = np.abs(x) @ np.abs(weight.astype(np.float32)).T.astype(np.float64) + np.abs(bias)
    result = linear(x)
    assert result.dtype == np.float32
    assert np.all(np.abs(result - exact) <= 302 * np.finfo(np.float32).eps * magnitude)
    integer = arraymath.Float32Linear(rng.integers(-9, 10, (10, 300)), None)    # integer sums: exact in any order
    np.testing.assert_array_equal(integer(x), x @ integer.weight_t)
    linear.set_engine("numpy")
    np.testing.assert_array_equal(linear(x), x @ linear.weight_t + linear.bias)


def test_intrinsics_refuse_arrays_they_cannot_index_by_pointer():
    """A strided or float64 array has no signature (a typing error at compile time, never a wrong address)."""
    strided = np.zeros(4 * VECTOR, np.float32)[::2]
    with pytest.raises(numba.core.errors.TypingError):
        _add_runs(strided, 0, 0, np.zeros(VECTOR, np.float32), 0, 0, 1, 1)
    with pytest.raises(numba.core.errors.TypingError):
        _nonzero_columns(np.zeros(2 * VECTOR), np.empty(3 * VECTOR, np.int32))


@numba.njit
def _prefetch_rows(x):
    for t in range(x.shape[0]):
        prefetch_array(x[t])
    return x.shape[0]


def test_prefetch_is_a_hint_that_changes_nothing():
    """prefetch_array compiles for C-contiguous arrays of any dtype and size (empty too) and leaves them as they were;
    a strided array has no signature."""
    for x in (np.arange(3 * 2 * 1156, dtype=np.float32).reshape(3, 2, 1156), np.ones((4, 7), np.int8),
              np.zeros((2, 0), np.float64)):
        before = x.copy()
        assert _prefetch_rows(x) == x.shape[0]
        np.testing.assert_array_equal(x, before)
    with pytest.raises(numba.core.errors.TypingError):
        _prefetch_rows(np.zeros((4, 8), np.float32)[:, ::2])
