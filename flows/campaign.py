"""A campaign: K experiments or M minutes on one study, each experiment a subflow of its own.

One writer per study: the campaign holds the study's lock (runs/<name>/lock) from before it opens
the worktree until it has published, so a scheduled run, an ad-hoc run and a CLI run of one study
never write at once. The second is refused with a message naming the holder, or waits for it
when `lock_wait_s` says so.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext

from core.ledger import Status
from core.lock import StudyLock
from flows.experiment import experiment
from proposers import choose_kind
from steps import report
from steps.lab import Lab
from steps.plugins import load_study
from steps.trial import Stop
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
    """`researcher`: a proposer object to use instead of the study's (tests pass one)."""
    spec = load_study(study)
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

    def __init__(self, name: str, planned: int | None, minutes: float | None) -> None:
        self.planned, self.minutes, self.start = planned, minutes, time.monotonic()
        self.id: UUID = create_progress_artifact(
            0.0,
            key=f"{report.artifact_key(name)}-progress",
            description=self.text(0),
        )

    def text(self, done: int, note: str = "") -> str:
        if self.planned:
            text = f"{done} of {self.planned} experiments done"
        else:
            used = (time.monotonic() - self.start) / 60
            text = f"{done} experiments done, {used:.1f} of {self.minutes:g} min"
        return f"{text}; {note}" if note else text

    def update(self, done: int, note: str = "") -> None:
        if self.planned:
            pct = 100.0 * done / self.planned
        else:
            pct = 100.0 * (time.monotonic() - self.start) / 60 / (self.minutes or 1)
        update_progress_artifact(self.id, min(pct, 100.0), description=self.text(done, note))


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
    budget = lab.study.config.budget
    experiments = experiments or budget.experiments or (None if minutes else 10)
    minutes = minutes or budget.minutes
    deadline = time.monotonic() + minutes * 60 if minutes else None
    log.info("study %s: %s", lab.study.name, choose_kind(lab.study, proposer)[1])
    progress = Progress(lab.study.name, experiments, minutes)

    stop = ""
    spent = 0.0
    done = 0
    while experiments is None or done < experiments:
        if deadline and time.monotonic() >= deadline:
            stop = f"time budget of {minutes:g} min reached"
            break
        if budget.usd is not None and spent >= budget.usd:
            stop = f"USD budget of {budget.usd:g} reached (spent {spent:.4f})"
            break
        number = lab.ledger.next_experiment()
        out = experiment.with_options(flow_run_name=f"{lab.study.name}-{number}")(
            study, proposer, seed, researcher
        )
        done += 1
        progress.update(done)
        if isinstance(out, Stop):
            stop = f"stopped: {out.reason}"
            break
        spent += out.cost_usd
        if out.description == "baseline" and out.status != Status.KEEP:
            what = "crashed" if out.status == Status.CRASH else "was rejected"
            stop = f"the baseline {what} ({out.evidence}): see logs/{number}.log"
            break
    if stop:
        log.warning(stop)
    progress.update(done, stop)
    holdout(lab, at_end=True)
    overfitting = lab.overfitting_since(first)
    summary = publish(lab)
    return summary | {"ran": done, "stop": stop, "overfitting": overfitting}
