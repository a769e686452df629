"""The campaign's bookkeeping as tasks: the next trial, and what ended counted (slots freed,
the budget, the UI's progress artifact and, with several objectives, its Pareto front)."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    aupdate_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from core.ledger import Row, format_metric
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
    """What ended counted against the budget, its slots freed, and the progress shown (the
    Pareto front too, at the start and when something ended); when closing, why the campaign
    stopped early (if it did)."""
    plan.count(ended or [])
    for _, outcome in ended or []:  # the campaign's log tells each experiment's outcome
        if isinstance(outcome, Row):
            get_run_logger().info("#%d %s %s %s", outcome.experiment, outcome.status,
                                  format_metric(outcome.metric), outcome.description)  # fmt: skip
    note = plan.budget.stop if closing else ""
    if note:
        get_run_logger().warning(note)
    pct, text = plan.progress(in_flight, note)
    key = report.artifact_key(plan.lab.study.name)
    first = plan.progress_id is None
    if first:
        plan.progress_id = await acreate_progress_artifact(
            pct, key=f"{key}-progress", description=text
        )
    else:
        await aupdate_progress_artifact(plan.progress_id, pct, description=text)
    if first or ended:
        await _show_front(plan, f"{key}-pareto")


async def _show_front(plan: Plan, key: str) -> None:
    """The Pareto front as a markdown artifact, for a study with several objectives."""
    study = plan.lab.study
    rows = plan.lab.records.ledger.rows()
    markdown = await asyncio.to_thread(report.pareto_markdown, study, rows)
    if markdown:
        description = f"Pareto front of study {study.name}"
        await acreate_markdown_artifact(markdown, key=key, description=description)
