"""Decide: keep or discard, by the study's rule. Pure: it only reads the ledger and state."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.decide import Verdict
from evaluators.base import Measurement
from steps.lab import Lab
from steps.trial import Candidate


@task(name="decide", cache_policy=NO_CACHE)
def decide(
    lab: Lab,
    measurement: Measurement,
    candidate: Candidate,
    champion: list[float] | None = None,
) -> Verdict:
    verdict = lab.judge(measurement, candidate, champion)
    get_run_logger().info("%s: %s (%s)", verdict.status, verdict.reason, verdict.evidence)
    return verdict
