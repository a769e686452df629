"""What the researcher reads before a proposal (the Context) and after its outcome, and what
it writes back (its learnings)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import git

from core import learnings
from core.ledger import Row, Status
from core.notes import NOTES, Notes, NotesError
from core.sandbox import Sandbox
from core.study import Study
from core.workspace import Workspace, open_repo
from proposers import novelty
from proposers.base import Context, InvalidProposal, Learned, Outcome, Proposal, Proposer
from steps.records import Records
from steps.trial import Trial

log = logging.getLogger(__name__)

DEFAULT_PROGRAM = Path(__file__).resolve().parent.parent / "program.md"
MEASURED = (Status.KEEP, Status.DISCARD, Status.CRASH, Status.SCREENED)  # candidates tried
TEXTS_KEPT = 256  # files' texts kept in memory, the latest read
UNREADABLE = (git.GitError, git.exc.ODBError, ValueError, KeyError, OSError, UnicodeDecodeError)


class Briefing:
    def __init__(self, records: Records, sandbox: Callable[[Workspace], Sandbox | None]) -> None:
        self.records = records
        self.study = records.study
        self.sandbox = sandbox
        self.saved = novelty.Saved()  # evaluations the duplicate checks saved, this campaign
        self.tried = TriedReader(records.study)

    def context(self, trial: Trial, workspace: Workspace) -> Context:
        """What the researcher reads: the champion as checked out in the trial's slot."""
        records = self.records
        rows = records.ledger.rows()
        others = records.in_flight(trial.experiment)
        flying = [t.proposal for t in others if t.proposal]
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
            tried_changes=self.tried.changes(rows, others),
            saved=self.saved,
            node=self.node(rows, trial.built_on),
            notes=self.notes(),
        )

    def notes(self) -> list[str]:
        """The person's notes; a notes.json that cannot be read is said in the log, and the
        experiment goes on without them."""
        try:
            return [n.text for n in Notes(self.study.state_dir / NOTES).all()]
        except NotesError as exc:
            log.warning("%s", exc)
            return []

    def node(self, rows: list[Row], built_on: str) -> Row | None:
        """The row of the node the trial is built on, when that is not the champion."""
        champ = self.records.champion()
        if not built_on or champ is None or built_on.startswith(champ.commit):
            return None
        return next((r for r in rows if r.commit != "-" and built_on.startswith(r.commit)), None)

    def refuse_duplicate(self, trial: Trial, proposal: Proposal) -> None:
        """InvalidProposal (one evaluation saved) when the proposal, on the champion it was
        made for, is a candidate already tried, or in flight, once normalised."""
        if not proposal.files:
            return
        records = self.records
        tried = self.tried.changes(records.ledger.rows(), records.in_flight(trial.experiment))
        base = self.tried.files(trial.built_on or records.champion_commit())
        if base is None:
            return
        found = novelty.match(base, proposal.files, tried, near=0.0)  # exact only
        if found is not None and found.exact:
            self.saved.exact += 1
            reason = novelty.refusal(found, self.study.metric.name)
            log.info("experiment %d refused: %s", trial.experiment, reason)
            raise InvalidProposal(reason, proposal.usage, proposal.cost_usd)

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


