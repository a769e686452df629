"""The lab: one study's workspace, ledger, state and instrument, and the steps of an experiment.

Each method is one step that a Prefect task wraps (tasks/ stays thin). Opening a lab repairs
whatever an interrupted run left: the worktree goes back to the ledger's champion.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoresearch import learnings
from autoresearch.decide import Verdict, calibrate, decide, gain
from autoresearch.ledger import Champion, Ledger, State
from autoresearch.processes import kill_recorded
from autoresearch.secrets import redact
from autoresearch.study import CommandEvaluatorConfig, DecisionConfig, Study, load_study
from autoresearch.workspace import GuardViolation, Workspace
from evaluators import make_evaluator
from evaluators.base import Evaluator, Measurement
from evaluators.command import CommandEvaluator
from proposers.base import Context, Outcome, Proposal, Usage

DEFAULT_PROGRAM = Path(__file__).resolve().parent.parent / "program.md"


@dataclass(frozen=True)
class Candidate:
    """A proposal applied as a commit on the study branch."""

    sha: str
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

    def log_path(self, experiment: int | str, run: int = 0, arm: str = "") -> Path:
        """logs/<n>.log for the first run; logs/<n>-<run>.log and logs/<n>-champion-<run>.log."""
        suffix = (f"-{arm}" if arm else "") + (f"-{run + 1}" if run or arm else "")
        return self.study.state_dir / "logs" / f"{experiment}{suffix}.log"

    # state -----------------------------------------------------------------------------

    def champion(self) -> Champion | None:
        return self.ledger.champion()

    def repair(self) -> None:
        """Undo what a killed run left: its evaluator still running, its unrecorded candidate.

        Also records the protected files' hashes when the study starts.
        """
        for pid_file in (self.study.state_dir / "logs").glob("*.pgid"):
            kill_recorded(pid_file)
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
        if crashes:
            n = int(crashes[-1]["experiment"])
            logs = [
                self.log_path(n, i) for i in range(max(self.repeats, self.rule.calibration_runs))
            ]
            found = [p for p in logs if p.exists()]
            if found:  # of several runs, the last written is the one that crashed
                log = max(found, key=lambda p: p.stat().st_mtime_ns).read_text(errors="replace")
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
            tried={r["key"] for r in rows if r.get("key")},
        )

    def apply(self, proposal: Proposal) -> Candidate:
        """Commit the proposal; reject it (and leave the champion checked out) if it oversteps."""
        parent = self.workspace.head()
        try:
            sha, added, removed = self.workspace.apply(proposal.files, redact(proposal.hypothesis))
            self.workspace.check_commit(parent, sha, self.protected())
        except GuardViolation:
            self.workspace.reset(parent)
            raise
        return Candidate(sha, added, removed)

    def run_once(
        self, workspace: Workspace, log: Path, evaluator: Evaluator | None = None
    ) -> Measurement:
        """One run of the instrument, with the protected files checked before and after it."""
        protected = self.protected()
        workspace.check_protected(protected)
        workspace.drop_bytecode()
        measurement = (evaluator or self.evaluator).evaluate(workspace.study_dir, log)
        try:
            workspace.check_protected(protected)
        except GuardViolation as exc:
            workspace.reset(workspace.head())  # restore the protected files
            raise GuardViolation(f"voided at run time: {exc}") from None
        return measurement

    def evaluate(self, experiment: int, runs: int = 1) -> Measurement:
        """Measure what is checked out, `runs` times (its first log is logs/<experiment>.log)."""
        results = [self.run_once(self.workspace, self.log_path(experiment, i)) for i in range(runs)]
        return self.usable(combine(results, self.median))

    def usable(self, m: Measurement) -> Measurement:
        """A crash, with its reason, when the rule needs what the evaluator did not report."""
        if m.status == "ok" and self.rule.rule == "beta_binomial" and _counts(m) is None:
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

    def holdout_due(self, at_end: bool = False) -> bool:
        """At the study's start, every `holdout.every` keeps, and at a campaign's end."""
        cfg = self.study.config.holdout
        champ = self.champion()
        if cfg is None or champ is None:
            return False
        rows = self.ledger.rows()
        last = next((r for r in reversed(rows) if r["status"] == "holdout"), None)
        if last is None:
            return True
        if last["commit"] == champ.commit:
            return False
        kept_since = sum(
            r["status"] == "keep" for r in rows if int(r["experiment"]) > int(last["experiment"])
        )
        return at_end or kept_since >= cfg.every

    def holdout(self, experiment: int) -> dict[str, Any]:
        """Score the champion on the holdout; its first score is the holdout's baseline."""
        cfg = self.study.config.holdout
        assert cfg is not None
        env = getattr(self.study.config.evaluator, "env", {})
        instrument = CommandEvaluator(
            CommandEvaluatorConfig(command=cfg.command, timeout_s=cfg.timeout_s, env=env),
            cfg.metric,
        )
        m = self.run_once(self.workspace, self.log_path(experiment), instrument)
        if m.metric is None:
            return {"status": "crash", "reason": m.reason}
        base = self.state.load().get("holdout_baseline")
        if base is None:
            base = self.state.update(holdout_baseline=m.metric)["holdout_baseline"]
        loss = -gain(self.study.metric.direction, m.metric, base)
        return {
            "status": "ok",
            "value": m.metric,
            "baseline": base,
            "overfitting": loss > cfg.tolerance,
        }

    def overfitting_since(self, experiment: int) -> bool:
        """Did a holdout check from this experiment on find the champion worse than at the start?"""
        return any(
            r["status"] == "holdout" and "OVERFITTING" in r["description"]
            for r in self.ledger.rows()
            if int(r["experiment"]) >= experiment
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
        return self.state.load().get("calibration", {}).get("machine") != machine()

    def calibrate(self, label: int | str) -> Measurement:
        """Run the champion calibration_runs times; its spread is the study's noise."""
        m = self.evaluate(label, self.rule.calibration_runs)
        if m.status == "ok":
            cal = {"machine": machine(), "samples": list(m.samples), "sigma": calibrate(m.samples)}
            self.state.update(calibration=cal)
            champ = self.champion()
            if champ:  # the same runs are the champion's: the arm, not the noise, from now on
                self.save_champion(champ.commit, m)
        return m

    def save_champion(self, commit: str, m: Measurement) -> None:
        """The runs, tags and counts behind a champion, keyed by its commit."""
        saved = {"commit": commit, "samples": list(m.samples), "tags": m.tags, "counts": _counts(m)}
        self.state.update(champion=saved)

    def champion_state(self) -> dict[str, Any]:
        """What state.json holds for the ledger's champion; nothing when it is another's.

        A run killed between writing state.json and appending its row leaves state for a
        commit the ledger never kept: it is ignored.
        """
        champ = self.champion()
        saved = self.state.load().get("champion", {})
        return saved if champ and saved.get("commit") == champ.commit else {}

    def champion_samples(self) -> list[float]:
        """The champion's runs when state.json has them for this very commit, else its mean."""
        champ = self.champion()
        assert champ is not None, "no champion: run the baseline first"
        return list(self.champion_state().get("samples") or [champ.metric])

    def judge(
        self,
        measurement: Measurement,
        candidate: Candidate,
        champion: list[float] | None = None,
    ) -> Verdict:
        assert measurement.metric is not None
        saved = self.champion_state()
        theirs = saved.get("tags", {})
        differ = [
            k for k in theirs.keys() & measurement.tags.keys() if theirs[k] != measurement.tags[k]
        ]
        if differ:
            why = f"not comparable: {', '.join(differ)} differs from the champion's"
            return Verdict("discard", why, why)
        champion = champion or self.champion_samples()
        cal = self.state.load().get("calibration", {})
        if cal.get("samples") == champion:  # the calibration runs are the champion arm:
            cal = {}  # counting them again as noise would double their weight
        counts = _counts(measurement) if self.rule.rule == "beta_binomial" else None
        base = saved.get("counts") if counts else None
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
            candidate_counts=counts,
        )

    # the ledger ------------------------------------------------------------------------

    def record(self, row: dict[str, Any], measurement: Measurement | None = None) -> None:
        """Append the experiment's row (the commit point), then bring resource.md up to date.

        A kept row's runs are saved first (keyed by its commit), so the next candidates face all
        of them; until the row lands they belong to no champion.
        """
        if row["status"] == "keep" and measurement is not None:
            self.save_champion(row["commit"], measurement)
        self.ledger.append(row)
        self.write_learnings(learnings.read(self.resource_path))

    def write_learnings(self, text: str) -> None:
        """resource.md as given (a person's or a model's), with the ledger's summary block in it."""
        block = learnings.summary(self.ledger.rows(), self.study.metric.name)
        limit = self.study.config.proposer.learnings_max_chars
        learnings.write(self.resource_path, text, block, limit)

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


