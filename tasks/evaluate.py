"""Evaluate: run the fixed instrument on the trial's candidate (or the baseline)."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.ledger import Status
from evaluators.base import Measurement
from steps.lab import Lab
from steps.measuring import Measuring
from steps.trial import Trial
from tasks.remote import measure_remotely


def _log(metric: str, m: Measurement | None, champion: list[float] | None = None) -> None:
    log = get_run_logger()
    if m is None:
        return
    if m.status == "ok":
        runs = f" over {len(m.samples)} runs" if len(m.samples) > 1 else ""
        log.info("%s = %.6g%s in %.1fs", metric, m.metric, runs, m.duration_s)
    else:
        log.warning("crash: %s\n%s", m.reason, m.log_tail[-2000:])
    if champion:
        log.info("champion re-measured: %s", ", ".join(f"{v:.6g}" for v in champion))


@task(name="evaluate", cache_policy=NO_CACHE)
async def measure(lab: Lab, trial: Trial) -> Measurement:
    """The candidate: its cheap stages first (Screened: it failed one), then once, repeated,
    or interleaved with the champion, as the rule needs; on its slot, or on a worker of the
    study's work pool."""
    if lab.study.config.evaluator.work_pool:
        await asyncio.to_thread(lab.measuring.screen, trial)  # the stages run here
        m = await measure_remotely(lab, trial)
    else:
        m = await asyncio.to_thread(lab.measuring.candidate, trial)
    _log(lab.study.metric.name, m, trial.champion_runs)
    return m


@task(name="baseline", cache_policy=NO_CACHE)
async def baseline(lab: Lab, trial: Trial) -> tuple[Status, str]:
    """The unchanged artifact, measured (on a worker of the study's work pool, if it has one):
    its status and why."""
    measured = None
    if lab.study.config.evaluator.work_pool:
        lab.measuring.start_baseline(trial)
        measured = await measure_remotely(lab, trial)
    outcome = await asyncio.to_thread(lab.measuring.baseline, trial, measured)
    _log(lab.study.metric.name, trial.measurement)
    return outcome


@task(name="calibrate", cache_policy=NO_CACHE)
async def calibrate(measuring: Measuring, slot: int = 1) -> Measurement:
    """The noise of a slot: the champion run several times there (at the start, for each
    slot's GPU, on a new machine)."""
    m = await asyncio.to_thread(measuring.calibrate, slot)
    _log(measuring.records.study.metric.name, m)
    return m