class TriedReader:
    """The candidates tried, read from git: each commit once, its editable files only, and
    their texts normalised once per blob (a few hundred texts kept, the latest read)."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self._git: git.Repo | None = None  # our own: its object readers are not shared
        self._reading = threading.Lock()
        self._blobs: dict[str, dict[str, str] | None] = {}  # commit -> path -> blob sha
        self._tried: dict[str, tuple[str, dict[str, str]] | None] = {}  # commit -> its change
        self._digests: dict[tuple[str, str], str | None] = {}  # (path, blob) -> normalised digest
        self._texts: OrderedDict[str, str | None] = OrderedDict()  # blob -> text, the latest used

    def changes(self, rows: list[Row], in_flight: list[Trial]) -> list[novelty.Tried]:
        """Every candidate measured (kept, discarded, crashed: the baseline too, which changed
        nothing) and every one in flight, normalised. Each commit is read from git once, for
        its editable files only; a commit git no longer holds is left out."""
        first_kept = next((r.experiment for r in rows if r.kept), None)
        latest = {r.commit: r for r in rows if r.status in MEASURED and r.commit not in ("", "-")}
        out = []
        with self._reading:
            for commit, row in latest.items():
                read = self._change(commit, baseline=row.experiment == first_kept)
                if read is None:
                    continue
                metric = None if row.status == Status.CRASH else row.metric
                fp, change = read
                out.append(
                    novelty.Tried(row.experiment, row.status, metric, row.description, fp, change)
                )
            for t in in_flight:
                if t.proposal and t.proposal.files and (base := self._files(t.built_on)):
                    files = {**base, **t.proposal.files}
                    fp, change = novelty.fingerprint(files), novelty.changes(base, files)
                    out.append(
                        novelty.Tried(
                            t.experiment, novelty.IN_FLIGHT, None, t.description, fp, change
                        )
                    )
        return sorted(out, key=lambda t: t.experiment)

    def files(self, commit: str) -> dict[str, str] | None:
        """The editable files' text at a commit (None: git does not hold it)."""
        with self._reading:
            return self._files(commit)

    def _repo(self) -> git.Repo:
        if self._git is None:
            self._git = open_repo(self.study.repo_root)
        return self._git

    def _blobs_at(self, commit: str) -> dict[str, str] | None:
        """The editable files of a commit: path -> blob sha (None: git does not hold it)."""
        if commit in self._blobs:
            return self._blobs[commit]
        found: dict[str, str] | None = None
        try:
            tree = self._repo().commit(commit).tree
            found = {}
            for rel in self.study.editable:
                try:
                    item = tree / rel
                except KeyError:
                    continue
                for b in [item] if item.type == "blob" else list(item.traverse()):
                    if b.type == "blob" and b.mode != 0o120000:  # a link is not an editable file
                        found[str(b.path)] = b.hexsha
        except UNREADABLE as exc:
            log.debug("commit %s not read: %s", commit, exc)
            found = None
        self._blobs[commit] = found
        return found

    def _text(self, sha: str) -> str | None:
        """A blob's text; None when it is not text (an editable file that is not text is not
        one the researcher reads)."""
        if sha in self._texts:
            self._texts.move_to_end(sha)
            return self._texts[sha]
        try:
            text: str | None = self._repo().odb.stream(bytes.fromhex(sha)).read().decode()
        except UnicodeDecodeError:
            text = None
        self._texts[sha] = text
        while len(self._texts) > TEXTS_KEPT:
            self._texts.popitem(last=False)
        return text

    def _digest(self, path: str, sha: str) -> str | None:
        key = (path, sha)
        if key not in self._digests:
            text = self._text(sha)
            self._digests[key] = None if text is None else novelty.digest(path, text)
        return self._digests[key]

    def _files(self, commit: str) -> dict[str, str] | None:
        blobs = self._blobs_at(commit) if commit else None
        if blobs is None:
            return None
        try:
            texts = {p: self._text(sha) for p, sha in blobs.items()}
        except UNREADABLE:
            return None
        return {p: t for p, t in texts.items() if t is not None}

    def _change(self, commit: str, baseline: bool) -> tuple[str, dict[str, str]] | None:
        """A tried commit's fingerprint and its change from its parent (the champion it was
        built on), normalised; None when git does not hold it."""
        if commit in self._tried:
            return self._tried[commit]
        read: tuple[str, dict[str, str]] | None = None
        try:
            after = self._blobs_at(commit)
            if after is not None:
                digests = {p: self._digest(p, sha) for p, sha in after.items()}
                fp = novelty.combine({p: d for p, d in digests.items() if d is not None})
                parents = [] if baseline else self._repo().commit(commit).parents
                before = self._blobs_at(parents[0].hexsha) if parents else None
                read = (fp, self._changed(before, after) if before is not None else {})
        except UNREADABLE as exc:
            log.debug("commit %s not read: %s", commit, exc)
        self._tried[commit] = read
        return read

    def _changed(self, before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
        """The normalised change between two commits' editable files (blob shas), read only
        where the blobs differ."""
        change = {}
        for path in sorted(set(before) | set(after)):
            old, new = before.get(path), after.get(path)
            if old == new:
                continue
            texts = [self._text(sha) if sha else "" for sha in (old, new)]
            if None in texts:
                continue
            a, b = (novelty.normalise(path, t or "") for t in texts)
            if a != b:
                change[path] = novelty.change_lines(a, b)
        return change
