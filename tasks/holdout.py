"""Holdout: score the champion on data the researcher never sees; flag overfitting."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autoresearch.lab import Lab, make_row, now


@task(name="holdout", cache_policy=NO_CACHE)
def holdout(lab: Lab) -> dict[str, Any]:
    number, started, started_at = lab.ledger.next_experiment(), time.monotonic(), now()
    result = lab.holdout(number)
    champ = lab.champion()
    assert champ is not None and lab.study.config.holdout is not None
    name = lab.study.config.holdout.metric
    if result["status"] == "ok":
        verdict = "OVERFITTING" if result["overfitting"] else "ok"
        value, base = result["value"], result["baseline"]
        text = f"holdout {name} {value:.6g} (at baseline {base:.6g}): {verdict}"
    else:
        text = f"holdout crashed: {result['reason']}"
    row = make_row(
        number,
        started,
        started_at,
        "holdout",
        text,
        lab.study.metric.name,
        commit=champ.commit,
        evidence=text,
    )
    lab.record(row)
    (get_run_logger().warning if result.get("overfitting") else get_run_logger().info)(text)
    return result
