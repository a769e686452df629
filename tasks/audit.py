"""Audit: a keep the rules doubt (a seed changed, an implausible jump) measured again before it
lands; kept only when it holds."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.decide import Verdict
from steps.audit import Audit
from steps.trial import Trial


@task(name="audit", cache_policy=NO_CACHE)
async def audit(auditor: Audit, trial: Trial, verdict: Verdict) -> Verdict:
    reviewed = await asyncio.to_thread(auditor.review, trial, verdict)
    if trial.suspect:
        get_run_logger().warning("suspect keep: %s", trial.suspect)
    return reviewed
