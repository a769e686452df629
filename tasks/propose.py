"""Propose: ask the researcher for a change. No side effects, so Prefect may retry it."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from proposers.base import InvalidProposal, Proposal, Proposer, StopCampaign
from steps.lab import Lab
from steps.trial import Trial

FINAL = (StopCampaign, InvalidProposal)


def _retry_unless_final(task, task_run, state) -> bool:  # noqa: ANN001 (Prefect's hook shape)
    """Retry what may pass (a network error), never a proposal that cannot or a stop. The
    state is read synchronously: in an async task, `result()` would be a coroutine that raises
    nothing, and nothing would be retried."""
    try:
        state.result(_sync=True)
    except FINAL:
        return False
    except Exception:
        return True
    return False


@task(
    name="propose",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_unless_final,
    cache_policy=NO_CACHE,
)
async def propose(lab: Lab, researcher: Proposer, trial: Trial) -> Proposal:
    return await asyncio.to_thread(lab.propose, researcher, trial)
