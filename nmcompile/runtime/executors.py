"""Executors: where batch-parallel work runs. `open_executor(spec)` returns an `Executor`; `run_sharded` splits the
samples of a run over its workers.

    with open_executor("local://4") as ex:                    # 4 worker processes on this machine
        results = ex.map(top_level_function, items)           # in the order of items
        outputs = run_sharded("ref://", {}, "digits-loihi2", spikes, ex)   # == one board.run_all(spikes)

Specs: None or "serial" (in this process), "local" / "local://N" (a process pool of N workers, default
os.cpu_count(); started with `spawn`, so jobs are top-level, picklable functions and arguments), "dask://HOST:PORT"
(the workers of an existing Dask distributed scheduler, default port 8786; `?timeout=SECONDS` bounds the connection,
default 10). A job raising an `NmcError` comes back as the same error class, one line naming the job (the shard);
any other exception is re-raised as it is, with a note naming the job.

Samples are independent on every board (each starts from the network's initial state; with STDP each sample learns
on its own copy of the weights), so a run split into contiguous shards of the batch axis, each on its own board, is
identical to one run over all samples. Nothing at the top of this module imports numpy: a local worker limits the
BLAS threads of its numpy before importing it.
"""

from __future__ import annotations

import abc
import importlib
import io
import os
import pickle
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

from nmcompile.errors import NmcError, ShapeError, ToolMissingError, UnsupportedError

Progress = Callable[[str], None]

DASK_PORT = 8786
DASK_TIMEOUT = 10.0
SPECS = "serial (in this process), local://N (N worker processes; local: one per CPU), dask://HOST:PORT"
INSTALL_DASK = "pip install 'nmcompile[cluster]' (or: pip install dask distributed)"


def _script_hint() -> str:
    """Where the main module is a script without a `__main__` guard: the other way a spawned worker dies at once
    (it re-runs the script, which starts an executor again)."""
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    try:
        guarded = path is None or "__main__" in Path(path).read_text(errors="replace")
    except OSError:
        guarded = True
    if not guarded:
        return ("; or, in a script, the executor was started outside `if __name__ == \"__main__\":`, which every "
                "worker re-runs when it starts")
    return ""


class ExecutorError(NmcError):
    """An executor failed: a scheduler that does not answer, a worker process that died, a lost connection."""


# -- jobs: what crosses to a worker and back -----------------------------------------------------------------------

def _call(fn: Callable[[Any], Any], item: Any) -> tuple:
    """Run one job; an NmcError comes back as data (class and message), never as a pickled traceback."""
    try:
        return ("ok", fn(item))
    except NmcError as err:
        kind = type(err)
        return ("error", kind.__module__, kind.__qualname__, str(err), err.exit_code)


def _outcome(outcome: tuple, label: str) -> Any:
    """The value of a job, or its NmcError raised again in this process, prefixed with the job's label."""
    if outcome[0] == "ok":
        return outcome[1]
    _, module, qualname, message, exit_code = outcome
    kind: type = NmcError
    try:
        found = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        if isinstance(found, type) and issubclass(found, NmcError):
            kind = found
    except (ImportError, AttributeError):
        pass
    text = f"{label}: {message}"
    try:
        err = kind(text)
    except TypeError:                    # a subclass with another constructor: keep the message and the status
        err = NmcError(text)
    err.exit_code = exit_code
    raise err


def _require_picklable(fn: Callable, spec: str) -> None:
    try:
        pickle.dumps(fn)
    except Exception as err:
        raise TypeError(f"{spec} runs top-level functions in other processes; {fn!r} cannot be pickled ({err})") \
            from None


def _labels(labels: Sequence[str] | None, count: int) -> list[str]:
    if labels is None:
        return [f"job {i + 1}/{count}" for i in range(count)]
    labels = list(labels)
    if len(labels) != count:
        raise ValueError(f"{len(labels)} labels for {count} jobs")
    return labels


# -- executors ---------------------------------------------------------------------------------------------------

