"""Apply: commit the proposal on the study branch. Rolled back to the champion on discard."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.transactions import Transaction

from proposers.base import Proposal
from steps.lab import Lab
from steps.trial import Candidate, Trial


@task(name="apply", cache_policy=NO_CACHE)
def apply(lab: Lab, proposal: Proposal, trial: Trial) -> Candidate:
    return lab.apply(proposal, trial)


@apply.on_rollback
def back_to_champion(txn: Transaction) -> None:
    txn.get("lab").reset_to_champion()
