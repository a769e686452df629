"""The lab: one study's repository, ledger, state, instrument and slots, and the steps of an
experiment.

Each method is one step that a Prefect task wraps (tasks/ stays thin). Opening a lab repairs
whatever an interrupted run left: the branch goes back to the ledger's champion, every slot to
a clean checkout of it, and the candidates it left in flight are kept to be resumed.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

from core import learnings, sandbox
from core.decide import Verdict, decide, gain
from core.files import atomic_write, private
from core.ledger import Champion, Ledger, Row, Status
from core.pending import Pending
from core.processes import kill_recorded
from core.sandbox import Sandbox
from core.secrets import redact
from core.state import State
from core.study import DecisionConfig, Study
from core.tamper import Tampered, Watched
from core.workspace import GuardViolation, StudyRepo, Workspace
from evaluators import kind as evaluator_kind
from evaluators import make_evaluator
from evaluators.base import Evaluator, Measurement
from evaluators.command import CommandConfig, CommandEvaluator
from proposers import writes_code
from proposers.base import Context, InvalidProposal, Learned, Outcome, Proposal, Proposer
from steps.champion import ChampionRecord, counts
from steps.instrument import Instrument, log_path
from steps.plugins import load_study
from steps.slots import Slot, Slots
from steps.trial import Candidate, Remeasure, Trial

DEFAULT_PROGRAM = Path(__file__).resolve().parent.parent / "program.md"
# git config of the user that the tool's own git commands read (core.fsmonitor runs a program)
GIT_CONFIGS = (Path.home() / ".gitconfig", Path.home() / ".config" / "git" / "config")


def runs_model_code(study: Study, rows: list[Row], researcher: str) -> bool:
    """Whether the evaluator would run code a model wrote: the researcher's candidates, or a
    champion kept from one that writes code (a campaign of claude, then of mutate)."""
    if not evaluator_kind(study.config.evaluator.kind).runs_code:
        return False
    kept = {r.proposer for r in rows if r.kept and r.description != "baseline"}
    return any(writes_code(name) for name in (researcher, *kept))


class Lab:
    def __init__(self, study: Study, parallel: int | None = None) -> None:
        self.study = study
        private(study.state_dir)  # its ledger, logs and learnings: no other user reads them
        self.repo = StudyRepo(study)
        self.ledger = Ledger(study.state_dir / "results.tsv", study.metric.name)
        self.state = State(study.state_dir / "state.json")
        self.pending = Pending(study.state_dir)
        self.record = ChampionRecord(self.ledger, self.state)
        self.evaluator: Evaluator = make_evaluator(study)
        self.sandboxed = study.config.sandbox.enabled
        self.own_files = self._own_files()
        self.instrument = Instrument(
            study, self.evaluator, self.protected, self.own_files, self.sandbox
        )
        self.parallel = parallel or study.parallel
        self.slots = Slots(study, self.repo, self.parallel)
        self.numbering = threading.Lock()
        self.turn = asyncio.Lock()  # whose turn it is to decide and record: one at a time

    def __deepcopy__(self, memo: dict[int, object]) -> Lab:
        """A lab is one study's live state: a copy (Prefect copies transaction values) is
        the lab itself."""
        return self

    @classmethod
    def open(cls, path: str | Path, parallel: int | None = None) -> Lab:
        lab = cls(load_study(path), parallel)
        lab.repo.start(fresh=lab.champion() is None)
        lab.repair()
        return lab

    @property
    def workspace(self) -> Workspace:
        """Slot 1's worktree: where the baseline, a calibration and `check` run."""
        return self.slots[1].workspace

    def _own_files(self) -> Watched:
        """What no evaluation may change: the study's state and the repository's git config
        and hooks (learnings too when there is no sandbox to hide them)."""
        files = [self.ledger.path, self.state.path, self.repo.git_dir / "config", *GIT_CONFIGS]
        if not self.sandboxed:
            files.append(self.resource_path)
        return Watched(files, [self.repo.git_dir / "hooks", self.pending.folder])

    # paths -----------------------------------------------------------------------------

    @property
    def resource_path(self) -> Path:
        return self.study.state_dir / "resource.md"

    def log_path(self, experiment: int | str, run: int = 0, arm: str = "") -> Path:
        return log_path(self.study, experiment, run, arm)

    # state -----------------------------------------------------------------------------

    def champion(self) -> Champion | None:
        return self.ledger.champion()

    def champion_commit(self) -> str:
        """The champion's full commit (before the baseline: the branch head)."""
        champ = self.champion()
        return self.repo.full(champ.commit) if champ else self.repo.branch_head()

    def repair(self) -> None:
        """Undo what a killed run left: its evaluators still running, a ledger line torn
        mid-append, a branch moved for a keep whose row never landed, slots mid-candidate;
        drop the in-flight records whose rows did land. Records the protected files' hashes
        when the study starts."""
        for pid_file in (self.study.state_dir / "logs").glob("*.pgid"):
            kill_recorded(pid_file)
        self.ledger.repair()
        recorded = self.ledger.experiments()
        for number in self.pending.numbers():
            if number in recorded:
                self.pending.drop(number)
                self.repo.release(number)
        champ = self.champion_commit()
        if self.repo.branch_head() != champ:
            self.repo.reset_branch(champ)
        for slot in self.slots.all:
            if slot.workspace.exists() or slot.index == 1:
                slot.workspace.open_at(champ)
        if self.champion() is None or "protected" not in self.state.load():
            self.state.update(protected=self.workspace.protected_hashes())

    def protected(self) -> dict[str, str]:
        return self.state.load()["protected"]

    def choose_sandbox(self, researcher: str) -> str:
        """Decide, once per campaign, whether candidates run sandboxed; a notice when not.
        Model-written code that the evaluator runs needs the sandbox (see core.sandbox)."""
        untrusted = runs_model_code(self.study, self.ledger.rows(), researcher)
        self.sandboxed, notice = sandbox.choose(self.study.config.sandbox.enabled, untrusted)
        self.own_files = self._own_files()
        self.instrument.own_files = self.own_files
        return notice

    def sandbox(self, workspace: Workspace) -> Sandbox | None:
        """The sandbox one evaluation of this workspace runs in (None: unsandboxed)."""
        if not self.sandboxed:
            return None
        cfg, study = self.study.config.sandbox, self.study
        return Sandbox(
            worktree=workspace.path,
            hidden=(study.state_dir, self.repo.git_dir),
            checkout=study.repo_root,
            network=bool(getattr(study.config.evaluator, "network", False)),
            readable=tuple(study.path_option(p) for p in cfg.readable),
            writable=tuple(study.path_option(p) for p in cfg.writable),
            limits=study.config.limits,
        )

    # candidates in flight ----------------------------------------------------------------

    def reserve(self) -> Trial:
        """The next experiment number and a free slot; recorded before anything is done."""
        with self.numbering:
            number = self._next_number()
            slot = self.slots.claim(number)
            trial = Trial(number, slot.index)
            self.note(trial)
        return trial

    def _next_number(self) -> int:
        """One past every experiment recorded or in flight (under `numbering`)."""
        return max([*self.ledger.experiments(), *self.pending.numbers()], default=0) + 1

    def note(self, trial: Trial, **more: Any) -> None:
        """The trial's pending record, as it stands now (an evaluation in another slot may be
        watching the folder: this is the tool's own write)."""
        with self.own_files.writing():
            record = self.pending.read(trial.experiment)
            self.pending.write(trial.experiment, trial.record() | {
                k: v for k, v in record.items() if k == "flow_run"
            } | more)  # fmt: skip

    def resumable(self) -> list[Trial]:
        """The trials a killed run left in flight, oldest first: each resumes its number (a
        holdout check left so resumes when it is next due; an A/B test launched is collected,
        and the baseline of A/B tests recorded, by steps.abtests)."""
        recorded = self.ledger.experiments()
        return [
            Trial.resume(r)
            for r in self.pending.all()
            if r["experiment"] not in recorded
            and r.get("stage") not in ("holdout", "baseline", "launched")
        ]

    def claim(self, trial: Trial) -> None:
        """A slot for a resumed trial (its own if free)."""
        trial.slot = self.slots.claim(trial.experiment, trial.slot).index
        self.note(trial)

    def release(self, trial: Trial) -> None:
        self.slots.release(trial.experiment)

    def in_flight(self, but: int) -> list[Proposal]:
        """The proposals being measured now, other than experiment `but`'s."""
        return [
            Trial.resume(r).proposal  # type: ignore[misc]
            for r in self.pending.all()
            if r.get("proposal") and r["experiment"] != but
        ]

    def slot(self, trial: Trial) -> Slot:
        return self.slots[trial.slot]

    # steps -----------------------------------------------------------------------------

    def context(self, trial: Trial) -> Context:
        """What the researcher reads: the champion as checked out in the trial's slot."""
        rows = self.ledger.rows()
        flying = self.in_flight(trial.experiment)
        workspace = self.slot(trial).workspace
        return Context(
            study=self.study,
            program=self.study.program_text(DEFAULT_PROGRAM),
            files=workspace.editable_files(),
            protected=self.study.protected,
            history=rows,
            learnings=learnings.read(self.resource_path),
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
        runs = max(self.repeats, self.rule.calibration_runs)
        logs = [self.log_path(crashes[-1].experiment, i) for i in range(runs)]
        found = [p for p in logs if p.exists()]
        if not found:
            return None
        log = max(found, key=lambda p: p.stat().st_mtime_ns).read_text(errors="replace")
        return "\n".join(log.splitlines()[-50:])

    def propose(self, researcher: Proposer, trial: Trial) -> Proposal:
        """The slot checked out at the champion, then the researcher's proposal for it: its
        files are that champion's, so its commit is built on that champion even when another
        slot moves the champion while the researcher thinks."""
        trial.built_on = self.champion_commit()
        self.slot(trial).workspace.checkout(trial.built_on)
        try:
            with self.own_files.watch():  # an agent CLI runs programs, as an evaluation does
                proposal = researcher.propose(self.context(trial))
        except Tampered as exc:
            trial.propose(Proposal(f"invalid proposal: {exc}", {}, researcher.name, ""))
            raise InvalidProposal(str(exc)) from None
        except InvalidProposal as exc:  # it still cost tokens: they go into its row
            why = f"invalid proposal: {exc}"
            trial.propose(Proposal(why, {}, researcher.name, "", exc.usage, exc.cost_usd))
            raise
        trial.propose(proposal)
        self.note(trial)
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
        base = trial.built_on or self.champion_commit()
        workspace.checkout(base)
        try:
            message = redact(trial.description)
            sha, added, removed = workspace.apply(trial.proposal.files, message)
            workspace.check_commit(base, sha, self.protected())
        except GuardViolation:
            workspace.checkout(base)
            raise
        candidate = Candidate(sha, added, removed)
        trial.apply(candidate, base)
        self.repo.hold(trial.experiment, sha)
        self.note(trial)
        return candidate

    def measure(self, trial: Trial) -> Measurement:
        """The candidate, as the rule needs it measured: once, repeated, or interleaved with
        the champion it is built on, on the trial's slot."""
        slot = self.slot(trial)
        if self.paired:
            champion = slot.champion.open_at(trial.built_on)
            m, runs = self.instrument.paired(
                slot.workspace, champion, trial.experiment, self.repeats, slot.env
            )
            trial.champion_runs = runs
        else:
            m = self.instrument.repeat(slot.workspace, trial.experiment, self.repeats, slot.env)
        trial.measurement = m
        return m

    def decide(self, trial: Trial) -> Verdict | Remeasure:
        """Keep or discard, against the champion now. A candidate built on an older champion is
        never kept on that measurement alone: when it beats the champion now, its change is to
        be applied again on that champion and measured again (Remeasure)."""
        assert trial.measurement is not None and trial.candidate is not None
        current = self.champion_commit()
        if trial.built_on == current:
            return self.judge(trial.measurement, trial.candidate, trial.champion_runs)
        verdict = self.judge(trial.measurement, trial.candidate)
        champ = self.champion()
        since = f"#{champ.experiment}" if champ else "the baseline"
        if verdict.status != "keep":
            why = f"built on {trial.built_on[:7]}; against the champion kept since ({since})"
            return Verdict("discard", f"{why}: {verdict.reason}", f"{why}: {verdict.evidence}")
        return Remeasure(current, f"the champion moved to {current[:7]} ({since})")

    def remeasure(self, trial: Trial, onto: str) -> Candidate:
        """Apply the candidate's change again on the champion `onto` (Conflict if it does not
        apply)."""
        assert trial.candidate is not None
        workspace = self.slot(trial).workspace
        sha, added, removed = workspace.rebase(trial.candidate.sha, onto)
        workspace.check_commit(onto, sha, self.protected())
        candidate = Candidate(sha, added, removed)
        trial.remeasure(candidate, onto)
        self.repo.hold(trial.experiment, sha)
        self.note(trial)
        return candidate

    def rollback(self, trial: Trial) -> None:
        """The slot back at the champion: nothing of the candidate stays checked out."""
        self.slot(trial).workspace.checkout(self.champion_commit())

    def start_baseline(self, trial: Trial) -> None:
        """The trial is the unchanged artifact: the branch head, built on itself."""
        head = self.repo.branch_head()
        trial.description = "baseline"
        trial.apply(Candidate(head, 0, 0), head)

    def baseline(self, trial: Trial, measured: Measurement | None = None) -> tuple[Status, str]:
        """The unchanged artifact, measured here (or by a worker: `measured`), several times when
        the rule needs its noise: kept, crashed, or rejected when it broke a guard."""
        self.start_baseline(trial)
        try:
            if measured is None:
                self.slot(trial).workspace.checkout(trial.commit)
                measured = self.evaluate(trial.experiment, self.baseline_runs)
        except GuardViolation as exc:
            return Status.REJECTED, str(exc)
        trial.measurement = measured
        if measured.status == "ok" and self.rule.rule == "sigma":
            with self.own_files.writing():
                self.record.save_calibration(measured)
        return (Status.KEEP, "") if measured.status == "ok" else (Status.CRASH, measured.reason)

    @property
    def baseline_runs(self) -> int:
        """A sigma study runs its baseline calibration_runs times: their spread is its noise."""
        return self.rule.calibration_runs if self.rule.rule == "sigma" else 1

    def send(self, trial: Trial) -> None:
        """The candidate (its parent: the champion it is built on) pushed to the study's
        remote, for a worker to fetch."""
        remote = self.study.config.remote
        assert remote is not None
        self.repo.hold(trial.experiment, trial.commit)
        self.repo.push(remote, trial.experiment, trial.built_on)

    def evaluate(self, label: int | str, runs: int = 1) -> Measurement:
        """What slot 1 has checked out, measured `runs` times."""
        return self.instrument.repeat(self.workspace, label, runs, self.slots[1].env)

    def run_once(self, workspace: Workspace, log: Path) -> Measurement:
        return self.instrument.run_once(workspace, log)

    # holdout ---------------------------------------------------------------------------

    def holdout_due(self, at_end: bool = False) -> bool:
        """At the study's start, every `holdout.every` keeps, and at a campaign's end."""
        cfg = self.study.config.holdout
        champ = self.champion()
        if cfg is None or champ is None:
            return False
        rows = self.ledger.rows()
        last = next((r for r in reversed(rows) if r.status == Status.HOLDOUT), None)
        if last is None or self._holdout_left():
            return True
        if last.commit == champ.commit:
            return False
        kept_since = sum(r.kept for r in rows[rows.index(last) + 1 :])
        return at_end or kept_since >= cfg.every

    def holdout(self) -> tuple[Row, bool]:
        """Score the champion on the holdout (its first score is the holdout's baseline), in a
        worktree of its own: the holdout row, and whether the champion overfits."""
        cfg = self.study.config.holdout
        assert cfg is not None
        with self.numbering:
            number = self._holdout_left() or self._next_number()
            with self.own_files.writing():
                self.pending.write(number, {"stage": "holdout"})
        trial = Trial(number, commit=self.champion_commit())
        workspace = Workspace(self.study, "holdout", self.repo).open_at(trial.commit)
        evaluator = self.study.config.evaluator
        config = CommandConfig(
            command=cfg.command,
            timeout_s=cfg.timeout_s,
            env=getattr(evaluator, "env", {}),
            passenv=getattr(evaluator, "passenv", []),
        )
        instrument = CommandEvaluator(config, cfg.metric)
        m = self.instrument.run_once(workspace, self.log_path(number), evaluator=instrument)
        overfitting = False
        if m.metric is None:
            text = f"holdout crashed: {m.reason}"
        else:
            base = self.state.load().get("holdout_baseline")
            if base is None:
                with self.own_files.writing():
                    base = self.state.update(holdout_baseline=m.metric)["holdout_baseline"]
            overfitting = -gain(self.study.metric.direction, m.metric, base) > cfg.tolerance
            verdict = "OVERFITTING" if overfitting else "ok"
            text = f"holdout {cfg.metric} {m.metric:.6g} (at baseline {base:.6g}): {verdict}"
        trial.description = text
        return trial.row(Status.HOLDOUT, text), overfitting

    def _holdout_left(self) -> int | None:
        """The number of a holdout check a killed run left unrecorded: it is done under it."""
        return next((r["experiment"] for r in self.pending.all() if r.get("stage") == "holdout"),
                    None)  # fmt: skip

    def overfitting_since(self, experiment: int) -> bool:
        """Did a holdout check from this experiment on find the champion worse than at the start?"""
        return any(
            r.status == Status.HOLDOUT and "OVERFITTING" in r.description
            for r in self.ledger.rows()
            if r.experiment >= experiment
        )

    # decisions -------------------------------------------------------------------------

    @property
    def rule(self) -> DecisionConfig:
        return self.study.metric.decision

    @property
    def paired(self) -> bool:
        """Measure the champion again beside each candidate: for timings, or when asked."""
        return self.rule.rule == "mannwhitney" or self.rule.rebaseline

    @property
    def repeats(self) -> int:
        return self.rule.repeats if self.rule.rule in ("sigma", "mannwhitney") else 1

    def needs_calibration(self) -> bool:
        """A sigma study calibrates its noise at the start and again on another machine."""
        if self.rule.rule != "sigma" or self.champion() is None:
            return False
        return not self.record.calibrated_here()

    def calibrate(self, label: int | str) -> Measurement:
        """Run the champion calibration_runs times (on slot 1); its spread is the study's noise."""
        self.workspace.checkout(self.champion_commit())
        m = self.evaluate(label, self.rule.calibration_runs)
        if m.status == "ok":
            with self.own_files.writing():
                self.record.save_calibration(m)
        return m

    def judge(
        self,
        measurement: Measurement,
        candidate: Candidate,
        champion: list[float] | None = None,
    ) -> Verdict:
        assert measurement.metric is not None
        saved = self.record.saved()
        theirs = saved.get("tags", {})
        differ = [
            k for k in theirs.keys() & measurement.tags.keys() if theirs[k] != measurement.tags[k]
        ]
        if differ:
            why = f"not comparable: {', '.join(differ)} differs from the champion's"
            return Verdict("discard", why, why)
        champion = champion or self.record.samples()
        cal = self.record.calibration()
        if cal.get("samples") == champion:  # the calibration runs are the champion arm:
            cal = {}  # counting them again as noise would double their weight
        mine = counts(measurement) if self.rule.rule == "beta_binomial" else None
        base = saved.get("counts") if mine else None
        return decide(
            self.rule,
            self.study.metric.direction,
            champion,
            list(measurement.samples) or [measurement.metric],
            self.study.min_delta,
            candidate.lines_added,
            candidate.lines_removed,
            noise_sigma=cal.get("sigma"),
            noise_dof=len(cal["samples"]) - 1 if cal.get("samples") else None,
            champion_counts=tuple(base) if base else None,
            candidate_counts=mine,
        )

    # the ledger ------------------------------------------------------------------------

    def learn(self, researcher: Proposer, trial: Trial, status: Status, reason: str) -> Learned:
        """The researcher's notes on this outcome, before its row lands (it reads the ledger)."""
        return researcher.learn(self.context(trial), self.outcome(trial, status, reason))

    def finish(self, trial: Trial, status: Status, reason: str, learned: Learned) -> Row:
        """The experiment's row, with what learning cost, recorded; then the learnings. A kept
        candidate becomes the champion: the branch moves to it, then its row lands."""
        row = trial.row(status, reason).with_usage(learned.usage.columns(), learned.cost_usd)
        if row.kept and trial.description != "baseline":
            self.repo.advance(trial.commit, trial.built_on)
        self.commit_row(row, trial.measurement)
        self.repo.release(trial.experiment)
        if learned.text is not None:
            self.write_learnings(learned.text)
        return row

    def commit_row(self, row: Row, measurement: Measurement | None = None) -> None:
        """Append the experiment's row (the commit point), then bring resource.md up to date.

        A kept row's runs are saved first (keyed by its commit), so the next candidates face all
        of them; until the row lands they belong to no champion.
        """
        with self.own_files.writing():
            if row.kept and measurement is not None:
                self.record.save(row.commit, measurement)
            self.ledger.append(row)
            self.pending.drop(row.experiment)
            self.write_learnings(learnings.read(self.resource_path))

    def write_learnings(self, text: str) -> None:
        """resource.md as given (a person's or a model's), with the ledger's summary block in it."""
        block = learnings.summary(self.ledger.rows(), self.study.metric.name)
        limit = self.study.config.proposer.learnings_max_chars
        with self.own_files.writing():
            learnings.write(self.resource_path, text, block, limit)

    def write_dashboard(self, text: str) -> None:
        """The A/B tests in flight (markdown), for report.html."""
        atomic_write(self.study.state_dir / "ab-tests.md", text + "\n")

    def unpublished(self) -> bool:
        """Has the ledger changed since its report was last published?"""
        return self.state.load().get("published") != self._ledger_digest()

    def published(self) -> None:
        with self.own_files.writing():
            self.state.update(published=self._ledger_digest())

    def _ledger_digest(self) -> str:
        path = self.ledger.path
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""

    def outcome(self, trial: Trial, status: Status, reason: str) -> Outcome:
        champ = self.champion()
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


def ensure_startable(study: Study) -> None:
    """Before anything is written (a lock, a branch): a study with no baseline yet starts from
    the repository's HEAD, which must hold it, committed (NotCommitted says how)."""
    if Ledger(study.state_dir / "results.tsv", study.metric.name).champion() is None:
        StudyRepo(study).check_committed()
