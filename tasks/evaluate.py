"""Evaluate: run the fixed instrument on the checked-out candidate (or the baseline)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autoresearch.lab import Lab
from evaluators.base import Measurement


def _log(lab: Lab, m: Measurement) -> None:
    log = get_run_logger()
    if m.status == "ok":
        runs = f" over {len(m.samples)} runs" if len(m.samples) > 1 else ""
        log.info("%s = %.6g%s in %.1fs", lab.study.metric.name, m.metric, runs, m.duration_s)
    else:
        log.warning("crash: %s\n%s", m.reason, m.log_tail[-2000:])


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(lab: Lab, experiment: int, runs: int = 1) -> Measurement:
    m = lab.evaluate(experiment, runs)
    _log(lab, m)
    return m


@task(name="evaluate-paired", cache_policy=NO_CACHE)
def evaluate_paired(lab: Lab, experiment: int) -> tuple[Measurement, list[float]]:
    """Candidate and champion interleaved, for timings and for rebaseline studies."""
    m, champion = lab.evaluate_paired(experiment)
    _log(lab, m)
    get_run_logger().info("champion re-measured: %s", ", ".join(f"{v:.6g}" for v in champion))
    return m, champion


@task(name="calibrate", cache_policy=NO_CACHE)
def calibrate(lab: Lab, label: int | str) -> Measurement:
    """The study's noise: the champion run several times (at the start, on a new machine)."""
    m = lab.calibrate(label)
    _log(lab, m)
    return m