def machine() -> str:
    """Where a noise calibration holds: the host, its processor and its core count."""
    return f"{platform.node()}/{platform.machine()}/{os.cpu_count()}"


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


def _counts(m: Measurement) -> tuple[int, int] | None:
    """(successes, trials) for the beta-binomial rule, when the evaluator reports them."""
    s, n = m.secondary.get("successes"), m.secondary.get("trials")
    return (int(s), int(n)) if s is not None and n is not None else None


def add_usage(row: dict[str, Any], usage: Usage, cost_usd: float) -> dict[str, Any]:
    """The row with more tokens and dollars in it (a proposer's learning step, say)."""
    return row | {
        "tokens_in": int(row["tokens_in"]) + usage.input_tokens,
        "tokens_out": int(row["tokens_out"]) + usage.output_tokens,
        "tokens_cache_read": int(row["tokens_cache_read"]) + usage.cache_read_tokens,
        "tokens_cache_write": int(row["tokens_cache_write"]) + usage.cache_write_tokens,
        "cost_usd": f"{float(row['cost_usd']) + cost_usd:.6f}",
    }


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
    tag_text = [f"{k}={v[:12]}" for k, v in measurement.tags.items()] if measurement else []
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
        "evidence": " ".join([evidence, *tag_text]).strip(),
        "key": proposal.key if proposal else "",
    }
