"""One experiment as it goes (a Trial), and what it ends in: a ledger Row, or a Stop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.ledger import Row, Status
from core.pending import Record, Stage
from core.secrets import redact
from evaluators.base import Measurement
from proposers.base import Proposal, Usage


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


@dataclass(frozen=True)
class Launched:
    """A candidate sent out to be measured over days: its row comes when it is decided. Not
    launched yet (nothing could be sent): `retry_at` says when trying again is worth it."""

    experiment: int
    retry_at: str | None = None


@dataclass(frozen=True)
class Remeasure:
    """The champion moved while the candidate was measured, and the candidate beat the new one:
    apply its change again on the new champion, and measure that."""

    onto: str
    why: str


@dataclass
class Trial:
    """What an experiment has done so far; its row is built from it once, at the end.

    Its experiment number is given when it is reserved; its slot is where it is measured.
    """

    experiment: int
    slot: int = 1
    description: str = ""
    proposer: str = "-"
    commit: str = ""
    built_on: str = ""  # the champion it was proposed for, its commit built on
    proposal: Proposal | None = None
    candidate: Candidate | None = None
    measurement: Measurement | None = None
    champion_runs: list[float] | None = None  # the champion re-measured beside it
    first: tuple[str, Measurement] | None = None  # (champion, measurement) before a re-apply
    screens: dict[str, float] = field(default_factory=dict)  # each screening stage's value
    constraint: str = ""  # the constraint the measurement broke
    suspect: str = ""  # what the audit of its keep found
    decided_at: str = ""  # an A/B test's: when it was decided, on the evaluator's clock
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=now)

    def propose(self, proposal: Proposal) -> None:
        self.proposal = proposal
        self.description = proposal.hypothesis
        self.proposer = proposal.proposer

    def apply(self, candidate: Candidate, built_on: str) -> None:
        self.candidate = candidate
        self.commit = candidate.sha
        self.built_on = built_on

    def remeasure(self, candidate: Candidate, onto: str) -> None:
        """The change applied again on a newer champion: measured anew from here."""
        assert self.measurement is not None
        self.first = self.first or (self.built_on, self.measurement)
        self.apply(candidate, onto)
        self.measurement = self.champion_runs = None

    def row(self, status: Status, evidence: str = "") -> Row:
        """The results.tsv row. A crash carries 0.000000 and 0.0, as in Karpathy's ledger."""
        m = self.measurement
        ok = m is not None and m.status == "ok" and status != Status.CRASH
        tags = [f"{k}={v[:12]}" for k, v in m.tags.items()] if m else []
        if self.first:
            old, before = self.first
            shown = "crash" if before.metric is None else f"{before.metric:.6g}"
            evidence = f"confirmation (first {shown} on {old[:7]}): {evidence}"
        p, c = self.proposal, self.candidate
        tokens = p.usage.columns() if p else {}
        numbers = {k: v for k, v in m.secondary.items() if k != "memory_gb"} if ok and m else {}
        broke = f" [discarded: {self.constraint}]" if self.constraint else ""
        return Row(
            experiment=self.experiment,
            status=status,
            description=self.description + broke,
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
            built_on=self.first[0][:7] if self.first else "",
            parent=self.built_on[:7] if self.built_on and self.built_on != self.commit else "",
            secondary=numbers | {f"screen.{k}": v for k, v in self.screens.items()},
            constraint=self.constraint,
            suspect=self.suspect,
            decided_at=self.decided_at,
            **tokens,
        )

    # in flight ---------------------------------------------------------------------------

    def record(self) -> Record:
        """What the pending record keeps, so that a new start resumes this trial as it was."""
        p, c = self.proposal, self.candidate
        return Record(
            experiment=self.experiment,
            stage=Stage.MEASURING if c else (Stage.PROPOSED if p else Stage.RESERVED),
            slot=self.slot,
            since=self.started_at,
            hypothesis=redact(self.description),
            proposer=self.proposer,
            proposal=None if p is None else {
                "hypothesis": redact(p.hypothesis), "files": p.files, "proposer": p.proposer,
                "key": p.key, "usage": p.usage.columns(), "cost_usd": p.cost_usd,
            },
            candidate=None if c is None else {
                "sha": c.sha, "lines_added": c.lines_added, "lines_removed": c.lines_removed,
            },
            built_on=self.built_on,
            first=None if self.first is None else [self.first[0], self.first[1].metric],
        )  # fmt: skip

    @classmethod
    def resume(cls, record: Record) -> Trial:
        """A trial as its pending record left it (measured again from its commit, if any)."""
        trial = cls(record.experiment, record.slot or 1)
        trial.started_at = record.since or trial.started_at
        trial.built_on = record.built_on
        if p := record.proposal:
            u = p.get("usage") or {}
            usage = Usage(
                input_tokens=u.get("tokens_in", 0),
                output_tokens=u.get("tokens_out", 0),
                cache_write_tokens=u.get("tokens_cache_write", 0),
                cache_read_tokens=u.get("tokens_cache_read", 0),
            )
            trial.propose(
                Proposal(p["hypothesis"], p["files"], p["proposer"], p["key"], usage, p["cost_usd"])
            )
        if c := record.candidate:
            candidate = Candidate(c["sha"], c["lines_added"], c["lines_removed"])
            trial.apply(candidate, trial.built_on)
        if first := record.first:
            value = first[1]
            before = Measurement.of(value) if value is not None else Measurement.crash("crashed")
            trial.first = (first[0], before)
        return trial
