"""A study's own records: the ledger, state.json, the candidates in flight, the champion's
runs and resource.md, and the watch that keeps every evaluation's hands off them.

Every write of them goes through here, inside `own_files.writing()`: an evaluation in another
slot may be watching the folder, and these writes are the tool's own.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from core import learnings
from core.files import private
from core.ledger import Champion, Ledger, Row
from core.pending import Pending, Record, Stage
from core.state import State
from core.study import Study
from core.tamper import Watched
from core.workspace import StudyRepo
from evaluators.base import Measurement
from steps.champion import ChampionRecord
from steps.instrument import log_path
from steps.tracking import Tracking
from steps.trial import Trial

# git config of the user that the tool's own git commands read (core.fsmonitor runs a program)
GIT_CONFIGS = (Path.home() / ".gitconfig", Path.home() / ".config" / "git" / "config")


class Records:
    def __init__(self, study: Study, repo: StudyRepo) -> None:
        self.study = study
        private(study.state_dir)  # its ledger, logs and learnings: no other user reads them
        self.repo = repo
        self.ledger = Ledger(study.state_dir / "results.tsv", study.metric.name)
        self.state = State(study.state_dir / "state.json")
        self.pending = Pending(study.state_dir)
        self.champion_runs = ChampionRecord(self.ledger, self.state)
        self.numbering = threading.Lock()  # experiment numbers are given one at a time
        self.tracking = Tracking(study, repo)  # the trackers: where rows land beside the ledger
        git = repo.git_dir
        self.own_files = Watched(  # what no evaluation may change
            [self.ledger.path, self.state.path, git / "config", *GIT_CONFIGS],
            [git / "hooks", self.pending.folder],
        )

    def watch_learnings(self, watched: bool) -> None:
        """resource.md is watched too when no sandbox hides it from evaluations (sandboxed, a
        person may edit it while they run)."""
        files = [p for p in self.own_files.files if p != self.resource_path]
        self.own_files.files = files + [self.resource_path] * watched

    @property
    def resource_path(self) -> Path:
        return self.study.state_dir / "resource.md"

    def log_path(self, experiment: int | str, run: int = 0, arm: str = "") -> Path:
        return log_path(self.study, experiment, run, arm)

    def champion(self) -> Champion | None:
        return self.ledger.champion()

    def champion_commit(self) -> str:
        """The champion's full commit (before the baseline: the branch head)."""
        champ = self.champion()
        return self.repo.full(champ.commit) if champ else self.repo.branch_head()

    def protected(self) -> dict[str, str]:
        """The protected files' hashes, recorded when the study started."""
        return self.state.load()["protected"]

    # candidates in flight ----------------------------------------------------------------

    def next_number(self) -> int:
        """One past every experiment recorded or in flight (call it under `numbering`)."""
        return max([*self.ledger.experiments(), *self.pending.numbers()], default=0) + 1

    def note(self, trial: Trial, **more: Any) -> Record:
        """The trial's pending record, as it stands now; what a worker's run or an A/B test
        added to it stays."""
        old = self.pending.read(trial.experiment)
        kept = {"flow_run": old.flow_run} if old else {}
        with self.own_files.writing():
            return self.pending.write(trial.record().but(**kept | more))

    def hold(self, number: int, stage: Stage) -> None:
        """A record of a check done under this number (a holdout, the A/B baseline)."""
        with self.own_files.writing():
            self.pending.write(Record(number, stage))

    def resumable(self) -> list[Trial]:
        """The trials a killed run left in flight, oldest first: each resumes its number (a
        holdout check left so resumes when it is next due; an A/B test launched is collected,
        and the baseline of A/B tests recorded, by steps.abtests)."""
        recorded = self.ledger.experiments()
        later = (Stage.HOLDOUT, Stage.BASELINE, Stage.LAUNCHED)
        return [
            Trial.resume(r)
            for r in self.pending.all()
            if r.experiment not in recorded and r.stage not in later
        ]

    def in_flight(self, but: int) -> list[Trial]:
        """The trials with a proposal in flight now, other than experiment `but`'s."""
        return [Trial.resume(r) for r in self.pending.all() if r.proposal and r.experiment != but]

    # the ledger --------------------------------------------------------------------------

    def commit_row(self, row: Row, measurement: Measurement | None = None) -> None:
        """Append the experiment's row (the commit point), then bring resource.md up to date.

        A kept row's runs are saved first (keyed by its commit), so the next candidates face all
        of them; until the row lands they belong to no champion.
        """
        with self.own_files.writing():
            if row.kept and measurement is not None:
                self.champion_runs.save(row.commit, measurement)
            self.ledger.append(row)
            self.pending.drop(row.experiment)
            self.write_learnings(learnings.read(self.resource_path))

    def write_learnings(self, text: str) -> None:
        """resource.md as given (a person's or a model's), with the ledger's summary block in it."""
        block = learnings.summary(self.ledger.rows(), self.study.metric.name)
        limit = self.study.config.proposer.learnings_max_chars
        with self.own_files.writing():
            learnings.write(self.resource_path, text, block, limit)

    def save_calibration(self, m: Measurement, where: str, arm: bool = True) -> None:
        with self.own_files.writing():
            self.champion_runs.save_calibration(m, where, arm)

    def unpublished(self) -> bool:
        """Has the ledger changed since its report was last published?"""
        return self.state.load().get("published") != self._ledger_digest()

    def published(self) -> None:
        with self.own_files.writing():
            self.state.update(published=self._ledger_digest())

    def _ledger_digest(self) -> str:
        path = self.ledger.path
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""