class Executor(abc.ABC):
    """`map(fn, items)` -> [fn(item) for item in items] in order, on `workers` workers. `in_process`: jobs run in
    this process (they may take callables such as a progress callback); `remote`: workers may be on other machines
    (files are shipped with the job). Use as a context manager, or call `close()`."""

    spec = "serial"
    in_process = False
    remote = False

    def __init__(self, workers: int):
        self.workers = workers

    @abc.abstractmethod
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, labels: Sequence[str] | None = None,
            on_result: Callable[[int, Any], None] | None = None) -> list:
        """fn(item) for every item, in the order of `items`. `labels` name the jobs in errors (default 'job i/n');
        `on_result(index, value)` is called in this process as each job finishes (in completion order)."""

    def close(self) -> None:  # noqa: B027 (nothing to release by default; pools and clients override it)
        """Release the workers (the serial executor holds none)."""

    def progress_queue(self) -> Any:
        """A queue jobs may put progress counts into and this process get them from (`get(timeout=...)`)."""
        import queue

        return queue.Queue()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec} workers={self.workers}>"


class SerialExecutor(Executor):
    """Every job in this process, one after the other."""

    in_process = True

    def __init__(self):
        super().__init__(1)

    def map(self, fn, items, *, labels=None, on_result=None) -> list:
        items = list(items)
        names = _labels(labels, len(items))
        results = []
        for i, item in enumerate(items):
            try:
                outcome = _call(fn, item)
            except Exception as err:
                err.add_note(f"in {names[i]} on {self.spec}")
                raise
            results.append(_outcome(outcome, names[i]))
            if on_result is not None:
                on_result(i, results[-1])
        return results


