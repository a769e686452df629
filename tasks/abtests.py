"""A/B tests whose results arrive days later (an asynchronous evaluator): launch a candidate's
batch, collect what came in, decide when the rule is sure, record it, let time pass."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.decide import Verdict
from core.ledger import Row, Status
from evaluators.base import Collected
from proposers.base import Learned, Proposer
from steps import report
from steps.abtests import ABTests
from steps.lab import Lab
from steps.trial import Remeasure, Trial


@task(name="begin", cache_policy=NO_CACHE)
async def begin_ab_tests(lab: Lab) -> None:
    """Number 1 kept for the baseline, recorded with the first decision (the champion's arm)."""
    await asyncio.to_thread(ABTests(lab).reserve_baseline)


@task(name="launch", cache_policy=NO_CACHE)
async def launch(lab: Lab, trial: Trial) -> str | None:
    """The candidate's batch planned, saved, and sending; when nothing can be sent now, when to
    try again (the trial stays in flight, unlaunched). BadCandidate: the caller's crash."""
    retry_at = await asyncio.to_thread(ABTests(lab).launch, trial)
    if retry_at:
        get_run_logger().info("nothing can be launched now; again at %s", retry_at)
    return retry_at


@task(name="collect", cache_policy=NO_CACHE)
async def collect(lab: Lab, trial: Trial) -> tuple[Collected, Verdict | Remeasure | None]:
    """What the trial's batch has counted, and the decision it allows (None: wait)."""
    tests = ABTests(lab)
    c = await asyncio.to_thread(tests.collect, trial)
    decision = await asyncio.to_thread(tests.decide, trial, c)
    get_run_logger().info("#%d: %s", trial.experiment, c.log.splitlines()[0] if c.log else "")
    return c, decision


@task(name="record", cache_policy=NO_CACHE)
async def record(
    lab: Lab, trial: Trial, c: Collected, verdict: Verdict, researcher: Proposer | None
) -> Row:
    """The decided test's row (the baseline's first, at the first decision); the batch stops.

    The caller holds the lab's turn."""
    tests = ABTests(lab)
    baseline = await asyncio.to_thread(tests.baseline_row, trial, c)
    if baseline is not None:
        await asyncio.to_thread(lab.records.commit_row, baseline, None)
    learned = Learned()
    status = Status(verdict.status)
    if researcher is not None and trial.proposal is not None:
        try:
            learned = await asyncio.to_thread(lab.learn, researcher, trial, status, verdict.reason)
        except Exception as exc:  # a failed note must not cost the experiment's row
            get_run_logger().warning("learnings not updated: %s", exc)
    row = await asyncio.to_thread(lab.finish, trial, status, verdict.evidence, learned)
    await asyncio.to_thread(tests.finish, trial, status)
    get_run_logger().info("#%s %s: %s", row.experiment, row.status, row.description)
    return row


@task(name="wait", cache_policy=NO_CACHE)
async def wait_until(lab: Lab, when: str) -> bool:
    """Let time pass until `when`: on a simulated clock it moves (True); on the real one the
    run ends here and a scheduled one collects (False)."""
    moved = await asyncio.to_thread(ABTests(lab).wait_until, when)
    get_run_logger().info("%s %s", "the clock moved to" if moved else "next due at", when)
    return moved


@task(name="dashboard", cache_policy=NO_CACHE)
async def dashboard(lab: Lab) -> str:
    """The tests in flight, arm by arm, as a UI artifact (and for report.html)."""
    tests = ABTests(lab)
    text = await asyncio.to_thread(tests.dashboard)
    key = f"{report.artifact_key(lab.study.name)}-ab-tests"
    await acreate_markdown_artifact(text, key=key, description="A/B tests in flight")
    await asyncio.to_thread(tests.save_dashboard, text)
    return text
