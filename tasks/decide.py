"""Decide: keep or discard, by the study's rule, against the champion now."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.decide import Verdict
from steps.judge import Judge
from steps.trial import Remeasure, Trial


@task(name="decide", cache_policy=NO_CACHE)
async def decide(judge: Judge, trial: Trial) -> Verdict | Remeasure:
    decision = await asyncio.to_thread(judge.decide, trial)
    if isinstance(decision, Verdict):
        log = get_run_logger()
        log.info("%s: %s (%s)", decision.status, decision.reason, decision.evidence)
    return decision
