"""A campaign: K experiments or M minutes on one study, each experiment a subflow of its own.

One writer per study: the campaign holds the study's lock (runs/<name>/lock) from before it opens
the worktree until it has published, so a scheduled run, an ad-hoc run and a CLI run of one study
never write at once. The second is refused with a message naming the holder, or waits for it
when `lock_wait_s` says so.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from core.decide import Verdict
from core.ledger import Row
from core.lock import StudyLock
from core.workspace import Conflict
from flows.experiment import experiment
from steps.abtests import ABTests, asynchronous
from steps.lab import Lab
from steps.plan import Plan
from steps.plugins import load_study
from steps.preflight import preflight
from steps.report import Summary
from steps.trial import Launched, Remeasure, Stop, Trial
from tasks import (
    begin_ab_tests,
    calibrate,
    choose_researcher,
    claim,
    collect,
    count,
    dashboard,
    finish_tracking,
    holdout,
    launch,
    next_trial,
    open_lab,
    prepare,
    publish,
    record,
    remeasure,
    start_tracking,
    wait_until,
)
from tasks.notes import take_note


@flow(name="campaign")
async def campaign(
    study: str,
    experiments: int | None = None,
    minutes: float | None = None,
    proposer: str | None = None,
    seed: int | None = None,
    lock_wait_s: float = 0.0,
    researcher: Any = None,  # a Proposer; Any, since Prefect validates parameters
    parallel: int | None = None,
    note: str | None = None,
) -> Summary:
    """K experiments (`experiments`; 0: until stopped) or M minutes on one study, with up to
    `parallel` (default: the study's) candidates in flight at once.

    `researcher`: a proposer object to use instead of the study's (tests pass one). `note`: a
    person's note for every proposal from now on (as `autoresearch note` takes it).
    """
    spec = load_study(study)
    preflight(spec)
    if note:
        await take_note(spec, note)
    with StudyLock(spec.state_dir, spec.name, lock_wait_s, what=_who()):
        return await _campaign(study, experiments, minutes, proposer, seed, researcher, parallel)


def _who() -> str:
    """How the lock's holder is named to a refused writer: this flow run."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return "campaign"
    run = ctx.flow_run
    via = f", deployment {run.deployment_id}" if run.deployment_id else ""
    return f"campaign flow run {run.name} {run.id}{via}"


async def _campaign(
    study: str,
    experiments: int | None,
    minutes: float | None,
    proposer: str | None,
    seed: int | None,
    researcher: Any,
    parallel: int | None,
) -> Summary:
    lab = await open_lab(study, parallel)
    await start_tracking(lab)  # the campaign's run in the study's trackers, if any
    try:
        researcher = researcher or await choose_researcher(lab, proposer, seed)
        await prepare(lab, researcher)
        later = asynchronous(lab)
        plan = Plan(lab, experiments, minutes, resume=not later)
        await count(plan)
        await (_ab_tests if later else _in_parallel)(study, lab, researcher, plan)
        await count(plan, closing=True)
        await holdout(lab.holdout, at_end=True)
        summary = plan.ended(await publish(lab))
    except Exception as exc:
        await finish_tracking(lab, None, failed=f"{type(exc).__name__}: {exc}")
        raise
    await finish_tracking(lab, summary)
    return summary


async def _in_parallel(study: str, lab: Lab, researcher: Any, plan: Plan) -> None:
    """Up to one experiment per slot in flight, each a subflow of its own."""
    running: dict[asyncio.Task[Row | Stop], Trial] = {}
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):  # the campaign's is enough
        try:
            while True:
                while plan.may_start(len(running)):
                    for slot in plan.calibrations_due(len(running)):
                        await calibrate(lab.measuring, slot)
                    await _start(study, lab, researcher, await next_trial(plan), running)
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                await count(plan, [(running.pop(t), t.result()) for t in done], len(running))
        finally:
            await _settle(running)


