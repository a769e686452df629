"""One experiment: propose, then apply, evaluate and decide in a transaction, then persist.

An exception or a discard after apply rolls the transaction back, which resets the worktree
to the champion. The first experiment of a study is the baseline: the unchanged artifact.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.transactions import transaction

from autoresearch.lab import Lab, make_row, now
from autoresearch.workspace import GuardViolation
from proposers import choose_kind, make_proposer
from proposers.base import InvalidProposal, Proposal, StopCampaign
from tasks import (
    apply,
    calibrate,
    decide,
    evaluate,
    evaluate_paired,
    holdout,
    persist,
    propose,
)


def baseline(lab: Lab, number: int) -> dict[str, Any]:
    """The unchanged artifact, measured (several times when the rule needs its noise)."""
    started, started_at = time.monotonic(), now()
    m = calibrate(lab, number) if lab.rule.rule == "sigma" else evaluate(lab, number)
    status = "keep" if m.status == "ok" else "crash"
    row = make_row(
        number, started, started_at, status, "baseline", lab.study.metric.name,
        commit=lab.workspace.head(), measurement=m, evidence=m.reason,
    )  # fmt: skip
    persist(lab, row, measurement=m)
    if lab.holdout_due():
        holdout(lab)
    return row


@flow(name="experiment")
def experiment(study: str, proposer: str | None = None, seed: int | None = None) -> dict[str, Any]:
    lab = Lab.open(study)
    number = lab.ledger.next_experiment()
    if lab.champion() is None:
        return baseline(lab, number)
    if lab.needs_calibration():
        calibrate(lab, f"{number}-calibration")

    started, started_at = time.monotonic(), now()
    kind, _ = choose_kind(lab.study, proposer)
    researcher = make_proposer(lab.study, kind, seed)
    metric = lab.study.metric.name

    def finish(status: str, proposal: Proposal, reason: str, **kw: Any) -> dict[str, Any]:
        row = make_row(
            number, started, started_at, status, proposal.hypothesis, metric,
            proposal=proposal, evidence=reason, **kw,
        )  # fmt: skip
        outcome = lab.outcome(proposal, status, reason, kw.get("measurement"))
        persist(lab, row, researcher, outcome, kw.get("measurement"))
        if status == "keep" and lab.holdout_due():
            holdout(lab)
        return row

    try:
        proposal = propose(lab, researcher, number)
    except StopCampaign as exc:
        return {"status": "stopped", "reason": str(exc), "experiment": number}
    except InvalidProposal as exc:
        nothing = Proposal(f"invalid proposal: {exc}", {}, kind, "", exc.usage, exc.cost_usd)
        return finish("invalid", nothing, str(exc))

    candidate = verdict = None
    try:
        with transaction() as txn:
            txn.set("lab", lab)
            candidate = apply(lab, proposal)
            if lab.paired:
                measurement, champion_runs = evaluate_paired(lab, number)
            else:
                measurement, champion_runs = evaluate(lab, number, lab.repeats), None
            if measurement.status == "ok":
                verdict = decide(lab, measurement, candidate, champion_runs)
            if verdict is None or verdict.status != "keep":
                txn.rollback()
    except GuardViolation as exc:
        lab.reset_to_champion()
        commit = candidate.sha if candidate else ""
        return finish("rejected", proposal, str(exc), commit=commit, candidate=candidate)
    status, reason = (
        (verdict.status, verdict.evidence) if verdict else ("crash", measurement.reason)
    )
    return finish(
        status, proposal, reason, commit=candidate.sha, candidate=candidate, measurement=measurement
    )
