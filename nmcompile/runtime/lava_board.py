"""`lava://`: a loihi2 artifact run in Lava 0.10's bit-accurate CPU models, in Lava's own Python 3.10 venv.

The board runs the installed nmcompile's runner (nmcompile/backends/loihi/lava_runner.py, read from the package, not
the artifact's run_lava.py copy) with Lava's interpreter and reads the result back. The runner builds the network
with lava_network.py and network.npz as this nmcompile rebuilds them from the artifact's network.nmir (written to a
temporary directory): no Python shipped in an artifact runs.

The interpreter: $NMC_LAVA_PYTHON if set, else the per-user venv `lava_venv()` =
$XDG_DATA_HOME/nmcompile/lava-venv (default ~/.local/share/nmcompile/lava-venv), which `make lava-env` creates.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np

from nmcompile.errors import BoardError, ToolMissingError
from nmcompile.runtime.board import BaseBoard, Progress, flag_option, seconds_option

LAVA_REQUIREMENT = "lava-nc==0.10.0"


def lava_venv() -> Path:
    """The per-user Lava venv: $XDG_DATA_HOME/nmcompile/lava-venv, default ~/.local/share/nmcompile/lava-venv."""
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if data and Path(data).is_absolute() else Path.home() / ".local" / "share"
    return base / "nmcompile" / "lava-venv"


def setup_hint() -> str:
    venv = lava_venv()
    return (f"run `make lava-env` in an nmcompile checkout (it creates {venv} from python3.10: on PATH, or "
            f"`pyenv install 3.10.13`), or create it yourself: `python3.10 -m venv {venv} && {venv}/bin/pip install "
            f"{LAVA_REQUIREMENT}`; or set NMC_LAVA_PYTHON to a Python 3.10 with {LAVA_REQUIREMENT}")


_PROBED: set[Path] = set()


def lava_python() -> Path:
    """The interpreter of the Lava venv; raises ToolMissingError saying where it looked and how to set it up."""
    env = os.environ.get("NMC_LAVA_PYTHON")
    if env:
        candidate, where = Path(env), f"NMC_LAVA_PYTHON={env}"
    else:
        candidate = lava_venv() / "bin" / "python"
        where = f"{candidate} (NMC_LAVA_PYTHON is not set)"
    if candidate in _PROBED:
        return candidate
    if not candidate.exists():
        raise ToolMissingError(f"Lava is not set up: looked for {where}, which does not exist; {setup_hint()}")
    probe = subprocess.run([str(candidate), "-c", "import lava.magma"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise ToolMissingError(f"Lava is not set up: {where} cannot import lava ({LAVA_REQUIREMENT}); {setup_hint()}")
    _PROBED.add(candidate)
    return candidate


class LavaBoard(BaseBoard):
    """Runs whole input sequences; every sample starts from a freshly built network.

    lava://             outputs
    lava://?states=1    also every LIF layer's u and v (`last_states["<layer>.u"]`, [T, B, *shape])
    lava://?timeout=S   the whole run's deadline in seconds (default: START_SECONDS + STEP_SECONDS x T x B)
    """

    scheme = "lava"
    target = "loihi2"
    requires = ("lava_network.py", "network.npz")
    options = (flag_option("states"), seconds_option("timeout"))
    START_SECONDS = 300.0       # Lava's start and its process compilation, per run (generous: a loaded machine)
    STEP_SECONDS = 0.5          # per step and sample, generous for the networks a CPU simulation can hold

    def __init__(self, states: bool = False, timeout: float | None = None, progress: Progress | None = None):
        super().__init__(progress)
        self.states = states
        self.timeout = timeout
        self._files: dict[str, bytes] = {}
        self.last_states: dict[str, np.ndarray] = {}
        self.seconds_per_step: np.ndarray | None = None

    def load(self, source: object) -> None:
        """A compiled loihi2 artifact directory (its files checked against the ones rebuilt from network.nmir)."""
        art = self.read_artifact(source)
        self._files = {rel: art.derived[rel] for rel in self.requires}

    def run_all(self, spikes: np.ndarray) -> dict[str, np.ndarray]:
        """Every output (and, with states=True, every layer's u and v in `last_states`) for spikes [T, B, ...]."""
        spikes = self.check_spikes(spikes)
        python = lava_python()
        with tempfile.TemporaryDirectory(prefix="nmcompile-lava-") as tmp, \
                as_file(files("nmcompile.backends.loihi") / "lava_runner.py") as runner:
            inputs, result, network = Path(tmp) / "in.npz", Path(tmp) / "out.npz", Path(tmp) / "network"
            np.savez(inputs, spikes=spikes.astype(np.int64))
            network.mkdir()
            for rel, data in self._files.items():
                (network / rel).write_bytes(data)
            cmd = [str(python), str(runner), str(network), str(inputs), str(result)]
            if self.states:
                cmd.append("--states")
            deadline = self.timeout or self.START_SECONDS + self.STEP_SECONDS * spikes.shape[0] * spikes.shape[1]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=deadline)
            except OSError as err:
                raise BoardError(f"cannot start {python}: {err}") from None
            except subprocess.TimeoutExpired:
                raise BoardError(f"the Lava run did not finish within {deadline:g} s (lava://?timeout=SECONDS "
                                 "sets the deadline)") from None
            if proc.returncode != 0:
                tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                raise BoardError(f"Lava run failed (exit status {proc.returncode}): {tail[:400]}")
            try:
                with np.load(result) as f:
                    data = {k: f[k] for k in f.files}
            except (OSError, ValueError) as err:
                raise BoardError(f"the Lava runner wrote no readable result: {err}") from None
        self.seconds_per_step = data.pop("seconds_per_step", None)
        missing = [k for k in self.outputs if k not in data]
        if missing:
            raise BoardError(f"the Lava runner returned no output {', '.join(missing)}")
        self.last_states = {k: v for k, v in data.items() if k not in self.outputs}
        return {k: data[k] for k in self.outputs}

    def close(self) -> None:
        super().close()
        self._files = {}
