"""The lab: one study's workspace, ledger, state and instrument, and the steps of an experiment.

Each method is one step that a Prefect task wraps (tasks/ stays thin). Opening a lab repairs
whatever an interrupted run left: the worktree goes back to the ledger's champion.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

from core import learnings, sandbox
from core.decide import Verdict, decide, gain
from core.ledger import Champion, Ledger, Row, Status
from core.processes import kill_recorded
from core.sandbox import Sandbox
from core.secrets import redact
from core.state import State
from core.study import DecisionConfig, Study
from core.tamper import Tampered, Watched
from core.workspace import GuardViolation, Workspace
from evaluators import make_evaluator
from evaluators.base import Evaluator, Measurement
from evaluators.command import CommandConfig, CommandEvaluator
from proposers.base import Context, InvalidProposal, Learned, Outcome, Proposal, Proposer
from steps.champion import ChampionRecord, counts
from steps.plugins import load_study
from steps.trial import Candidate, Trial

DEFAULT_PROGRAM = Path(__file__).resolve().parent.parent / "program.md"


class Lab:
    def __init__(self, study: Study) -> None:
        self.study = study
        self.workspace = Workspace(study)
        self.ledger = Ledger(study.state_dir / "results.tsv", study.metric.name)
        self.state = State(study.state_dir / "state.json")
        self.record = ChampionRecord(self.ledger, self.state)
        self.evaluator: Evaluator = make_evaluator(study)
        self.sandboxed = study.config.sandbox.enabled
        self.own_files = self._own_files()

    def __deepcopy__(self, memo: dict[int, object]) -> Lab:
        """A lab is one study's live state: a copy (Prefect copies transaction values) is
        the lab itself."""
        return self

    @classmethod
    def open(cls, path: str | Path) -> Lab:
        lab = cls(load_study(path))
        lab.workspace.open(fresh=lab.champion() is None)
        lab.repair()
        return lab

    def _own_files(self) -> Watched:
        """What no evaluation may change: the study's state and the repository's git config
        and hooks (learnings too when there is no sandbox to hide them)."""
        state = self.study.state_dir
        git_dir = Path(self.workspace.origin.git_dir)
        files = [self.ledger.path, self.state.path, git_dir / "config"]
        if not self.sandboxed:
            files.append(self.resource_path)
        return Watched(files, [git_dir / "hooks", state / "pending"])

    # paths -----------------------------------------------------------------------------

    @property
    def resource_path(self) -> Path:
        return self.study.state_dir / "resource.md"

    def log_path(self, experiment: int | str, run: int = 0, arm: str = "") -> Path:
        """logs/<n>.log for the first run; logs/<n>-<run>.log and logs/<n>-champion-<run>.log."""
        suffix = (f"-{arm}" if arm else "") + (f"-{run + 1}" if run or arm else "")
        return self.study.state_dir / "logs" / f"{experiment}{suffix}.log"

    # state -----------------------------------------------------------------------------

    def champion(self) -> Champion | None:
        return self.ledger.champion()

    def repair(self) -> None:
        """Undo what a killed run left: its evaluator still running, its unrecorded candidate,
        a ledger line torn mid-append.

        Also records the protected files' hashes when the study starts.
        """
        for pid_file in (self.study.state_dir / "logs").glob("*.pgid"):
            kill_recorded(pid_file)
        self.ledger.repair()
        champ = self.champion()
        if champ and not self.workspace.head().startswith(champ.commit):
            self.workspace.reset(champ.commit)
        elif self.workspace.repo.is_dirty(untracked_files=True):
            self.workspace.reset(self.workspace.head())
        if champ is None or "protected" not in self.state.load():  # fixed at the baseline
            self.state.update(protected=self.workspace.protected_hashes())

    def choose_sandbox(self, writes_code: bool) -> str:
        """Decide, once per campaign, whether candidates run sandboxed; a notice when not."""
        self.sandboxed, notice = sandbox.choose(self.study.config.sandbox.enabled, writes_code)
        self.own_files = self._own_files()
        return notice

    def sandbox(self, workspace: Workspace) -> Sandbox | None:
        """The sandbox one evaluation of this workspace runs in (None: unsandboxed)."""
        if not self.sandboxed:
            return None
        cfg, study = self.study.config.sandbox, self.study
        return Sandbox(
            worktree=workspace.path,
            hidden=(study.state_dir, Path(self.workspace.origin.git_dir)),
            network=bool(getattr(study.config.evaluator, "network", False)),
            readable=tuple(study.path_option(p) for p in cfg.readable),
            writable=tuple(study.path_option(p) for p in cfg.writable),
        )

    def protected(self) -> dict[str, str]:
        return self.state.load()["protected"]

    def reset_to_champion(self) -> None:
        champ = self.champion()
        self.workspace.reset(champ.commit if champ else self.workspace.head())

    # steps -----------------------------------------------------------------------------

    def context(self, experiment: int) -> Context:
        rows = self.ledger.rows()
        return Context(
            study=self.study,
            program=self.study.program_text(DEFAULT_PROGRAM),
            files=self.workspace.editable_files(),
            protected=self.study.protected,
            history=rows,
            learnings=learnings.read(self.resource_path),
            last_crash=self.last_crash(rows),
            experiment=experiment,
            workdir=self.workspace.path,
            tried={r.key for r in rows if r.key},
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
        try:
            proposal = researcher.propose(self.context(trial.experiment))
        except InvalidProposal as exc:  # it still cost tokens: they go into its row
            why = f"invalid proposal: {exc}"
            trial.propose(Proposal(why, {}, researcher.name, "", exc.usage, exc.cost_usd))
            raise
        trial.propose(proposal)
        return proposal

    def apply(self, proposal: Proposal, trial: Trial | None = None) -> Candidate:
        """Commit the proposal; reject it (and leave the champion checked out) if it oversteps."""
        parent = self.workspace.head()
        try:
            sha, added, removed = self.workspace.apply(proposal.files, redact(proposal.hypothesis))
            self.workspace.check_commit(parent, sha, self.protected())
        except GuardViolation:
            self.workspace.reset(parent)
            raise
        candidate = Candidate(sha, added, removed)
        if trial is not None:
            trial.apply(candidate)
        return candidate

    def run_once(
        self, workspace: Workspace, log: Path, evaluator: Evaluator | None = None
    ) -> Measurement:
        """One run of the instrument, in its sandbox, with the protected files and the study's
        own files checked before and after it."""
        protected = self.protected()
        workspace.check_protected(protected)
        workspace.drop_bytecode()
        instrument = evaluator or self.evaluator
        try:
            with self.own_files.watch():
                m = instrument.evaluate(workspace.study_dir, log, self.sandbox(workspace))
        except Tampered as exc:
            workspace.reset(workspace.head())
            raise GuardViolation(str(exc)) from None
        try:
            workspace.check_protected(protected)
        except GuardViolation as exc:
            workspace.reset(workspace.head())  # restore the protected files
            raise GuardViolation(f"voided at run time: {exc}") from None
        workspace.clean()
        return m

    def evaluate(self, experiment: int | str, runs: int = 1) -> Measurement:
        """Measure what is checked out, `runs` times (its first log is logs/<experiment>.log)."""
        results = [self.run_once(self.workspace, self.log_path(experiment, i)) for i in range(runs)]
        return self.usable(combine(results, self.median))

    def usable(self, m: Measurement) -> Measurement:
        """A crash, with its reason, when the rule needs what the evaluator did not report."""
        if m.status == "ok" and self.rule.rule == "beta_binomial" and counts(m) is None:
            return replace(m, status="crash", reason="beta_binomial needs `successes` and `trials`")
        return m

    def evaluate_paired(self, experiment: int) -> tuple[Measurement, list[float]]:
        """Candidate and champion interleaved (A B A B ...), so drift hits both alike."""
        champ = self.champion()
        assert champ is not None
        beside = Workspace(self.study, "champion").open_at(champ.commit)
        mine: list[Measurement] = []
        theirs: list[float] = []
        for i in range(self.repeats):
            mine.append(self.run_once(self.workspace, self.log_path(experiment, i)))
            if mine[-1].status != "ok":
                break
            other = self.run_once(beside, self.log_path(experiment, i, "champion"))
            theirs.append(other.metric if other.metric is not None else math.nan)
        m = self.usable(combine(mine, self.median))
        if m.status == "ok" and not any(math.isfinite(v) for v in theirs):
            m = replace(m, status="crash", reason="every re-run of the champion crashed")
        return m, theirs

    def measure(self, trial: Trial) -> tuple[Measurement, list[float] | None]:
        """The candidate, as the rule needs it measured: once, repeated, or beside the champion."""
        if self.paired:
            m, champion_runs = self.evaluate_paired(trial.experiment)
        else:
            m, champion_runs = self.evaluate(trial.experiment, self.repeats), None
        trial.measurement = m
        return m, champion_runs

    def baseline(self, trial: Trial) -> tuple[Status, str]:
        """The unchanged artifact, measured (several times when the rule needs its noise): kept,
        crashed, or rejected when it broke a guard."""
        trial.description, trial.commit = "baseline", self.workspace.head()
        sigma = self.rule.rule == "sigma"
        try:
            m = self.calibrate(trial.experiment) if sigma else self.evaluate(trial.experiment)
        except GuardViolation as exc:
            return Status.REJECTED, str(exc)
        trial.measurement = m
        return (Status.KEEP, "") if m.status == "ok" else (Status.CRASH, m.reason)

    # holdout ---------------------------------------------------------------------------

    def holdout_due(self, at_end: bool = False) -> bool:
        """At the study's start, every `holdout.every` keeps, and at a campaign's end."""
        cfg = self.study.config.holdout
        champ = self.champion()
        if cfg is None or champ is None:
            return False
        rows = self.ledger.rows()
        last = next((r for r in reversed(rows) if r.status == Status.HOLDOUT), None)
        if last is None:
            return True
        if last.commit == champ.commit:
            return False
        kept_since = sum(r.kept for r in rows[rows.index(last) + 1 :])
        return at_end or kept_since >= cfg.every

    def holdout(self) -> tuple[Row, bool]:
        """Score the champion on the holdout (its first score is the holdout's baseline): the
        holdout row, and whether the champion overfits."""
        cfg = self.study.config.holdout
        champ = self.champion()
        assert cfg is not None and champ is not None
        trial = Trial(self.ledger.next_experiment(), commit=champ.commit)
        env = getattr(self.study.config.evaluator, "env", {})
        instrument = CommandEvaluator(
            CommandConfig(command=cfg.command, timeout_s=cfg.timeout_s, env=env), cfg.metric
        )
        m = self.run_once(self.workspace, self.log_path(trial.experiment), instrument)
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
    def median(self) -> bool:
        return self.rule.rule == "mannwhitney"

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
        """Run the champion calibration_runs times; its spread is the study's noise."""
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
        return researcher.learn(self.context(trial.experiment), self.outcome(trial, status, reason))

    def finish(self, trial: Trial, status: Status, reason: str, learned: Learned) -> Row:
        """The experiment's row, with what learning cost, recorded; then the learnings."""
        row = trial.row(status, reason).with_usage(learned.usage.columns(), learned.cost_usd)
        self.commit_row(row, trial.measurement)
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
            self.write_learnings(learnings.read(self.resource_path))

    def write_learnings(self, text: str) -> None:
        """resource.md as given (a person's or a model's), with the ledger's summary block in it."""
        block = learnings.summary(self.ledger.rows(), self.study.metric.name)
        limit = self.study.config.proposer.learnings_max_chars
        with self.own_files.writing():
            learnings.write(self.resource_path, text, block, limit)

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
        Workspace(study).check_committed()


def combine(runs: list[Measurement], median: bool = False) -> Measurement:
    """Several runs as one measurement: any crash makes it a crash; else their mean (median)."""
    for m in runs:
        if m.status != "ok":
            return m
    samples = tuple(m.metric for m in runs if m.metric is not None)
    if len(samples) == 1:
        return runs[0]
    center = statistics.median(samples) if median else statistics.fmean(samples)
    last = runs[-1]
    return replace(
        last,
        metric=center,
        samples=samples,
        duration_s=sum(m.duration_s for m in runs),
    )
