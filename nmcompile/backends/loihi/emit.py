"""Emit the Loihi 2 files of an artifact (docs/formats/loihi.md):

    network.npz        every integer parameter, keyed "<process>.<field>", in Lava's layout
    lava_network.py    build() creates the Lava processes from network.npz and wires them
    model.net          lava-dl netx HDF5 of the network, for feed-forward dense/conv/flatten chains
    run_lava.py        runs the artifact in Lava's bit-accurate CPU models (needs only numpy and lava-nc)

The module text is rendered from the structured `LavaSpec` of lower.py; nothing is patched afterwards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nmcompile import __version__
from nmcompile.artifact import npz_bytes
from nmcompile.backends import Emitted
from nmcompile.backends.loihi.lower import ArrayRef, Expr, LavaSpec, lower
from nmcompile.backends.loihi.netx import netx_bytes
from nmcompile.errors import warn
from nmcompile.lowered import LoweredNetwork
from nmcompile.lowered.limits import check_target

RUNNER = Path(__file__).with_name("lava_runner.py")
IMPORTS = {
    "LIF": "from lava.proc.lif.process import LIF",
    "Dense": "from lava.proc.dense.process import Dense",
    "DelayDense": "from lava.proc.dense.process import DelayDense",
    "Sparse": "from lava.proc.sparse.process import Sparse",
    "DelaySparse": "from lava.proc.sparse.process import DelaySparse",
    "Conv": "from lava.proc.conv.process import Conv",
}


def emit(view: LoweredNetwork, target, options: dict, log) -> Emitted:
    check_target(view, target)
    spec = lower(view)
    files = {
        "network.npz": npz_bytes(spec.arrays),
        "lava_network.py": render(spec).encode(),
        "run_lava.py": RUNNER.read_bytes(),
    }
    model, note = netx_bytes(view)
    if model is not None:
        files["model.net"] = model
    else:
        warn(f"model.net not written: {note}")
    return Emitted(files, _report_lines(spec, note if model is None else None))


def _value(value: object) -> str:
    if isinstance(value, ArrayRef):
        return f"p[{value.key!r}]"
    if isinstance(value, Expr):
        return value.text
    if isinstance(value, np.integer):
        return str(int(value))
    return repr(value)


def _port(name: str, port: str, transform: list[tuple]) -> str:
    text = f"proc[{name!r}].{port}"
    for step in transform:
        if step[0] == "flatten":
            text += ".flatten()"
        else:
            text += f".{step[0]}({list(step[1])!r})" if step[0] == "transpose" else f".reshape({tuple(step[1])!r})"
    return text


def render(spec: LavaSpec) -> str:
    classes = sorted({p.cls for p in spec.processes})
    lines = [
        f'"""Lava process graph of {spec.name!r} for Loihi 2, written by nmcompile {__version__}.',
        "",
        "build() creates every process from network.npz (next to this file) and wires them. It returns a",
        "LavaNetwork whose fields tell a runner what to drive and what to read (run_lava.py does this):",
        "  inputs     input name -> [(layout, shape in Lava layout, process, in-port)]",
        "  constants  constant source -> [(layout, shape, process, in-port, first step)]: a spike at every step from",
        "             that step on (they carry the biases)",
        "  outputs    output name -> (LIF process, shape in nmcompile layout, layout)",
        "  neurons    LIF process -> (shape in nmcompile layout, layout)",
        'Layouts: "flat" (same order), "chw" (nmcompile (C, H, W) is Lava (W, H, C)), "cl" ((C, L) is Lava (L, 1, C)).',
        '"""',
        "",
        "from pathlib import Path",
        "",
        "import numpy as np",
        *sorted(IMPORTS[c] for c in classes),
        "from lava.utils.weightutils import SignMode",
        "",
        "",
        "class LavaNetwork:",
        "    def __init__(self, proc, inputs, constants, outputs, neurons):",
        "        self.proc, self.inputs, self.constants = proc, inputs, constants",
        "        self.outputs, self.neurons = outputs, neurons",
        "",
        "",
        "def _csr(p, name, shape, field='values'):",
        "    from scipy.sparse import csr_matrix",
        "",
        "    return csr_matrix((p[f'{name}.{field}'], (p[f'{name}.rows'], p[f'{name}.cols'])), shape=shape)",
        "",
        "",
        "def build(path=None):",
        '    p = np.load(Path(path) if path else Path(__file__).with_name("network.npz"))',
        "    proc = {}",
    ]
    for ps in spec.processes:
        args = ", ".join(f"{k}={_value(v)}" for k, v in ps.kwargs.items())
        lines.append(f"    proc[{ps.name!r}] = {ps.cls}({args})")
    for c in spec.connections:
        lines.append(f"    {_port(c.src, c.src_port, c.transform)}.connect(proc[{c.dst!r}].{c.dst_port})")
    inputs = {name: [(u.layout, u.lava_shape, u.process, u.port) for u in uses] for name, uses in spec.inputs.items()}
    constants = {name: [(u.layout, u.lava_shape, u.process, u.port, u.start) for u in uses]
                 for name, uses in spec.constants.items()}
    lines += [
        f"    inputs = {inputs!r}",
        f"    constants = {constants!r}",
        f"    outputs = {spec.outputs!r}",
        f"    neurons = {spec.neurons!r}",
        "    return LavaNetwork(proc, inputs, constants, outputs, neurons)",
        "",
    ]
    return "\n".join(lines)


def _report_lines(spec: LavaSpec, netx_note: str | None) -> list[str]:
    counts: dict[str, int] = {}
    for p in spec.processes:
        counts[p.cls] = counts.get(p.cls, 0) + 1
    return ["Lava processes: " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items())),
            f"inputs driven by RingBuffers: {', '.join(spec.inputs) or 'none'}; constant sources: "
            f"{len(spec.constants)}",
            "model.net (netx): " + (netx_note or "written")]
