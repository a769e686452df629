"""Tracking: the campaign's parent run in the study's trackers (steps.tracking), opened when it
starts and closed when it ends; each row is handed over by `persist` as it lands. A tracker's
failure is a warning in the flow run's log, never the campaign's."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from steps.lab import Lab
from steps.report import Summary


def warn(problems: list[str]) -> None:
    for problem in problems:
        get_run_logger().warning(problem)


@task(name="start-tracking", cache_policy=NO_CACHE)
async def start_tracking(lab: Lab) -> None:
    """The campaign's run in each tracker, named as its flow run (none: nothing to do)."""
    runs = lab.records.tracking
    if runs.chosen:
        tags = {"prefect.flow_run_id": str(flow_run.id or "")}
        warn(await asyncio.to_thread(runs.start, flow_run.name or "", tags))


@task(name="finish-tracking", cache_policy=NO_CACHE)
async def finish_tracking(lab: Lab, summary: Summary | None, failed: str = "") -> None:
    """The campaign's runs closed: with its summary, or why it failed."""
    runs = lab.records.tracking
    if runs.live:
        warn(await asyncio.to_thread(runs.finish, summary, failed))