def _limit_threads(threads: int) -> None:
    """Worker initializer: numpy's BLAS in each of N workers uses its share of the CPUs (unless the user set it)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


class LocalExecutor(Executor):
    """A concurrent.futures process pool of `workers` processes started with `spawn` (safe with threads in the
    parent; jobs and their arguments are pickled, so functions must be defined at the top level of a module)."""

    def __init__(self, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        super().__init__(workers)
        self.spec = f"local://{workers}"
        threads = max(1, (os.cpu_count() or 1) // workers)
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_limit_threads, initargs=(threads,))
        self._manager = None                       # a multiprocessing manager, for progress queues

    def map(self, fn, items, *, labels=None, on_result=None) -> list:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        _require_picklable(fn, self.spec)
        items = list(items)
        names = _labels(labels, len(items))
        futures = {self._pool.submit(_call, fn, item): i for i, item in enumerate(items)}
        results: list = [None] * len(items)
        try:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    raise ExecutorError(f"{names[i]}: a worker process of {self.spec} died (killed, or out of "
                                        f"memory{_script_hint()})") from None
                except Exception as err:
                    err.add_note(f"in {names[i]} on {self.spec}")
                    raise
                results[i] = _outcome(outcome, names[i])
                if on_result is not None:
                    on_result(i, results[i])
        finally:
            for future in futures:
                future.cancel()
        return results

    def progress_queue(self) -> Any:
        import multiprocessing

        if self._manager is None:
            self._manager = multiprocessing.get_context("spawn").Manager()
        return self._manager.Queue()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._manager is not None:
            self._manager.shutdown()


class DaskExecutor(Executor):
    """The workers of an existing Dask distributed scheduler (`dask scheduler`, `dask worker tcp://HOST:PORT`);
    `workers` counts their threads. The workers need nmcompile (and the tools of the board) installed."""

    remote = True

    def __init__(self, address: str, timeout: float = DASK_TIMEOUT):
        try:
            from distributed import Client
        except ImportError:
            raise ToolMissingError(f"dask://{address} needs Dask's distributed client, which is not installed; "
                                   f"install it with {INSTALL_DASK}") from None
        self.spec = f"dask://{address}"
        self.address = address
        start_hint = (f"start one with `dask scheduler --port {address.rsplit(':', 1)[-1]}` and workers with "
                      f"`dask worker tcp://{address}`")
        host, port = address.rsplit(":", 1)
        try:                                      # nothing listening: say so at once, not after the timeout
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except OSError as err:
            reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__)
            raise ExecutorError(f"no Dask scheduler answers at {address} ({reason.lower()}); {start_hint}") from None
        # Something listens: ask it who it is within the timeout (distributed's Client waits forever for a peer that
        # accepts the connection and never answers).
        kind = _identify(address, timeout)
        if kind != "Scheduler":
            what = (f"no Dask scheduler answered at {address} within {timeout:g} s (something there accepts "
                    "connections but does not answer as Dask)" if kind is None
                    else f"{address} is a Dask {kind.lower()}, not a scheduler")
            raise ExecutorError(f"{what}; {start_hint}")
        try:
            self._client = Client(f"tcp://{address}", timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ExecutorError(f"no Dask scheduler answered at {address} within {timeout:g} s "
                                f"({' '.join(str(err).split())[:120] or type(err).__name__}); {start_hint}") from None
        try:
            self._client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            self._client.close()
            raise ExecutorError(f"the Dask scheduler at {address} has no workers (waited {timeout:g} s); start "
                                f"some with `dask worker tcp://{address}`") from None
        super().__init__(max(1, sum(self._client.nthreads().values())))

    def map(self, fn, items, *, labels=None, on_result=None) -> list:
        from distributed import as_completed

        _require_picklable(fn, self.spec)
        items = list(items)
        names = _labels(labels, len(items))
        futures = self._client.map(_call, [fn] * len(items), items, pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        results: list = [None] * len(items)
        done = False
        try:
            for future in as_completed(futures, loop=self._client.loop):
                i = index[future.key]
                try:
                    outcome = future.result()
                except (OSError, TimeoutError) as err:
                    raise ExecutorError(f"{names[i]}: lost the Dask scheduler at {self.address} "
                                        f"({type(err).__name__})") from None
                except Exception as err:
                    if type(err).__name__ == "KilledWorker":
                        raise ExecutorError(f"{names[i]}: the Dask workers running it died (killed, or out of "
                                            f"memory) on {self.spec}") from None
                    err.add_note(f"in {names[i]} on {self.spec}")
                    raise
                results[i] = _outcome(outcome, names[i])
                if on_result is not None:
                    on_result(i, results[i])
            done = True
        finally:
            if not done:                          # a job failed: the others are not needed
                self._client.cancel(futures)
        return results

    def progress_queue(self) -> Any:
        from distributed import Queue

        return Queue(client=self._client)

    def close(self) -> None:
        self._client.close()


def _identify(address: str, timeout: float) -> str | None:
    """The 'type' a Dask server at `address` reports for itself ('Scheduler', 'Worker'), or None when it does not
    answer within `timeout` seconds. Runs its own event loop in a thread (the caller may be inside one)."""
    import asyncio
    import threading

    from distributed.comm import connect

    async def ask() -> str | None:
        comm = await connect(f"tcp://{address}", timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            reply = await comm.read()
        finally:
            await comm.close()
        return reply.get("type") if isinstance(reply, dict) else None

    answer: list[str | None] = [None]

    def probe() -> None:
        try:
            answer[0] = asyncio.run(asyncio.wait_for(ask(), timeout))
        except Exception:
            answer[0] = None

    thread = threading.Thread(target=probe, name="nmcompile-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return answer[0]


def _positive_workers(text: str, spec: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UnsupportedError(f"executor {spec!r}: the number of workers must be a positive integer, e.g. local://4")
    return value


def open_executor(spec: str | None) -> Executor:
    """The executor a spec names: None or 'serial', 'local' or 'local://N', 'dask://HOST:PORT[?timeout=SECONDS]'."""
    if spec is None or spec in ("serial", "serial://"):
        return SerialExecutor()
    if spec in ("local", "local://"):
        return LocalExecutor(os.cpu_count() or 1)
    parsed = urlparse(spec)
    if parsed.scheme == "local" and "://" in spec:
        if parsed.query or parsed.path not in ("", "/"):
            raise UnsupportedError(f"executor {spec!r}: write local://N (N worker processes)")
        return LocalExecutor(_positive_workers(parsed.netloc, spec))
    if parsed.scheme == "dask" and "://" in spec:
        return _open_dask(spec, parsed)
    raise UnsupportedError(f"unknown executor {spec!r}; use {SPECS}")


def _open_dask(spec: str, parsed) -> DaskExecutor:
    from nmcompile.runtime.board import parse_query, seconds_option

    if not parsed.hostname or parsed.path not in ("", "/"):
        raise UnsupportedError(f"executor {spec!r}: write dask://HOST:PORT (the address of a running `dask "
                               "scheduler`)")
    try:
        port = parsed.port or DASK_PORT
    except ValueError:
        raise UnsupportedError(f"executor {spec!r}: the port must be a number, e.g. dask://HOST:{DASK_PORT}") from None
    try:
        query = dict(parse_qsl(parsed.query, keep_blank_values=True, strict_parsing=bool(parsed.query)))
    except ValueError:
        raise UnsupportedError(f"executor {spec!r}: malformed options; write dask://HOST:PORT?timeout=SECONDS") \
            from None
    options = parse_query("dask", query, [seconds_option("timeout")])
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return DaskExecutor(f"{host}:{port}", options.get("timeout", DASK_TIMEOUT))


@contextmanager
def using_executor(executor: Executor | str | None) -> Iterator[Executor]:
    """An Executor as given (left open), or the one a spec opens (closed at the end)."""
    if isinstance(executor, Executor):
        yield executor
        return
    with open_executor(executor) as opened:
        yield opened


# -- sharded runs ------------------------------------------------------------------------------------------------

@dataclass
class _Packed:
    """A network file or artifact directory shipped with a job to workers that may not see this file system."""

    name: str
    data: bytes

    @classmethod
    def of(cls, path: Path) -> _Packed:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(path, arcname=path.name)
        return cls(path.name, buffer.getvalue())

    def unpack(self, into: Path) -> Path:
        with tarfile.open(fileobj=io.BytesIO(self.data)) as tar:
            tar.extractall(into, filter="data")
        return into / self.name


@dataclass
class _Shard:
    board_url: str
    options: dict[str, str]
    source: Any                                   # a Graph, a path (str) or a _Packed copy
    spikes: Any                                   # [T, b, ...]
    progress: Progress | None = None              # in-process executors only
    steps_done: Any = None                        # update(count): steps x samples finished, for a progress bar


@dataclass
class _ShardResult:
    outputs: dict[str, Any]
    latency: int
    messages: list[str]
    seconds: float


def _run_shard(shard: _Shard) -> _ShardResult:
    """One job: open the board, load the source, run the shard from a fresh state, close the board."""
    from nmcompile.runtime.board import open_board

    start = time.perf_counter()
    messages: list[str] = []
    progress = shard.progress or messages.append
    unpacked = None
    try:
        source = shard.source
        if isinstance(source, _Packed):
            unpacked = Path(tempfile.mkdtemp(prefix="nmc-shard-"))
            source = source.unpack(unpacked)
        with open_board(shard.board_url, progress=progress, **shard.options) as board:
            board.load(source)
            if shard.steps_done is None:
                outputs = board.run_all(shard.spikes)
            else:                                 # in slices, each reported as it finishes
                from nmcompile.runtime.progress import run_in_slices

                outputs = run_in_slices(board, shard.spikes, shard.steps_done)
            latency = board.latency
    finally:
        if unpacked is not None:
            shutil.rmtree(unpacked, ignore_errors=True)
    return _ShardResult(dict(outputs), int(latency), messages, time.perf_counter() - start)


@dataclass
class ShardedRun:
    """The joined outputs of a sharded run and what the boards reported."""

    outputs: dict[str, Any]
    latency: int
    shards: list[tuple[int, int]] = field(default_factory=list)   # [start, stop) of every shard

    def single_output(self) -> str:
        names = [n for n in self.outputs if not n.startswith("weight:")]
        if len(names) != 1:
            raise UnsupportedError(f"run() returns the one output of a network; this one has {len(names)} "
                                   f"({', '.join(names)}): use run_all()")
        return names[0]


def shard_bounds(batch: int, shards: int) -> list[tuple[int, int]]:
    """`shards` contiguous [start, stop) ranges over `batch` samples, sizes differing by at most one."""
    shards = max(1, min(shards, batch))
    size, extra = divmod(batch, shards)
    bounds, start = [], 0
    for i in range(shards):
        stop = start + size + (i < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def _describe_source(source: Any, executor: Executor) -> Any:
    """What a job loads: a Graph as it is; a path made absolute, and packed for workers on other machines."""
    from nmcompile.ir.graph import Graph

    if isinstance(source, Graph):
        return source
    path = Path(str(source)).resolve()
    if executor.remote and path.exists():
        return _Packed.of(path)
    return str(path)


def run_shards(board_url: str, board_options: Mapping[str, str] | None, artifact_or_source: object, spikes,
               executor: Executor, shards: int | None = None, progress: Progress | None = None,
               bar: Any = None) -> ShardedRun:
    """`run_sharded`, also returning the latency the boards reported and the shard ranges. `bar`: a ProgressBar
    (nmcompile.runtime.progress) the workers advance by sample-steps as they go, when it is enabled; messages to
    `progress` then go through `bar.above` so they never share the bar's line."""
    import numpy as np

    from nmcompile.runtime.board import known_schemes, open_board

    spikes = np.asarray(spikes)
    if spikes.ndim < 3:
        raise ShapeError(f"spikes must be [T, B, N], got an array of shape {spikes.shape}")
    parsed = urlparse(board_url)
    if "://" not in board_url or parsed.scheme not in known_schemes():
        open_board(board_url)                     # raises the board error naming the known schemes
    if not executor.in_process and (parsed.netloc or parsed.path not in ("", "/")):
        raise UnsupportedError(f"{board_url} names one device, which parallel workers cannot share: run it without "
                               f"--executor (serial), not on {executor.spec}")
    if shards is not None and (not isinstance(shards, int) or shards < 1):
        raise UnsupportedError(f"shards must be a positive integer, got {shards!r}")
    batch = spikes.shape[1]
    bounds = shard_bounds(batch, shards if shards is not None else executor.workers)
    count = len(bounds)
    labels = [f"shard {i + 1}/{count} (samples {a}..{b - 1})" if b > a else f"shard {i + 1}/{count} (no samples)"
              for i, (a, b) in enumerate(bounds)]
    if progress is not None and bar is not None and bar.enabled:
        progress = bar.above(progress)            # shard messages on their own lines, the bar redrawn below
    report = progress or (lambda message: None)
    source = _describe_source(artifact_or_source, executor)
    options = {str(k): str(v) for k, v in (board_options or {}).items()}
    jobs = []
    for i, (a, b) in enumerate(bounds):
        live = None
        if executor.in_process and progress is not None:
            live = (lambda prefix: lambda message: progress(f"{prefix}: {message}"))(f"shard {i + 1}/{count}")
        jobs.append(_Shard(board_url, options, source, np.ascontiguousarray(spikes[:, a:b]), live))
    report(f"running {batch} samples on {board_url} in {count} shard{'s' if count > 1 else ''} on {executor.spec} "
           f"({executor.workers} worker{'s' if executor.workers > 1 else ''})")

    def finished(i: int, result: _ShardResult) -> None:
        for message in result.messages:
            report(f"shard {i + 1}/{count}: {message}")
        report(f"{labels[i]} done in {result.seconds:.1f} s")

    if bar is None or not bar.enabled:
        results: list[_ShardResult] = executor.map(_run_shard, jobs, labels=labels, on_result=finished)
    else:
        from nmcompile.runtime.progress import WorkerProgress

        with WorkerProgress(bar, executor.progress_queue()) as sink:
            for job in jobs:
                job.steps_done = sink
            results = executor.map(_run_shard, jobs, labels=labels, on_result=finished)
    return ShardedRun(_join(results, labels), results[0].latency, bounds)


