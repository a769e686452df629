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
from core.workspace import Conflict, GuardViolation
from evaluators.base import BadCandidate, Unavailable
from proposers import choose_kind, make_proposer
from proposers.base import InvalidProposal, StopCampaign
from steps.abtests import asynchronous
from steps.trial import Launched, Stop
from tasks import (
    apply,
    baseline,
    calibrate,
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
        kind = choose_kind(lab.study, proposer)[0]
        researcher = researcher or make_proposer(lab.study, kind, seed)
        await prepare(lab, researcher)
        if lab.needs_calibration():
            await calibrate(lab, f"{lab.ledger.next_experiment()}-calibration")
    trial = trial or await reserve(lab)
    if lab.champion() is None and not asynchronous(lab):
        async with lab.turn:
            row = await persist(lab, trial, *await baseline(lab, trial))
            await holdout(lab)
        return row

    if trial.proposal is None:
        try:
            await propose(lab, researcher, trial)
        except StopCampaign as exc:
            return Stop(str(exc), trial.experiment)
        except InvalidProposal as exc:
            async with lab.turn:
                return await persist(lab, trial, Status.INVALID, str(exc), researcher)

    try:
        with transaction() as txn:
            txn.set("lab", lab)
            txn.set("trial", trial)
            await apply(lab, trial)
            if asynchronous(lab):  # results come days later: the campaign collects them
                retry_at = await launch(lab, trial)
                return Launched(trial.experiment, retry_at)
            while (await measure(lab, trial)).status == "ok":
                async with lab.turn:
                    decision = await decide(lab, trial)
                    if isinstance(decision, Verdict):
                        if decision.status != "keep":
                            txn.rollback()
                        row = await persist(
                            lab, trial, Status(decision.status), decision.evidence, researcher
                        )
                        if row.kept:
                            await holdout(lab)
                        return row
                await remeasure(lab, trial, decision)
            txn.rollback()
    except GuardViolation as exc:  # the rollback put the champion back
        status, reason = Status.REJECTED, str(exc)
    except Conflict as exc:
        status, reason = Status.DISCARD, f"does not apply on the champion kept meanwhile: {exc}"
    except BadCandidate as exc:
        status, reason = Status.CRASH, str(exc)
    except Unavailable as exc:  # the instrument cannot work now: nothing lost, resumed later
        return Stop(str(exc), trial.experiment)
    else:
        status, reason = Status.CRASH, trial.measurement.reason
    async with lab.turn:
        return await persist(lab, trial, status, reason, researcher)
