"""The study's fixed instrument, run safely: each run in its sandbox, with the protected files
and the tool's own files checked around it; runs repeated, or interleaved with the champion's.

A campaign's slots use it, and so does a worker on another machine, over its own clone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from core.rules.base import Rule
from core.sandbox import Sandbox
from core.study import Study
from core.tamper import Tampered, Watched
from core.workspace import GuardViolation, Workspace
from evaluators.base import Evaluator, Measurement
from steps.champion import counts


def log_path(study: Study, experiment: int | str, run: int = 0, arm: str = "") -> Path:
    """logs/<n>.log for the first run; logs/<n>-<run>.log and logs/<n>-champion-<run>.log."""
    suffix = (f"-{arm}" if arm else "") + (f"-{run + 1}" if run or arm else "")
    return study.state_dir / "logs" / f"{experiment}{suffix}.log"


class Instrument:
    def __init__(
        self,
        study: Study,
        evaluator: Evaluator,
        protected: Callable[[], dict[str, str]],
        own_files: Watched,
        sandbox: Callable[[Workspace], Sandbox | None],
    ) -> None:
        self.study = study
        self.evaluator = evaluator
        self.protected = protected
        self.own_files = own_files
        self.sandbox = sandbox

    @property
    def rule(self) -> Rule:
        return self.study.rule

    def run_once(
        self,
        workspace: Workspace,
        log: Path,
        env: dict[str, str] | None = None,
        evaluator: Evaluator | None = None,
    ) -> Measurement:
        """One run, in its sandbox, with the protected files and the study's own files checked
        before and after it."""
        protected = self.protected()
        workspace.check_protected(protected)
        workspace.drop_bytecode()
        instrument = evaluator or self.evaluator
        try:
            with self.own_files.watch():
                m = instrument.evaluate(workspace.study_dir, log, self.sandbox(workspace), env)
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

    def repeat(
        self, workspace: Workspace, label: int | str, runs: int, env: dict[str, str] | None = None
    ) -> Measurement:
        """What is checked out, measured `runs` times (its first log is logs/<label>.log)."""
        logs = [log_path(self.study, label, i) for i in range(runs)]
        results = [self.run_once(workspace, log, env) for log in logs]
        return self.usable(combine(results, self.rule.center))

    def paired(
        self,
        workspace: Workspace,
        champion: Workspace,
        label: int | str,
        runs: int,
        env: dict[str, str] | None = None,
    ) -> tuple[Measurement, list[float]]:
        """Candidate and champion interleaved on one slot, each going first in every other
        round (A B, B A, A B, ...), so that contention hits both alike and a machine that slowly
        gets busier (or quieter) favours neither: in A B A B the champion would always run later.
        The candidate goes first in the first round, so that a crash costs no champion run."""
        mine: list[Measurement] = []
        theirs: list[float] = []
        for i in range(runs):
            champion_first = i % 2 == 1
            if champion_first:
                theirs.append(self.champion_run(champion, label, i, env))
            mine.append(self.run_once(workspace, log_path(self.study, label, i), env))
            if mine[-1].status != "ok":
                break
            if not champion_first:
                theirs.append(self.champion_run(champion, label, i, env))
        m = self.usable(combine(mine, self.rule.center))
        if m.status == "ok" and not any(math.isfinite(v) for v in theirs):
            m = replace(m, status="crash", reason="every re-run of the champion crashed")
        return m, theirs

    def champion_run(
        self, champion: Workspace, label: int | str, run: int, env: dict[str, str] | None
    ) -> float:
        """One run of the champion beside a candidate; a crash is NaN, left out by the rule."""
        m = self.run_once(champion, log_path(self.study, label, run, "champion"), env)
        return m.metric if m.metric is not None else math.nan

    def usable(self, m: Measurement) -> Measurement:
        """A crash, with its reason, when the rule needs what the evaluator did not report."""
        if m.status == "ok" and self.rule.needs_counts and counts(m) is None:
            why = f"rule {self.rule.name} needs `successes` and `trials`"
            return replace(m, status="crash", reason=why)
        return m


def combine(runs: list[Measurement], center: Callable[[Sequence[float]], float]) -> Measurement:
    """Several runs as one measurement: any crash makes it a crash; else their center (the
    rule's: a mean, or a median for timings)."""
    for m in runs:
        if m.status != "ok":
            return m
    samples = tuple(m.metric for m in runs if m.metric is not None)
    if len(samples) == 1:
        return runs[0]
    last = runs[-1]
    return replace(
        last,
        metric=center(samples),
        samples=samples,
        duration_s=sum(m.duration_s for m in runs),
    )