def _join(results: list[_ShardResult], labels: list[str]) -> dict[str, Any]:
    """Outputs [T, b, ...] joined along the batch axis, learned weights [b, out, in] along axis 0, in shard order."""
    import numpy as np

    names = list(results[0].outputs)
    for result, label in zip(results, labels, strict=True):
        if list(result.outputs) != names:
            raise NmcError(f"{label} returned outputs {sorted(result.outputs)}, the first shard {sorted(names)}")
    if len(results) == 1:
        return results[0].outputs
    return {name: np.concatenate([np.asarray(r.outputs[name]) for r in results],
                                 axis=0 if name.startswith("weight:") else 1)
            for name in names}


def run_sharded(board_url: str, board_options: Mapping[str, str] | None, artifact_or_source: object, spikes,
                executor: Executor, shards: int | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
    """`board.run_all(spikes)` with the B samples of spikes [T, B, ...] split into contiguous shards (balanced; by
    default one per worker) run on `executor`: each job opens its own board (`open_board(board_url,
    **board_options)`), loads `artifact_or_source` (a Graph, a network file or an artifact directory), runs its
    shard and closes the board. The outputs ([T, B, *shape]) and learned weights ('weight:<projection>',
    [B, out, in]) are joined in sample order: the same arrays as one run over all samples. Progress lines (the
    boards' own, prefixed with the shard, and one per finished shard) go to `progress`."""
    return run_shards(board_url, board_options, artifact_or_source, spikes, executor, shards, progress).outputs
