"""A black-box sweep of the `nmcompile` command line with hostile inputs; prints counts per category and outcome.

    python -m tests.hostile.sweep [--only CATEGORY] [--list] [--verbose]

Every case runs `python -m nmcompile ...` in a subprocess with a time limit and says what it expects:
  error   exit status 1 and exactly one `error:` line on stderr (and no traceback)
  usage   exit status 2 (click's usage message: a usage error, docs/hostile.md)
  ok      exit status 0 (a `check` may look at what was written)
Outcomes: pass, hang (time limit), internal (exit 3), traceback, silent (accepted what it must refuse), format (not
one `error:` line), refused (a valid input refused), check (exit status right, a check on the result failed).
`tests/hostile/test_sweep.py` (marker `sweep`) runs it and requires every case to pass.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.hostile.sweep_cases import CATEGORIES, ROOT, Case, Fixtures

TIME_LIMIT = 90.0


@dataclass
class Outcome:
    case: Case
    verdict: str
    returncode: int | None
    seconds: float
    stderr: str


def run_case(case: Case, cwd: Path) -> Outcome:
    resource = case.setup() if case.setup else None
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT), **case.env}
    try:
        proc = subprocess.run([sys.executable, "-m", "nmcompile", *case.argv], capture_output=True, text=True,
                              timeout=TIME_LIMIT, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        return Outcome(case, "hang", None, time.monotonic() - start, "")
    finally:
        if hasattr(resource, "close"):
            resource.close()
    seconds = time.monotonic() - start
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    verdict = "pass"
    if "Traceback" in proc.stderr:
        verdict = "traceback"
    elif proc.returncode == 3:
        verdict = "internal"
    elif case.expect == "error":
        if proc.returncode == 0:
            verdict = "silent"
        elif proc.returncode != 1 or len(errors) != 1:
            verdict = "format"
    elif case.expect == "usage":
        if proc.returncode == 0:
            verdict = "silent"
        elif proc.returncode != 2:
            verdict = "format"
    elif proc.returncode != 0:
        verdict = "refused"
    if verdict == "pass" and case.check is not None:
        problem = case.check(proc.stderr)
        if problem:
            verdict, proc.stderr = "check", f"{problem}\n{proc.stderr}"
    return Outcome(case, verdict, proc.returncode, seconds, proc.stderr)


def sweep(only: str | None = None, verbose: bool = False, work: Path | None = None) -> list[Outcome]:
    """Run every case (of one category with `only`); returns the outcomes."""
    import warnings

    from nmcompile.errors import NmcWarning

    work = Path(work or tempfile.mkdtemp(prefix="nmc-sweep-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NmcWarning)
        fx = Fixtures(work)
    outcomes = []
    for category, make in CATEGORIES.items():
        if only and only != category:
            continue
        for case in make(fx):
            outcome = run_case(case, work)
            outcomes.append(outcome)
            if verbose or outcome.verdict != "pass":
                tail = outcome.stderr.strip().splitlines()[-1:] if outcome.stderr.strip() else [""]
                print(f"{outcome.verdict:9s} {outcome.returncode!s:>4} {outcome.seconds:5.1f}s "
                      f"[{category}] {case.name}: {tail[0][:160]}", flush=True)
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    by_category: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    codes: collections.Counter = collections.Counter()
    for o in outcomes:
        by_category[o.case.category][o.verdict] += 1
        codes[o.returncode if o.returncode is not None else "hang"] += 1
    lines = [f"{len(outcomes)} runs; exit statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(
        codes.items(), key=str))]
    for category, counts in by_category.items():
        lines.append(f"  {category:14s} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    bad = collections.Counter(o.verdict for o in outcomes if o.verdict != "pass")
    lines.append("not passing: " + (", ".join(f"{k} {v}" for k, v in sorted(bad.items())) or "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(CATEGORIES))
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the categories and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(CATEGORIES))
        return 0
    outcomes = sweep(args.only, args.verbose)
    print(summary(outcomes))
    return 0 if all(o.verdict == "pass" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
