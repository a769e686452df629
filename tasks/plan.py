"""The campaign's bookkeeping as tasks: the next trial, and what ended counted (slots freed,
the budget, the UI's progress artifact)."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE

from core.ledger import Row
from steps import report
from steps.plan import Plan
from steps.trial import Stop, Trial


@task(name="next", cache_policy=NO_CACHE)
async def next_trial(plan: Plan) -> Trial:
    """A trial a killed run left in flight (resumed under its own number), else a new one."""
    trial, resumed = await asyncio.to_thread(plan.next_trial)
    if resumed:
        get_run_logger().info("resuming experiment %d (%s)", trial.experiment, trial.description)
    return trial


@task(name="count", cache_policy=NO_CACHE)
async def count(
    plan: Plan,
    ended: list[tuple[Trial | None, Row | Stop]] | None = None,
    in_flight: int = 0,
    closing: bool = False,
) -> None:
    """What ended counted against the budget, its slots freed, and the progress shown; when
    closing, why the campaign stopped early (if it did)."""
    plan.count(ended or [])
    note = plan.budget.stop if closing else ""
    if note:
        get_run_logger().warning(note)
    pct, text = plan.progress(in_flight, note)
    if plan.progress_id is None:
        key = f"{report.artifact_key(plan.lab.study.name)}-progress"
        plan.progress_id = await acreate_progress_artifact(pct, key=key, description=text)
    else:
        await aupdate_progress_artifact(plan.progress_id, pct, description=text)
