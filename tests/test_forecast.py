"""The forecast study: the offline proposer measurably improves a Holt-Winters formula."""

from __future__ import annotations

import shutil

import pytest

from steps.lab import Lab
from tests.conftest import ROOT, commit_all


@pytest.mark.usefixtures("prefect_server")
def test_forecast_improves_under_mutate(tmp_path):
    from tests.conftest import campaign

    folder = tmp_path / "repo" / "forecast"
    shutil.copytree(ROOT / "artifacts" / "forecast", folder)
    commit_all(tmp_path / "repo")
    result = campaign(str(folder), experiments=12, proposer="mutate", seed=0)
    rows = Lab.open(folder).records.ledger.rows()
    assert rows[0].description == "baseline" and rows[0].metric == pytest.approx(2.0365, abs=1e-3)
    assert result.best < 0.9 * result.baseline
    # the holdout span was scored at the start and at the end
    holdouts = [r for r in rows if r.status == "holdout"]
    assert len(holdouts) >= 2 and "holdout_rmse" in holdouts[-1].description
