"""Evaluate: run the fixed instrument on the checked-out candidate (or the baseline)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.ledger import Status
from evaluators.base import Measurement
from steps.lab import Lab
from steps.trial import Trial


def _log(lab: Lab, m: Measurement | None) -> None:
    log = get_run_logger()
    if m is None:
        return
    if m.status == "ok":
        runs = f" over {len(m.samples)} runs" if len(m.samples) > 1 else ""
        log.info("%s = %.6g%s in %.1fs", lab.study.metric.name, m.metric, runs, m.duration_s)
    else:
        log.warning("crash: %s\n%s", m.reason, m.log_tail[-2000:])


@task(name="evaluate", cache_policy=NO_CACHE)
def measure(lab: Lab, trial: Trial) -> tuple[Measurement, list[float] | None]:
    """The candidate: once, repeated, or interleaved with the champion, as the rule needs."""
    m, champion = lab.measure(trial)
    _log(lab, m)
    if champion is not None:
        get_run_logger().info("champion re-measured: %s", ", ".join(f"{v:.6g}" for v in champion))
    return m, champion


@task(name="baseline", cache_policy=NO_CACHE)
def baseline(lab: Lab, trial: Trial) -> tuple[Status, str]:
    """The unchanged artifact, measured: its status and why."""
    outcome = lab.baseline(trial)
    _log(lab, trial.measurement)
    return outcome


@task(name="calibrate", cache_policy=NO_CACHE)
def calibrate(lab: Lab, label: int | str) -> Measurement:
    """The study's noise: the champion run several times (at the start, on a new machine)."""
    m = lab.calibrate(label)
    _log(lab, m)
    return m
