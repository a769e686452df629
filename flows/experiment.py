"""One experiment: propose, then apply, measure and decide in a transaction, then persist.

An exception or a discard after apply rolls the transaction back, which resets the slot to the
champion. Deciding and recording take the lab's turn, one experiment at a time, so that the
champion each decision faces is the one the row lands on; a candidate built on a champion that
was replaced meanwhile, and better than the new one, is applied again on it and measured again.
The first experiment of a study is the baseline: the unchanged artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.transactions import transaction

from core.decide import Verdict
from core.ledger import Row, Status
from steps.abtests import asynchronous
from steps.lab import Lab
from steps.outcomes import ended_by
from steps.trial import Launched, Stop, Trial
from tasks import (
    apply,
    audit,
    baseline,
    calibrate,
    choose_researcher,
    decide,
    holdout,
    launch,
    measure,
    open_lab,
    persist,
    prepare,
    propose,
    remeasure,
    reserve,
)


@flow(name="experiment")
async def experiment(
    study: str,
    proposer: str | None = None,
    seed: int | None = None,
    researcher: Any = None,  # a Proposer; Any, since Prefect validates parameters
    lab: Any = None,  # the campaign's Lab; without it the study is opened here
    trial: Any = None,  # the campaign's reserved (or resumed) Trial
    started: Any = None,  # an asyncio.Event set once this flow run exists
) -> Row | Stop | Launched:
    """`researcher`: a proposer object to use instead of the study's (tests pass one)."""
    if started is not None:
        started.set()
    if lab is None:  # alone: the study's own set-up, as a campaign would do it
        lab = await open_lab(study)
        researcher = researcher or await choose_researcher(lab, proposer, seed)
        await prepare(lab, researcher)
        if lab.judge.needs_calibration():
            await calibrate(lab.measuring)
    trial = trial or await reserve(lab)
    if lab.records.champion() is None and not asynchronous(lab):
        async with lab.turn:
            row = await persist(lab, trial, *await baseline(lab, trial))
            await holdout(lab.holdout)
        return row
    try:
        if trial.proposal is None:
            await propose(lab, researcher, trial)
        return await _try(lab, trial, researcher)
    except Exception as exc:
        if (ended := ended_by(exc, trial.experiment)) is None:
            raise
        return await _end(lab, trial, ended, researcher)


async def _try(lab: Lab, trial: Trial, researcher: Any) -> Row | Stop | Launched:
    """Apply, measure and decide in a transaction: a discard, a crash or an exception rolls
    it back (the slot goes back to the champion)."""
    with transaction() as txn:
        txn.set("lab", lab)
        txn.set("trial", trial)
        await apply(lab, trial)
        if asynchronous(lab):  # results come days later: the campaign collects them
            retry_at = await launch(lab, trial)
            return Launched(trial.experiment, retry_at)
        while (await measure(lab, trial)).status == "ok":
            async with lab.turn:
                decision = await decide(lab.judge, trial)
                if isinstance(decision, Verdict) and decision.status == "keep":
                    decision = await audit(lab.audit, trial, decision)
                if isinstance(decision, Verdict):
                    if decision.status != "keep":
                        txn.rollback()
                    status = Status(decision.status)
                    row = await persist(lab, trial, status, decision.evidence, researcher)
                    if row.kept:
                        await holdout(lab.holdout)
                    return row
            await remeasure(lab, trial, decision)
        txn.rollback()
    assert trial.measurement is not None
    return await _end(lab, trial, (Status.CRASH, trial.measurement.reason), researcher)


async def _end(
    lab: Lab, trial: Trial, ended: tuple[Status, str] | Stop, researcher: Any
) -> Row | Stop:
    """The experiment's row, as the way it ended says (in the lab's turn), or its Stop."""
    if isinstance(ended, Stop):
        return ended
    async with lab.turn:
        return await persist(lab, trial, *ended, researcher)
