"""One conformance suite for every backend: each shared network (tests/backends/networks.py) is compiled for each
registered target and run on each of its conformance boards (`Backend.conformance`); every output spike at every
step, and where the board reports them every layer's u and v, must equal the integer reference. A network a
target cannot run must be refused at compile time naming that target's limit. A new backend joins by registering.
"""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.backends import BACKENDS
from nmcompile.errors import NmcError
from nmcompile.ir.simulate import simulate
from nmcompile.runtime.board import open_board
from nmcompile.runtime.hil import verify_artifact
from tests.backends.networks import NETWORKS, compile_graph

SEEDS = (0, 1, 2)
# (target, network) -> the Target field whose limit the network exceeds; every other pair must run bit-exactly.
REFUSED = {("loihi2", "subtract"): "reset_modes", ("loihi2", "delayed"): "reset_modes",
           ("loihi2", "mpbn"): "reset_modes", ("loihi2", "restless"): "start_step_bits"}
CASES = [pytest.param(b.name, url, id=f"{b.name}-{url.split(':')[0]}") for b in BACKENDS.values()
         for url in b.conformance]


def test_every_available_backend_has_a_conformance_board():
    for backend in BACKENDS.values():
        assert not backend.available or backend.conformance, f"{backend.name} is emitted but never verified"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize(("target", "url"), CASES)
def test_board_equals_reference(target, url, network, seed, tmp_path):
    rng = np.random.default_rng(seed)
    graph = NETWORKS[network](rng)
    shape = graph.node("in").shape
    calibration = (rng.random((30, 3, *shape)) < 0.3).astype(np.int64)
    if (target, network) in REFUSED:
        with pytest.raises(NmcError, match=rf"is not supported by {target} \(supported by: [^;]+; {target} "
                                           rf"{REFUSED[target, network]}: "):
            compile_graph(graph, tmp_path, calibration, target)
        return
    out = compile_graph(graph, tmp_path, calibration, target)
    board = open_board(url)
    result = verify_artifact(out, url, board=board)
    assert result.passed, "\n".join(result.lines())
    _, expected = artifact.read(out).reference()
    assert all(ref.any() for name, ref in expected.items() if not name.startswith("weight:")), \
        "the reference network is silent: the comparison would be vacuous"
    states = getattr(board, "last_states", None)
    if states:
        art = artifact.read(out)
        inputs, _ = art.reference()
        padded = np.concatenate([inputs, np.zeros((art.latency, *inputs.shape[1:]), dtype=inputs.dtype)])
        reference = simulate(art.graph, padded, record=True)
        for layer, values in reference.states.items():
            for var in ("u", "v"):
                np.testing.assert_array_equal(states[f"{layer}.{var}"], values[var], err_msg=f"{layer}.{var}")
