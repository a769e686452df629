"""One experiment: propose, then apply, evaluate and decide in a transaction, then persist.

An exception or a discard after apply rolls the transaction back, which resets the worktree
to the champion. The first experiment of a study is the baseline: the unchanged artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.transactions import transaction

from core.ledger import Row, Status
from core.workspace import GuardViolation
from proposers import choose_kind, make_proposer
from proposers.base import InvalidProposal, StopCampaign
from steps.lab import Lab
from steps.trial import Stop, Trial
from tasks import (
    apply,
    baseline,
    calibrate,
    decide,
    holdout,
    measure,
    persist,
    prepare,
    propose,
)


@flow(name="experiment")
def experiment(
    study: str,
    proposer: str | None = None,
    seed: int | None = None,
    researcher: Any = None,  # a Proposer; Any, since Prefect validates parameters
) -> Row | Stop:
    """`researcher`: a proposer object to use instead of the study's (tests pass one)."""
    lab = Lab.open(study)
    researcher = researcher or make_proposer(lab.study, choose_kind(lab.study, proposer)[0], seed)
    prepare(lab, researcher)
    trial = Trial(lab.ledger.next_experiment())
    if lab.champion() is None:
        row = persist(lab, trial, *baseline(lab, trial))
        holdout(lab)
        return row
    if lab.needs_calibration():
        calibrate(lab, f"{trial.experiment}-calibration")

    try:
        proposal = propose(lab, researcher, trial)
    except StopCampaign as exc:
        return Stop(str(exc), trial.experiment)
    except InvalidProposal as exc:
        return persist(lab, trial, Status.INVALID, str(exc), researcher)

    verdict = None
    try:
        with transaction() as txn:
            txn.set("lab", lab)
            candidate = apply(lab, proposal, trial)
            measurement, champion_runs = measure(lab, trial)
            if measurement.status == "ok":
                verdict = decide(lab, measurement, candidate, champion_runs)
            if verdict is None or verdict.status != "keep":
                txn.rollback()
    except GuardViolation as exc:  # the rollback put the champion back
        return persist(lab, trial, Status.REJECTED, str(exc), researcher)
    if verdict is None:
        return persist(lab, trial, Status.CRASH, measurement.reason, researcher)
    row = persist(lab, trial, Status(verdict.status), verdict.evidence, researcher)
    if row.kept:
        holdout(lab)
    return row
