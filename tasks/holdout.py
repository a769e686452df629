"""Holdout: score the champion on data the researcher never sees; flag overfitting."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steps.holdout import Holdout


@task(name="holdout", cache_policy=NO_CACHE)
async def holdout(check: Holdout, at_end: bool = False) -> bool | None:
    """When a check is due: its row in the ledger, and whether the champion overfits."""
    if not check.due(at_end):
        return None
    row, overfitting = await asyncio.to_thread(check.run)
    await asyncio.to_thread(check.records.commit_row, row)
    (get_run_logger().warning if overfitting else get_run_logger().info)(row.description)
    return overfitting
