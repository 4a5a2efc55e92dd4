"""The pytest plugin nmcompile installs (entry point `pytest11`): a lab runs conformance tests on its own board.

    pytest --board serial:///dev/ttyUSB0 --artifact net-fpga --pyargs nmcompile.testing.test_board_conformance
    pytest --board udp://10.0.0.2:17893 --artifact net-spinnaker2 tests/       # its own tests, using the fixtures

Options: --board URL (any board URL `nmcompile verify` takes), --artifact DIR (a compiled artifact of that
board's target). Marker: `@pytest.mark.board` for tests that need a board; without --board they are skipped with
the reason shown. Fixtures: `board_url`, `nmc_artifact` (Path), `board` (opened, the artifact loaded, closed after
the test), `board_verification` (the VerifyResult of running the artifact's reference inputs on the board).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nmcompile", "nmcompile boards")
    group.addoption("--board", dest="nmc_board", metavar="URL", default=None,
                    help="board URL for @pytest.mark.board tests (e.g. serial:///dev/ttyUSB0, udp://HOST:PORT)")
    group.addoption("--artifact", dest="nmc_artifact", metavar="DIR", default=None,
                    help="compiled artifact the board tests load (nmcompile compile -o DIR)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "board: needs a board (pytest --board URL --artifact DIR); skipped without")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("nmc_board"):
        return
    skip = pytest.mark.skip(reason="needs a board: pytest --board URL --artifact DIR")
    for item in items:
        if item.get_closest_marker("board") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def board_url(request: pytest.FixtureRequest) -> str:
    url = request.config.getoption("nmc_board")
    if not url:
        pytest.fail("this test needs a board: pytest --board URL (mark it @pytest.mark.board)", pytrace=False)
    return url


@pytest.fixture(scope="session")
def nmc_artifact(request: pytest.FixtureRequest) -> Path:
    from nmcompile import artifact
    from nmcompile.errors import NmcError

    path = request.config.getoption("nmc_artifact")
    if not path:
        pytest.fail("this test needs a compiled artifact: pytest --artifact DIR", pytrace=False)
    try:
        return artifact.read(Path(path)).path
    except NmcError as err:
        pytest.fail(f"--artifact {path}: {err}", pytrace=False)


@pytest.fixture()
def board(board_url: str, nmc_artifact: Path):
    from nmcompile.runtime.board import open_board

    with open_board(board_url) as opened:
        opened.load(nmc_artifact)
        yield opened


@pytest.fixture()
def board_verification(board_url: str, nmc_artifact: Path):
    from nmcompile.runtime.hil import verify_artifact

    return verify_artifact(nmc_artifact, board_url)
