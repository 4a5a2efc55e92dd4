"""`lava://`: a loihi2 artifact run in Lava 0.10's bit-accurate CPU models, in Lava's own Python 3.10 venv.

The board calls the artifact's run_lava.py with that interpreter (found at NMC_LAVA_PYTHON, else
<checkout>/.venv-lava/bin/python, which `make lava-env` creates) and reads the result back.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from nmcompile.errors import NmcError, ToolMissingError, UnsupportedError

SETUP_HINT = ("run `make lava-env` in the nmcompile checkout (it needs python3.10: on PATH, or `pyenv install "
              "3.10.13`), or set NMC_LAVA_PYTHON to a Python with lava-nc==0.10.0")


def lava_python() -> Path:
    """The interpreter of the Lava venv; raises ToolMissingError naming the fix."""
    env = os.environ.get("NMC_LAVA_PYTHON")
    candidate = Path(env) if env else Path(__file__).resolve().parents[2] / ".venv-lava" / "bin" / "python"
    if not candidate.exists():
        raise ToolMissingError(f"Lava is not set up ({candidate} is missing): {SETUP_HINT}")
    probe = subprocess.run([str(candidate), "-c", "import lava.magma"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise ToolMissingError(f"{candidate} cannot import lava: {SETUP_HINT}")
    return candidate


class LavaBoard:
    """Runs whole input sequences; every sample starts from a freshly built network."""

    def __init__(self, states: bool = False):
        self.states = states
        self.latency = 0
        self._artifact: Path | None = None
        self.last_states: dict[str, np.ndarray] = {}
        self.seconds_per_step: np.ndarray | None = None

    def load(self, source: object) -> None:
        from nmcompile import artifact

        path = Path(str(source))
        art = artifact.read(path)
        if art.target != "loihi2" or not (path / "lava_network.py").is_file():
            stopped = ", stopped before emitting" if art.manifest["stage"] != "complete" else ""
            raise UnsupportedError(f"{path}: lava:// runs artifacts compiled with --target loihi2 (this one is for "
                                   f"{art.target}{stopped})")
        self._artifact = path
        self.latency = art.latency
        self._outputs = list(art.manifest["outputs"])

    def run(self, spikes: np.ndarray) -> np.ndarray:
        results = self.run_all(spikes)
        out = results[self._outputs[0]]
        return out.reshape(out.shape[0], out.shape[1], -1)

    def run_all(self, spikes: np.ndarray) -> dict[str, np.ndarray]:
        """Every output (and, with states=True, every layer's u and v) for spikes [T, B, ...]."""
        if self._artifact is None:
            raise NmcError("no artifact loaded; call load() first")
        python = lava_python()
        with tempfile.TemporaryDirectory(prefix="nmcompile-lava-") as tmp:
            inputs, result = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            np.savez(inputs, spikes=np.asarray(spikes).astype(np.int64))
            cmd = [str(python), str(self._artifact / "run_lava.py"), str(self._artifact), str(inputs), str(result)]
            if self.states:
                cmd.append("--states")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                raise NmcError(f"Lava run failed: {tail[:400]}")
            with np.load(result) as f:
                data = {k: f[k] for k in f.files}
        self.seconds_per_step = data.pop("seconds_per_step", None)
        self.last_states = {k: v for k, v in data.items() if k not in self._outputs}
        return {k: data[k] for k in self._outputs}

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        raise UnsupportedError("lava:// runs whole sequences (Lava's CPU simulator is driven per run); use run()")

    def close(self) -> None:
        self._artifact = None
