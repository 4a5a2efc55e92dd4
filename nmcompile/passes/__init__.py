"""Compiler passes: plain functions `(Graph, PassContext) -> Graph`, one module each, one registry.

    from nmcompile.passes import run_pipeline, PassContext
    compiled = run_pipeline(graph, ["fold_bn", "fold_mpbn", ...], PassContext(target=LOIHI2))

The runner verifies the graph after every pass (optional), can dump the IR after a named pass or after all of
them, stops after a pass on request, and names the failing pass together with the passes that ran before it.
Every pass may leave a report in `ctx.reports[name]` (anything with `lines()`), which ends up in report.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nmcompile.errors import NmcError, UnsupportedError
from nmcompile.ir.graph import Graph


@dataclass
class PassContext:
    """What passes may read besides the graph: the target, calibration inputs, options; where they report."""

    target: Any = None                              # nmcompile.targets.Target
    calibration: np.ndarray | None = None           # input spikes [T, B, *input_shape] (0/1)
    options: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)
    log: Any = None                                 # progress messages of long steps (a callable), or None

    def require_target(self, pass_name: str):
        if self.target is None:
            raise UnsupportedError(f"pass '{pass_name}' needs a target (--target)")
        return self.target


@dataclass(frozen=True)
class PassInfo:
    name: str
    module: str        # nmcompile.passes.<module> defines the function `run`
    summary: str

    def load(self) -> Callable[[Graph, PassContext], Graph]:
        return importlib.import_module(f"nmcompile.passes.{self.module}").run


REGISTRY: dict[str, PassInfo] = {p.name: p for p in (
    PassInfo("fold_bn", "fold_bn", "fold BatchNorm into the neighbouring Linear/Conv (exact)"),
    PassInfo("fold_mpbn", "fold_mpbn", "fold membrane-potential BatchNorm into per-neuron thresholds (exact)"),
    PassInfo("fuse_projections", "fuse_projections",
             "one weighted projection between neuron layers: fuse pools and scales, add identity projections"),
    PassInfo("retime", "retime", "hardware delays (>= 1 step per projection), balanced paths, latency L"),
    PassInfo("quantize", "quantize", "integer model of the target: weights, thresholds, decays, biases"),
    PassInfo("retarget", "retarget", "an integer source (netx) in the target's weight formats, exactly (no quantize)"),
    PassInfo("stdp", "stdp", "make projections named by --stdp plastic (pair-based STDP, integer traces)"),
    PassInfo("partition", "partition", "neurons onto cores under every target limit; lower bound; traffic"),
    PassInfo("analyse", "analyse", "synaptic operations, neuron updates, energy estimate, bit budget"),
)}


class PassError(NmcError):
    """A pass failed; the message names it and the passes that ran before it."""


def integer_source_pipeline(passes: Sequence[str]) -> list[str]:
    """The pipeline for a source that is integer from the start (a netx file, a compiled network): `retarget`
    instead of fold/retime/quantize, then the target's passes after quantize."""
    return ["retarget", *passes[list(passes).index("quantize") + 1:]]


def get_pass(name: str) -> PassInfo:
    if name not in REGISTRY:
        raise UnsupportedError(f"unknown pass {name!r}; passes: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def run_pipeline(graph: Graph, passes: Sequence[str], ctx: PassContext | None = None, *, verify: bool = True,
                 dump_after: Sequence[str] = (), print_ir_after_all: bool = False, stop_after: str | None = None,
                 emit: Callable[[str], None] | None = None, prior: Sequence[str] = (),
                 log: Callable[[str], None] | None = None) -> Graph:
    """Run `passes` in order. `emit` receives IR dumps (after `dump_after` passes or all of them), `log` one
    progress line before and after every pass."""
    import time

    from nmcompile.ir.dump import dump

    ctx = ctx or PassContext()
    for name in [*dump_after, *([stop_after] if stop_after else [])]:
        if name not in passes:
            raise UnsupportedError(f"pass {name!r} is not in this pipeline: {', '.join(passes)}")
    done: list[str] = list(prior)
    for k, name in enumerate(passes):
        info = get_pass(name)
        start = time.perf_counter()
        if log is not None:
            log(f"[{k + 1}/{len(passes)}] {name}: {info.summary}")
        try:
            graph = info.load()(graph, ctx)
            if verify:
                graph.verify()
        except NmcError as err:
            before = f" (after {', '.join(done)})" if done else " (the first pass)"
            raise PassError(f"pass '{name}' failed{before}: {err}") from None
        done.append(name)
        if log is not None:
            log(f"      done in {time.perf_counter() - start:.2f} s")
        if emit is not None and (print_ir_after_all or name in dump_after):
            emit(f"# IR after pass '{name}'\n" + dump(graph))
        if name == stop_after:
            break
    return graph
