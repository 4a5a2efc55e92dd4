"""Hardware in the loop: run an artifact's reference inputs on a board and compare with the golden model.

    result = verify_artifact(Path("out"), "lava://", progress=print)
    result = verify_artifact(Path("out"), "verilator://", executor="local://4")   # samples sharded over 4 processes
    result.passed, result.lines(), result.junit_xml()
    result = verify_reporting_errors(Path("out"), "serial:///dev/ttyUSB0")     # a board failing: result.error

A board that fails during the run (no answer, a device that cannot be opened, a corrupt frame, a worker that
died: `BoardError`, `ExecutorError`) ends the check; `verify_reporting_errors` keeps that one-line error in the
result, so the JUnit report still says what happened (a testcase `run` with an <error> element, errors="1").
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmcompile import artifact
from nmcompile.errors import BoardError, NmcError, UnsupportedError
from nmcompile.runtime.board import Board, Progress, open_board
from nmcompile.runtime.executors import Executor, ExecutorError, run_sharded, using_executor

RUN_FAILURES = (BoardError, ExecutorError)      # a board or its workers failing while the check runs


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    seconds: float = 0.0


@dataclass
class VerifyResult:
    artifact: Path
    board: str
    checks: list[Check] = field(default_factory=list)
    error: NmcError | None = None              # the failure that ended the run (RUN_FAILURES); no checks then
    error_seconds: float = 0.0                 # how long the run went before it

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.passed for c in self.checks)

    def lines(self) -> list[str]:
        """PASS/FAIL per check and the verdict; nothing for a run that ended in an error (its one line is the
        report)."""
        if self.error is not None:
            return []
        lines = [f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in self.checks]
        verdict = "equals" if self.passed else "DIFFERS FROM"
        lines.append(f"{self.board} {verdict} the integer reference of {self.artifact}")
        return lines

    def junit_xml(self) -> bytes:
        """One testcase per check (a <failure> when it differs); a run that ended in an error is one testcase `run`
        with an <error> element whose message is the error's one line."""
        errors = int(self.error is not None)
        suite = ET.Element("testsuite", name="nmcompile-verify", tests=str(len(self.checks) + errors),
                           failures=str(sum(not c.passed for c in self.checks)), errors=str(errors),
                           time=f"{sum(c.seconds for c in self.checks) + self.error_seconds:.3f}")
        for c in self.checks:
            case = ET.SubElement(suite, "testcase", classname=f"{self.board}", name=c.name, time=f"{c.seconds:.3f}")
            if not c.passed:
                ET.SubElement(case, "failure", message=c.detail).text = c.detail
        if self.error is not None:
            case = ET.SubElement(suite, "testcase", classname=f"{self.board}", name="run",
                                 time=f"{self.error_seconds:.3f}")
            ET.SubElement(case, "error", message=str(self.error), type=type(self.error).__name__).text = \
                str(self.error)
        return ET.tostring(ET.ElementTree(suite).getroot(), encoding="utf-8", xml_declaration=True)


def first_difference(ours: np.ndarray, theirs: np.ndarray, layer: str = "") -> str:
    """Where the board first differs: the earliest step (then sample, then neuron) of layer `layer`."""
    index = tuple(int(i) for i in np.argwhere(ours != theirs)[0])
    where = f"layer {layer}, " if layer else ""
    return (f"first at step {index[0]}, sample {index[1]}, {where}neuron {index[2:]}: board {theirs[index]} vs "
            f"reference {ours[index]}")


def verify_artifact(path: Path, board_url: str, board: Board | None = None,
                    progress: Progress | None = None, executor: Executor | str | None = None) -> VerifyResult:
    """Run reference/inputs.npz (plus L silent steps) on the board (`board`, else the one `board_url` opens) and
    compare every output at every step, and the learned weights where the board reports them.

    `executor` (an Executor or a spec: 'serial', 'local://N', 'dask://HOST:PORT'; see nmcompile.runtime.executors)
    splits the reference samples into shards, each run on its own board opened from `board_url` by a worker."""
    if board is not None and executor is not None:
        raise UnsupportedError("verify_artifact: an opened board runs in this process; pass board_url and no board "
                               "to shard the samples over an executor")
    art = artifact.read(path, rederive=True)      # refuses a tampered artifact before anything runs
    inputs, expected = art.reference()
    padded = np.concatenate([inputs, np.zeros((art.latency, *inputs.shape[1:]), dtype=inputs.dtype)])
    result = VerifyResult(path, board_url)
    start = time.perf_counter()
    if executor is not None:
        with using_executor(executor) as ex:
            outputs = run_sharded(board_url, {}, path, padded, ex, progress=progress)
    else:
        with board or open_board(board_url, progress=progress) as opened:
            opened.load(path)
            outputs = opened.run_all(padded)
    seconds = time.perf_counter() - start
    for name, reference in expected.items():
        if name.startswith("weight:"):
            result.checks.append(_weight_check(name.split(":", 1)[1], reference, outputs.get(name), seconds))
            continue
        if name not in outputs:
            result.checks.append(Check(f"output {name}", False, "the board returned no such output", seconds))
            continue
        got = np.asarray(outputs[name]).reshape(reference.shape)
        if np.array_equal(got, reference):
            neurons = int(np.prod(reference.shape[2:]))
            detail = (f"{reference.shape[0]} steps x {reference.shape[1]} samples x {neurons} neurons equal "
                      f"({int(np.count_nonzero(reference))} spikes)")
            result.checks.append(Check(f"output {name}", True, detail, seconds))
        else:
            mismatches = int(np.count_nonzero(got != reference))
            result.checks.append(Check(f"output {name}", False, f"{mismatches} values differ; "
                                       f"{first_difference(reference, got, name)}", seconds))
    return result


def verify_reporting_errors(path: Path, board_url: str, progress: Progress | None = None,
                            executor: Executor | str | None = None) -> VerifyResult:
    """verify_artifact, except that a board or its workers failing during the run (RUN_FAILURES) give a result
    whose `error` is that failure instead of raising it. Errors in the arguments (the artifact, the board URL, the
    executor spec) are raised as before."""
    start = time.perf_counter()
    try:
        return verify_artifact(path, board_url, progress=progress, executor=executor)
    except RUN_FAILURES as err:
        return VerifyResult(path, board_url, error=err, error_seconds=time.perf_counter() - start)


def _weight_check(name: str, reference: np.ndarray, got, seconds: float) -> Check:
    """Final weights of a plastic projection [B, out, in] after the whole input sequence."""
    if got is None:
        return Check(f"weights {name}", False, "the board does not report learned weights", seconds)
    got = np.asarray(got).reshape(reference.shape)
    if np.array_equal(got, reference):
        return Check(f"weights {name}", True, f"{reference.shape[0]} samples x {reference[0].size} synapses equal "
                     "after learning", seconds)
    index = tuple(int(i) for i in np.argwhere(got != reference)[0])
    return Check(f"weights {name}", False, f"{int(np.count_nonzero(got != reference))} weights differ; first: sample "
                 f"{index[0]}, synapse {index[1:]}: board {got[index]} vs reference {reference[index]}", seconds)
