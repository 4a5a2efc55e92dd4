"""The conformance tests a lab runs on its own board:

    pytest --board URL --artifact DIR --pyargs nmcompile.testing.test_board_conformance

Every output spike at every step (and learned weights) equals the integer reference; a sample streamed in chunks
gives the spikes of the same sample run whole (boards that stream)."""

from __future__ import annotations

import numpy as np
import pytest

from nmcompile import artifact
from nmcompile.errors import UnsupportedError


@pytest.mark.board
def test_board_equals_the_reference(board_verification):
    assert board_verification.passed, "\n".join(board_verification.lines())


@pytest.mark.board
def test_streamed_chunks_equal_a_whole_run(board, nmc_artifact):
    inputs, _ = artifact.read(nmc_artifact).reference()
    sample = inputs[:, :1]
    whole = board.run(sample)
    cut = max(1, sample.shape[0] // 3)
    try:
        streamed = list(board.stream([sample[:cut], sample[cut:]]))
    except UnsupportedError as err:
        pytest.skip(str(err))
    np.testing.assert_array_equal(np.concatenate(streamed), whole)
