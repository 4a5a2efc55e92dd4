"""The black-box sweep of the CLI (tests/hostile/sweep.py, about 600 subprocess runs, several minutes): marker
`sweep`, deselected by default; run it with `python -m pytest -m sweep tests/hostile`."""

from __future__ import annotations

import pytest

from tests.hostile import sweep


@pytest.mark.sweep
@pytest.mark.parametrize("category", list(sweep.CATEGORIES))
def test_every_case_of_the_sweep_passes(category, tmp_path, monkeypatch):
    monkeypatch.setattr("tests.hostile.conftest.TEST_TIME_LIMIT", 3000)
    outcomes = sweep.sweep(only=category, work=tmp_path)
    failing = [f"{o.verdict}: {o.case.name}: {o.stderr.strip()[-200:]}" for o in outcomes if o.verdict != "pass"]
    assert outcomes and not failing, "\n".join(failing)
