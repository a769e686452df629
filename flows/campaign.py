"""A campaign: K experiments or M minutes on one study, each experiment a subflow of its own.

One writer per study: the campaign holds the study's lock (runs/<name>/lock) from before it opens
the worktree until it has published, so a scheduled run, an ad-hoc run and a CLI run of one study
never write at once. The second is refused with a message naming the holder, or waits for it
when `lock_wait_s` says so.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from core.decide import Verdict
from core.ledger import Row
from core.lock import StudyLock
from core.workspace import Conflict
from flows.experiment import experiment
from proposers import choose_kind, make_proposer
from steps import report
from steps.abtests import ABTests, asynchronous
from steps.budget import Budget
from steps.lab import Lab, ensure_startable
from steps.plugins import load_study
from steps.trial import Launched, Remeasure, Stop, Trial
from tasks import (
    begin_ab_tests,
    calibrate,
    claim,
    collect,
    dashboard,
    holdout,
    launch,
    open_lab,
    prepare,
    publish,
    record,
    remeasure,
    reserve,
    wait_until,
)


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
) -> dict[str, Any]:
    """K experiments (`experiments`; 0: until stopped) or M minutes on one study, with up to
    `parallel` (default: the study's) candidates in flight at once.

    `researcher`: a proposer object to use instead of the study's (tests pass one).
    """
    spec = load_study(study)
    ensure_startable(spec)
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


class Progress:
    """The UI's progress artifact: experiments done of planned (or minutes used of the budget),
    and how many are in flight."""

    def __init__(self, name: str, budget: Budget) -> None:
        self.name, self.budget = name, budget
        self.id: UUID | None = None

    def text(self, in_flight: int = 0, note: str = "") -> str:
        b = self.budget
        if b.planned:
            text = f"{b.done} of {b.planned} experiments done"
        elif b.minutes:
            text = f"{b.done} experiments done, {b.minutes_used():.1f} of {b.minutes:g} min"
        else:
            text = f"{b.done} experiments done, running until stopped"
        text += f", {in_flight} in flight" if in_flight else ""
        return f"{text}; {note}" if note else text

    async def update(self, in_flight: int = 0, note: str = "") -> None:
        b = self.budget
        if b.planned:
            pct = 100.0 * b.done / b.planned
        elif b.minutes:
            pct = 100.0 * b.minutes_used() / b.minutes
        else:
            pct = 0.0
        text = self.text(in_flight, note)
        if self.id is None:
            key = f"{report.artifact_key(self.name)}-progress"
            self.id = await acreate_progress_artifact(min(pct, 100.0), key=key, description=text)
        else:
            await aupdate_progress_artifact(self.id, min(pct, 100.0), description=text)


async def _campaign(
    study: str,
    experiments: int | None,
    minutes: float | None,
    proposer: str | None,
    seed: int | None,
    researcher: Any,
    parallel: int | None,
) -> dict[str, Any]:
    log = get_run_logger()
    lab = await open_lab(study, parallel)
    first = lab.ledger.next_experiment()
    kind, why = choose_kind(lab.study, proposer)
    researcher = researcher or make_proposer(lab.study, kind, seed)
    log.info("study %s: %s, %d in flight at most", lab.study.name, why, lab.parallel)
    await prepare(lab, researcher)
    budget = Budget(lab.study, experiments, minutes)
    progress = Progress(lab.study.name, budget)
    await progress.update()
    if asynchronous(lab):
        await _ab_tests(study, lab, researcher, budget, progress)
        return await _end(lab, budget, progress, first)
    queue = lab.resumable()  # what a killed run left in flight: their numbers, first
    running: dict[asyncio.Task[Row | Stop], Trial] = {}

    async def start(trial: Trial) -> None:
        begun = asyncio.Event()
        name = f"{lab.study.name}-{trial.experiment}"
        call = experiment.with_options(flow_run_name=name)(
            study, researcher=researcher, lab=lab, trial=trial, started=begun
        )
        running[asyncio.ensure_future(call)] = trial
        await begun.wait()  # one flow run created at a time: SQLite servers stay responsive

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):  # the campaign's is enough
        try:
            while True:
                while len(running) < lab.parallel and (queue or budget.more()):
                    if lab.champion() is None and running:
                        break  # the baseline first, alone
                    if lab.champion() and not running and lab.needs_calibration():
                        await calibrate(lab, f"{lab.ledger.next_experiment()}-calibration")
                    if queue:
                        trial = queue.pop(0)
                        await claim(lab, trial)
                    else:
                        trial = await reserve(lab)
                        budget.started += 1
                    await start(trial)
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    lab.release(running.pop(task))
                    budget.account(task.result())
                await progress.update(len(running))
        finally:
            await _settle(running)
    return await _end(lab, budget, progress, first)


async def _end(lab: Lab, budget: Budget, progress: Progress, first: int) -> dict[str, Any]:
    if budget.stop:
        get_run_logger().warning(budget.stop)
    await progress.update(note=budget.stop)
    await holdout(lab, at_end=True)
    overfitting = lab.overfitting_since(first)
    summary = await publish(lab)
    return summary | {"ran": budget.done, "stop": budget.stop, "overfitting": overfitting}


async def _ab_tests(
    study: str, lab: Lab, researcher: Any, budget: Budget, progress: Progress
) -> None:
    """Results that arrive days later: each round collects and decides what is due, launches
    new candidates up to the evaluator's `max_pending`, then lets time pass to the next due
    time (a simulated clock moves; on the real one the run ends and a scheduled one goes on).
    `experiments` counts launches; offline, the run waits until they are all decided."""
    tests = ABTests(lab)
    await begin_ab_tests(lab)
    retry_at: str | None = None
    while True:
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
                    budget.account(await record(lab, trial, c, decision, researcher))
        for trial in tests.unlaunched():  # proposed before, not sent yet
            await claim(lab, trial)
            try:
                retry_at = await launch(lab, trial)
            finally:
                lab.release(trial)
        while tests.room() > 0 and budget.more() and not retry_at:
            trial = await reserve(lab)
            budget.started += 1
            try:
                out = await experiment.with_options(
                    flow_run_name=f"{lab.study.name}-{trial.experiment}"
                )(study, researcher=researcher, lab=lab, trial=trial)
            finally:
                lab.release(trial)
            if isinstance(out, Launched):
                retry_at = out.retry_at
            else:
                budget.account(out)
        await progress.update(len(tests.launched()))
        if budget.stop or not (tests.launched() or tests.unlaunched() or budget.more()):
            break
        when = min((t for t in (tests.due(), retry_at) if t), default=None)
        if when is None or not await wait_until(lab, when):
            break
        retry_at = None
    await dashboard(lab)  # what is in flight now, once a run


async def _settle(running: dict[asyncio.Task[Row | Stop], Trial]) -> None:
    """On the way out with experiments in flight (an error, a stop now): let them end; their
    pending records stay, and the next start resumes them."""
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
