"""The lab: one study's repository, records, instrument and slots, and the steps that move a
candidate from a proposal to a commit and back.

Its parts each have one job: `records` (ledger, state, candidates in flight, learnings),
`sandboxes` (each evaluation's), `measuring` (as the rule needs, cheap stages first), `search`
(which node the next candidate is built on), `judge` (keep or discard), `audit` (a doubtful keep
measured again), `holdout`, `briefing` (what the researcher reads). Opening a lab repairs whatever
an interrupted run left: the branch goes back to the ledger's champion, every slot to a clean
checkout of it, and the candidates it left in flight are kept to be resumed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.ledger import Ledger, Row, Status
from core.processes import kill_recorded
from core.search import MEASURED, Search
from core.secrets import redact
from core.study import Study
from core.tamper import Tampered
from core.workspace import GuardViolation, StudyRepo, Workspace
from evaluators import make_evaluator
from proposers.base import InvalidProposal, Learned, Proposal, Proposer
from steps.audit import Audit
from steps.briefing import Briefing
from steps.holdout import Holdout
from steps.instrument import Instrument
from steps.judge import Judge
from steps.measuring import Measuring
from steps.plugins import load_study
from steps.records import Records
from steps.sandboxes import Sandboxes
from steps.slots import Slot, Slots
from steps.trial import Candidate, Trial


class Lab:
    def __init__(self, study: Study, parallel: int | None = None) -> None:
        self.study = study
        self.repo = StudyRepo(study)
        self.records = Records(study, self.repo)
        self.sandboxes = Sandboxes(study, self.repo, self.records)
        self.instrument = Instrument(
            study, make_evaluator(study), self.records.protected, self.records.own_files,
            self.sandboxes.of,
        )  # fmt: skip
        self.slots = Slots(study, self.repo, parallel or study.parallel)
        self.measuring = Measuring(self.instrument, self.slots, self.records)
        self.search = Search(study.config.search, study.metric.direction)
        self.judge = Judge(study.rule, self.records, self.slots, rebase=self.search.greedy)
        self.holdout = Holdout(study, self.records, self.repo, self.instrument)
        self.audit = Audit(study, self.instrument, self.slots, self.judge)
        self.briefing = Briefing(self.records, self.sandboxes.of)
        self.turn = asyncio.Lock()  # whose turn it is to decide and record: one at a time

    def __deepcopy__(self, memo: dict[int, object]) -> Lab:
        """A lab is one study's live state: a copy (Prefect copies transaction values) is
        the lab itself."""
        return self

    @classmethod
    def open(cls, path: str | Path, parallel: int | None = None) -> Lab:
        lab = cls(load_study(path), parallel)
        lab.repo.start(fresh=lab.records.champion() is None)
        lab.repair()
        return lab

    @property
    def workspace(self) -> Workspace:
        """Slot 1's worktree: where the baseline, a calibration and `check` run."""
        return self.slots[1].workspace

    def repair(self) -> None:
        """Undo what a killed run left: its evaluators still running, a ledger line torn
        mid-append, a branch moved for a keep whose row never landed, slots mid-candidate;
        drop the in-flight records whose rows did land. Records the protected files' hashes
        when the study starts."""
        records = self.records
        for pid_file in (self.study.state_dir / "logs").glob("*.pgid"):
            kill_recorded(pid_file)
        records.ledger.repair()
        recorded = records.ledger.experiments()
        for number in records.pending.numbers():
            if number in recorded:
                records.pending.drop(number)
                self.repo.release(number)
        champ = self.records.champion_commit()
        if self.repo.branch_head() != champ:
            self.repo.reset_branch(champ)
        for slot in self.slots.all:
            if slot.workspace.exists() or slot.index == 1:
                slot.workspace.open_at(champ)
        if self.records.champion() is None or "protected" not in records.state.load():
            records.state.update(protected=self.workspace.protected_hashes())

    # candidates in flight ----------------------------------------------------------------

    def reserve(self) -> Trial:
        """The next experiment number and a free slot; recorded before anything is done."""
        with self.records.numbering:
            number = self.records.next_number()
            trial = Trial(number, self.slots.claim(number).index)
            self.records.note(trial)
        return trial

    def claim(self, trial: Trial) -> None:
        """A slot for a resumed trial (its own if free)."""
        trial.slot = self.slots.claim(trial.experiment, trial.slot).index
        self.records.note(trial)

    def release(self, trial: Trial) -> None:
        self.slots.release(trial.experiment)

    def slot(self, trial: Trial) -> Slot:
        return self.slots[trial.slot]

    # a candidate's way -------------------------------------------------------------------

    def propose(self, researcher: Proposer, trial: Trial) -> Proposal:
        """The slot checked out at the node the search chose (the champion, unless a tree or
        islands say otherwise), then the researcher's proposal for it: its files are that
        node's, so its commit is built on it even when another slot moves the champion."""
        champ, rows = self.records.champion(), self.records.ledger.rows()
        flying = [t.built_on for t in self.records.in_flight(trial.experiment)]
        node = self.search.parent(rows, champ, flying, trial.experiment) if champ else None
        trial.built_on = self.repo.full(node) if node else self.records.champion_commit()
        workspace = self.slot(trial).workspace
        workspace.checkout(trial.built_on)
        try:  # an agent CLI runs programs, as an evaluation does
            with self.records.own_files.watch():
                proposal = researcher.propose(self.briefing.context(trial, workspace))
                self.briefing.refuse_duplicate(trial, proposal)
        except Tampered as exc:
            trial.propose(Proposal(f"invalid proposal: {exc}", {}, researcher.name, ""))
            raise InvalidProposal(str(exc)) from None
        except InvalidProposal as exc:  # it still cost tokens: they go into its row
            why = f"invalid proposal: {exc}"
            trial.propose(Proposal(why, {}, researcher.name, "", exc.usage, exc.cost_usd))
            raise
        trial.propose(proposal)
        self.records.note(trial)
        return proposal

    def apply(self, trial: Trial) -> Candidate:
        """Commit the proposal in the trial's slot, on the champion it was proposed for; reject
        it (and leave that champion checked out) if it oversteps. A resumed trial keeps its
        commit."""
        workspace = self.slot(trial).workspace
        if trial.candidate is not None:
            workspace.checkout(trial.candidate.sha)
            return trial.candidate
        assert trial.proposal is not None
        base = trial.built_on or self.records.champion_commit()
        workspace.checkout(base)
        try:
            message = redact(trial.description)
            sha, added, removed = workspace.apply(trial.proposal.files, message)
            workspace.check_commit(base, sha, self.records.protected())
        except GuardViolation:
            workspace.checkout(base)
            raise
        candidate = Candidate(sha, added, removed)
        trial.apply(candidate, base)
        self.repo.hold(trial.experiment, sha)
        self.records.note(trial)
        return candidate

    def remeasure(self, trial: Trial, onto: str) -> Candidate:
        """Apply the candidate's change again on the champion `onto` (Conflict if it does not
        apply)."""
        assert trial.candidate is not None
        workspace = self.slot(trial).workspace
        sha, added, removed = workspace.rebase(trial.candidate.sha, onto)
        workspace.check_commit(onto, sha, self.records.protected())
        candidate = Candidate(sha, added, removed)
        trial.remeasure(candidate, onto)
        self.repo.hold(trial.experiment, sha)
        self.records.note(trial)
        return candidate

    def rollback(self, trial: Trial) -> None:
        """The slot back at the champion: nothing of the candidate stays checked out."""
        self.slot(trial).workspace.checkout(self.records.champion_commit())

    def learn(self, researcher: Proposer, trial: Trial, status: Status, reason: str) -> Learned:
        """The researcher's notes on this outcome, before its row lands."""
        workspace = self.slot(trial).workspace
        return self.briefing.learn(researcher, trial, workspace, status, reason)

    def finish(self, trial: Trial, status: Status, reason: str, learned: Learned) -> Row:
        """The experiment's row, with what learning cost, recorded; then the learnings. A kept
        candidate becomes the champion: the branch moves to it, then its row lands."""
        row = trial.row(status, reason).with_usage(learned.usage.columns(), learned.cost_usd)
        if row.kept and trial.description != "baseline":  # from the champion now
            self.repo.advance(trial.commit, self.records.champion_commit())
        self.records.commit_row(row, trial.measurement)
        if self.search.greedy or row.status not in MEASURED:  # other searches' nodes stay
            self.repo.release(trial.experiment)
        if learned.text is not None:
            self.records.write_learnings(learned.text)
        return row


def ensure_startable(study: Study) -> None:
    """Before anything is written (a lock, a branch): a study with no baseline yet starts from
    the repository's HEAD, which must hold it, committed (NotCommitted says how)."""
    if Ledger(study.state_dir / "results.tsv", study.metric.name).champion() is None:
        StudyRepo(study).check_committed()
