"""A campaign: K experiments or M minutes on one study, each experiment a subflow of its own.

One writer per study: the campaign holds the study's lock (runs/<name>/lock) from before it opens
the worktree until it has published, so a scheduled run, an ad-hoc run and a CLI run of one study
never write at once. The second is refused with a message naming the holder, or waits for it
when `lock_wait_s` says so.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext

from core.lock import StudyLock
from flows.experiment import experiment
from proposers import choose_kind, make_proposer
from steps import report
from steps.budget import Budget
from steps.lab import Lab, ensure_startable
from steps.plugins import load_study
from tasks import holdout, publish


@flow(name="campaign")
def campaign(
    study: str,
    experiments: int | None = None,
    minutes: float | None = None,
    proposer: str | None = None,
    seed: int | None = None,
    lock_wait_s: float = 0.0,
    researcher: Any = None,  # a Proposer; Any, since Prefect validates parameters
) -> dict[str, Any]:
    """K experiments (`experiments`; 0: until stopped) or M minutes on one study.

    `researcher`: a proposer object to use instead of the study's (tests pass one).
    """
    spec = load_study(study)
    ensure_startable(spec)
    with StudyLock(spec.state_dir, spec.name, lock_wait_s, what=_who()):
        return _campaign(study, experiments, minutes, proposer, seed, researcher)


def _who() -> str:
    """How the lock's holder is named to a refused writer: this flow run."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return "campaign"
    run = ctx.flow_run
    via = f", deployment {run.deployment_id}" if run.deployment_id else ""
    return f"campaign flow run {run.name} {run.id}{via}"


class Progress:
    """The UI's progress artifact: experiments done of planned (or minutes used of the budget)."""

    def __init__(self, name: str, budget: Budget) -> None:
        self.budget = budget
        self.id: UUID = create_progress_artifact(
            0.0, key=f"{report.artifact_key(name)}-progress", description=self.text()
        )

    def text(self, note: str = "") -> str:
        b = self.budget
        if b.planned:
            text = f"{b.done} of {b.planned} experiments done"
        elif b.minutes:
            text = f"{b.done} experiments done, {b.minutes_used():.1f} of {b.minutes:g} min"
        else:
            text = f"{b.done} experiments done, running until stopped"
        return f"{text}; {note}" if note else text

    def update(self, note: str = "") -> None:
        b = self.budget
        if b.planned:
            pct = 100.0 * b.done / b.planned
        elif b.minutes:
            pct = 100.0 * b.minutes_used() / b.minutes
        else:
            pct = 0.0
        update_progress_artifact(self.id, min(pct, 100.0), description=self.text(note))


def _campaign(
    study: str,
    experiments: int | None,
    minutes: float | None,
    proposer: str | None,
    seed: int | None,
    researcher: Any,
) -> dict[str, Any]:
    log = get_run_logger()
    lab = Lab.open(study)
    first = lab.ledger.next_experiment()
    kind, why = choose_kind(lab.study, proposer)
    researcher = researcher or make_proposer(lab.study, kind, seed)
    log.info("study %s: %s", lab.study.name, why)
    budget = Budget(lab.study, experiments, minutes)
    progress = Progress(lab.study.name, budget)
    while budget.more():
        number = lab.ledger.next_experiment()
        out = experiment.with_options(flow_run_name=f"{lab.study.name}-{number}")(
            study, researcher=researcher
        )
        budget.account(out)
        progress.update()
    if budget.stop:
        log.warning(budget.stop)
    progress.update(budget.stop)
    holdout(lab, at_end=True)
    overfitting = lab.overfitting_since(first)
    summary = publish(lab)
    return summary | {"ran": budget.done, "stop": budget.stop, "overfitting": overfitting}
