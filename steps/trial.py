"""One experiment as it goes (a Trial), and what it ends in: a ledger Row, or a Stop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.ledger import Row, Status
from evaluators.base import Measurement
from proposers.base import Proposal


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Candidate:
    """A proposal applied as a commit."""

    sha: str
    lines_added: int
    lines_removed: int


@dataclass(frozen=True)
class Stop:
    """The campaign must stop (bad credentials, a spend limit); nothing was recorded."""

    reason: str
    experiment: int


@dataclass
class Trial:
    """What an experiment has done so far; its row is built from it once, at the end."""

    experiment: int
    description: str = ""
    proposer: str = "-"
    commit: str = ""
    proposal: Proposal | None = None
    candidate: Candidate | None = None
    measurement: Measurement | None = None
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=now)

    def propose(self, proposal: Proposal) -> None:
        self.proposal = proposal
        self.description = proposal.hypothesis
        self.proposer = proposal.proposer

    def apply(self, candidate: Candidate) -> None:
        self.candidate = candidate
        self.commit = candidate.sha

    def row(self, status: Status, evidence: str = "") -> Row:
        """The results.tsv row. A crash carries 0.000000 and 0.0, as in Karpathy's ledger."""
        m = self.measurement
        ok = m is not None and m.status == "ok" and status != Status.CRASH
        tags = [f"{k}={v[:12]}" for k, v in m.tags.items()] if m else []
        p, c = self.proposal, self.candidate
        tokens = p.usage.columns() if p else {}
        return Row(
            experiment=self.experiment,
            status=status,
            description=self.description,
            commit=self.commit[:7] if self.commit else "-",
            metric=m.metric if ok and m and m.metric is not None else 0.0,
            memory_gb=m.secondary.get("memory_gb", 0.0) if ok and m else 0.0,
            started_at=self.started_at,
            duration_s=time.monotonic() - self.started,
            proposer=self.proposer,
            lines_added=c.lines_added if c else 0,
            lines_removed=c.lines_removed if c else 0,
            cost_usd=p.cost_usd if p else 0.0,
            evidence=" ".join([evidence, *tags]).strip(),
            key=p.key if p else "",
            **tokens,
        )
