"""Apply: commit the proposal in the trial's slot, on the champion. Rolled back to the
champion on discard; applied again on a newer champion when that one moved meanwhile."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.transactions import Transaction

from steps.lab import Lab
from steps.trial import Candidate, Remeasure, Trial


@task(name="apply", cache_policy=NO_CACHE)
async def apply(lab: Lab, trial: Trial) -> Candidate:
    return await asyncio.to_thread(lab.apply, trial)


@apply.on_rollback
def back_to_champion(txn: Transaction) -> None:
    txn.get("lab").rollback(txn.get("trial"))


@task(name="re-apply", cache_policy=NO_CACHE)
async def remeasure(lab: Lab, trial: Trial, why: Remeasure) -> Candidate:
    """The candidate's change on the champion kept meanwhile (Conflict when it does not apply)."""
    get_run_logger().info("%s: applying the change again on it", why.why)
    return await asyncio.to_thread(lab.remeasure, trial, why.onto)
