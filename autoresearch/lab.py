"""The lab: one study's workspace, ledger, state and instrument, and the steps of an experiment.

Each method is one step that a Prefect task wraps (tasks/ stays thin). Opening a lab repairs
whatever an interrupted run left: the worktree goes back to the ledger's champion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoresearch import learnings
from autoresearch.decide import Verdict, decide
from autoresearch.ledger import Champion, Ledger, State
from autoresearch.study import Study, load_study
from autoresearch.workspace import GuardViolation, Workspace
from evaluators import make_evaluator
from evaluators.base import Evaluator, Measurement
from proposers.base import Context, Outcome, Proposal

DEFAULT_PROGRAM = Path(__file__).resolve().parent.parent / "program.md"


@dataclass(frozen=True)
class Candidate:
    """A proposal applied as a commit on the study branch."""

    sha: str
    parent: str
    lines_added: int
    lines_removed: int


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Lab:
    def __init__(self, study: Study) -> None:
        self.study = study
        self.workspace = Workspace(study)
        self.ledger = Ledger(study.state_dir / "results.tsv", study.metric.name)
        self.state = State(study.state_dir / "state.json")
        self.evaluator: Evaluator = make_evaluator(study)

    @classmethod
    def open(cls, path: str | Path) -> Lab:
        lab = cls(load_study(path))
        lab.workspace.open()
        lab.repair()
        return lab

    # paths -----------------------------------------------------------------------------

    @property
    def resource_path(self) -> Path:
        return self.study.state_dir / "resource.md"

    def log_path(self, experiment: int) -> Path:
        return self.study.state_dir / "logs" / f"{experiment}.log"

    # state -----------------------------------------------------------------------------

    def champion(self) -> Champion | None:
        return self.ledger.champion()

    def repair(self) -> None:
        """Undo an unrecorded candidate; record protected hashes when the study starts."""
        champ = self.champion()
        if champ and not self.workspace.head().startswith(champ.commit):
            self.workspace.reset(champ.commit)
        elif self.workspace.repo.is_dirty(untracked_files=True):
            self.workspace.reset(self.workspace.head())
        if "protected" not in self.state.load():
            self.state.update(protected=self.workspace.protected_hashes())

    def protected(self) -> dict[str, str]:
        return self.state.load()["protected"]

    def reset_to_champion(self) -> None:
        champ = self.champion()
        self.workspace.reset(champ.commit if champ else self.workspace.head())

    # steps -----------------------------------------------------------------------------

    def context(self, experiment: int) -> Context:
        rows = self.ledger.rows()
        crashes = [r for r in rows if r["status"] == "crash"]
        last_crash = None
        if crashes and self.log_path(int(crashes[-1]["experiment"])).exists():
            log = self.log_path(int(crashes[-1]["experiment"])).read_text(errors="replace")
            last_crash = "\n".join(log.splitlines()[-50:])
        return Context(
            study=self.study,
            program=self.study.program_text(DEFAULT_PROGRAM),
            files=self.workspace.editable_files(),
            protected=self.study.protected,
            history=rows,
            learnings=learnings.read(self.resource_path),
            last_crash=last_crash,
            experiment=experiment,
            workdir=self.workspace.path,
        )

    def apply(self, proposal: Proposal) -> Candidate:
        """Commit the proposal; reject it (and leave the champion checked out) if it oversteps."""
        parent = self.workspace.head()
        try:
            sha, added, removed = self.workspace.apply(proposal.files, proposal.hypothesis)
            self.workspace.check_commit(parent, sha, self.protected())
        except GuardViolation:
            self.workspace.reset(parent)
            raise
        return Candidate(sha, parent, added, removed)

    def evaluate(self, experiment: int) -> Measurement:
        """Run the instrument on what is checked out, with the protected files checked around it."""
        protected = self.protected()
        self.workspace.check_protected(protected)
        measurement = self.evaluator.evaluate(self.workspace.study_dir, self.log_path(experiment))
        try:
            self.workspace.check_protected(protected)
        except GuardViolation as exc:
            self.workspace.reset(self.workspace.head())  # restore the protected files
            raise GuardViolation(f"voided at run time: {exc}") from None
        return measurement

    def judge(self, measurement: Measurement, candidate: Candidate) -> Verdict:
        champ = self.champion()
        assert champ is not None, "judge needs a champion: run the baseline first"
        assert measurement.metric is not None
        rule = self.study.metric.decision
        return decide(
            rule,
            self.study.metric.direction,
            [champ.metric],
            list(measurement.samples) or [measurement.metric],
            self.study.min_delta,
            candidate.lines_added,
            candidate.lines_removed,
        )

    def record(self, row: dict[str, Any], new_learnings: str | None = None) -> None:
        """Append the experiment's row (the commit point), then bring resource.md up to date."""
        self.ledger.append(row)
        limit = self.study.config.proposer.learnings_max_chars
        if new_learnings is None:
            block = learnings.summary(self.ledger.rows(), self.study.metric.name)
            new_learnings = learnings.with_summary(learnings.read(self.resource_path), block)
        learnings.write(self.resource_path, new_learnings, limit)

    def outcome(
        self,
        proposal: Proposal,
        status: str,
        reason: str,
        measurement: Measurement | None = None,
    ) -> Outcome:
        champ = self.champion()
        return Outcome(
            proposal=proposal,
            status=status,
            metric=measurement.metric if measurement else None,
            champion_metric=champ.metric if champ else None,
            reason=reason,
            log_tail=measurement.log_tail if measurement else "",
        )


def make_row(
    experiment: int,
    started: float,
    started_at: str,
    status: str,
    description: str,
    metric_name: str,
    commit: str = "",
    measurement: Measurement | None = None,
    proposal: Proposal | None = None,
    candidate: Candidate | None = None,
    evidence: str = "",
) -> dict[str, Any]:
    """One results.tsv row. Crashes carry 0.000000 and 0.0, as in Karpathy's ledger."""
    ok = measurement is not None and measurement.status == "ok" and status not in {"crash"}
    metric = measurement.metric if ok and measurement else 0.0
    memory = measurement.secondary.get("memory_gb", 0.0) if ok and measurement else 0.0
    usage = proposal.usage if proposal else None
    return {
        "commit": commit[:7] if commit else "-",
        metric_name: f"{metric:.6f}",
        "memory_gb": f"{memory:.1f}",
        "status": status,
        "description": description,
        "experiment": experiment,
        "started_at": started_at,
        "duration_s": f"{time.monotonic() - started:.2f}",
        "proposer": proposal.proposer if proposal else "-",
        "lines_added": candidate.lines_added if candidate else 0,
        "lines_removed": candidate.lines_removed if candidate else 0,
        "tokens_in": usage.input_tokens if usage else 0,
        "tokens_out": usage.output_tokens if usage else 0,
        "tokens_cache_read": usage.cache_read_tokens if usage else 0,
        "tokens_cache_write": usage.cache_write_tokens if usage else 0,
        "cost_usd": f"{proposal.cost_usd:.6f}" if proposal else "0.000000",
        "evidence": evidence,
    }
