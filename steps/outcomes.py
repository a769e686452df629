"""What an exception raised in an experiment means for it: a row (its status and why), a Stop
of the campaign, or nothing of ours (None: let it rise). The flows read it here, so that they
need not know which plugin raises what."""

from __future__ import annotations

from core.ledger import Status
from core.workspace import Conflict, GuardViolation
from evaluators.base import BadCandidate, Unavailable
from proposers.base import InvalidProposal, StopCampaign
from steps.screening import Screened
from steps.trial import Stop


def ended_by(exc: Exception, experiment: int) -> tuple[Status, str] | Stop | None:
    if isinstance(exc, StopCampaign | Unavailable):  # bad credentials, a spend limit; the
        return Stop(str(exc), experiment)  # instrument cannot work now: resumed later
    if isinstance(exc, InvalidProposal):
        return Status.INVALID, str(exc)
    if isinstance(exc, GuardViolation):  # the rollback put the champion back
        return Status.REJECTED, str(exc)
    if isinstance(exc, Conflict):
        return Status.DISCARD, f"does not apply on the champion kept meanwhile: {exc}"
    if isinstance(exc, BadCandidate):
        return Status.CRASH, str(exc)
    if isinstance(exc, Screened):  # a cheap stage stopped it; the rollback put the champion back
        return Status.SCREENED, str(exc)
    return None
