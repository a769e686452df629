"""Evaluate: run the fixed instrument on the checked-out candidate (or the baseline)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autoresearch.lab import Lab
from evaluators.base import Measurement


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(lab: Lab, experiment: int) -> Measurement:
    m = lab.evaluate(experiment)
    log = get_run_logger()
    if m.status == "ok":
        log.info("%s = %.6g in %.1fs", lab.study.metric.name, m.metric, m.duration_s)
    else:
        log.warning("crash: %s\n%s", m.reason, m.log_tail[-2000:])
    return m