async def _start(
    study: str,
    lab: Lab,
    researcher: Any,
    trial: Trial,
    running: dict[asyncio.Task[Row | Stop], Trial],
) -> None:
    """The trial's experiment, a subflow of its own, started once its flow run exists (one at
    a time: SQLite servers stay responsive)."""
    begun = asyncio.Event()
    call = experiment.with_options(flow_run_name=f"{lab.study.name}-{trial.experiment}")(
        study, researcher=researcher, lab=lab, trial=trial, started=begun
    )
    running[asyncio.ensure_future(call)] = trial
    await begun.wait()


async def _ab_tests(study: str, lab: Lab, researcher: Any, plan: Plan) -> None:
    """Results that arrive days later: each round collects and decides what is due, launches
    new candidates up to the evaluator's `max_pending`, then lets time pass to the next due
    time (a simulated clock moves; on the real one the run ends and a scheduled one goes on).
    `experiments` counts launches; offline, the run waits until they are all decided."""
    tests = ABTests(lab)
    await begin_ab_tests(lab)
    while True:
        retry_at = await _collect_due(lab, tests, researcher, plan)
        retry_at = await _launch_unsent(lab, tests, retry_at)
        retry_at = await _launch_new(study, lab, tests, researcher, plan, retry_at)
        await count(plan, in_flight=len(tests.launched()))
        more = plan.budget.more()
        if plan.budget.stop or not (tests.launched() or tests.unlaunched() or more):
            break
        when = min((t for t in (tests.due(), retry_at) if t), default=None)
        if when is None or not await wait_until(lab, when):
            break
    await dashboard(lab)  # what is in flight now, once a run


async def _collect_due(lab: Lab, tests: ABTests, researcher: Any, plan: Plan) -> str | None:
    """Each launched test collected; decided ones recorded; a keep whose champion was replaced
    meanwhile tested again on the champion now. When nothing could be sent: when to retry."""
    retry_at = None
    for trial in tests.launched():
        c, decision = await collect(lab, trial)
        while isinstance(decision, Remeasure):  # the champion moved: test the change again
            await claim(lab, trial)
            try:
                await remeasure(lab, trial, decision)
                retry_at = await launch(lab, trial)
                decision = None
            except Conflict as exc:
                why = f"does not apply on the champion kept meanwhile: {exc}"
                decision = Verdict("discard", why, why)
            finally:
                lab.release(trial)
        if decision is not None:
            async with lab.turn:
                row = await record(lab, trial, c, decision, researcher)
            await count(plan, [(None, row)], len(tests.launched()))
    return retry_at


async def _launch_unsent(lab: Lab, tests: ABTests, retry_at: str | None) -> str | None:
    """Candidates proposed before but not sent yet, launched now (the last says when to retry,
    if nothing could be sent)."""
    for trial in tests.unlaunched():
        await claim(lab, trial)
        try:
            retry_at = await launch(lab, trial)
        finally:
            lab.release(trial)
    return retry_at


async def _launch_new(
    study: str,
    lab: Lab,
    tests: ABTests,
    researcher: Any,
    plan: Plan,
    retry_at: str | None,
) -> str | None:
    """New experiments (each proposed and launched by its subflow) while there is room."""
    while tests.room() > 0 and plan.budget.more() and not retry_at:
        trial = await next_trial(plan)
        try:
            out = await experiment.with_options(
                flow_run_name=f"{lab.study.name}-{trial.experiment}"
            )(study, researcher=researcher, lab=lab, trial=trial)
        except BaseException:
            lab.release(trial)
            raise
        if isinstance(out, Launched):
            lab.release(trial)
            retry_at = out.retry_at
        else:
            await count(plan, [(trial, out)], len(tests.launched()))
    return retry_at


async def _settle(running: dict[asyncio.Task[Row | Stop], Trial]) -> None:
    """On the way out with experiments in flight (an error, a stop now): let them end; their
    pending records stay, and the next start resumes them."""
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
