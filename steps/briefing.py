"""What the researcher reads before a proposal (the Context) and after its outcome, and what
it writes back (its learnings)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core import learnings
from core.ledger import Row, Status
from core.sandbox import Sandbox
from core.workspace import Workspace
from proposers.base import Context, Learned, Outcome, Proposer
from steps.records import Records
from steps.trial import Trial

DEFAULT_PROGRAM = Path(__file__).resolve().parent.parent / "program.md"


class Briefing:
    def __init__(self, records: Records, sandbox: Callable[[Workspace], Sandbox | None]) -> None:
        self.records = records
        self.study = records.study
        self.sandbox = sandbox

    def context(self, trial: Trial, workspace: Workspace) -> Context:
        """What the researcher reads: the champion as checked out in the trial's slot."""
        records = self.records
        rows = records.ledger.rows()
        flying = [t.proposal for t in records.in_flight(trial.experiment) if t.proposal]
        return Context(
            study=self.study,
            program=self.study.program_text(DEFAULT_PROGRAM),
            files=workspace.editable_files(),
            protected=self.study.protected,
            history=rows,
            learnings=learnings.read(records.resource_path),
            last_crash=self.last_crash(rows),
            experiment=trial.experiment,
            workdir=workspace.path,
            tried={r.key for r in rows if r.key} | {p.key for p in flying if p.key},
            in_flight=flying,
            sandbox=self.sandbox(workspace),
        )

    def last_crash(self, rows: list[Row]) -> str | None:
        """The tail of the last crashed experiment's log (of several runs, the last written)."""
        crashes = [r for r in rows if r.status == Status.CRASH]
        if not crashes:
            return None
        rule = self.study.rule
        runs = max(rule.repeats, rule.baseline_runs)
        logs = [self.records.log_path(crashes[-1].experiment, i) for i in range(runs)]
        found = [p for p in logs if p.exists()]
        if not found:
            return None
        log = max(found, key=lambda p: p.stat().st_mtime_ns).read_text(errors="replace")
        return "\n".join(log.splitlines()[-50:])

    def outcome(self, trial: Trial, status: Status, reason: str) -> Outcome:
        champ = self.records.champion()
        m = trial.measurement
        assert trial.proposal is not None
        return Outcome(
            proposal=trial.proposal,
            status=status,
            metric=m.metric if m else None,
            champion_metric=champ.metric if champ else None,
            reason=reason,
            log_tail=m.log_tail if m else "",
        )

    def learn(
        self,
        researcher: Proposer,
        trial: Trial,
        workspace: Workspace,
        status: Status,
        reason: str,
    ) -> Learned:
        """The researcher's notes on this outcome, before its row lands (it reads the ledger)."""
        context = self.context(trial, workspace)
        return researcher.learn(context, self.outcome(trial, status, reason))
