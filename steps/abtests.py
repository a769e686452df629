"""A study's A/B tests in flight, for an asynchronous evaluator (results known days later).

A candidate is launched as one A/B batch: the champion's copy and the candidate's, at random,
in the same window. Its plan (the handle) is saved with the trial's pending record before
anything is sent; every run of the campaign then sends what is owed, collects the counts, and
decides what the rule is sure of (core.abtest), across restarts, scheduled runs and machines
that share the state folder. The first decision also records the baseline: the champion's arm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core import abtest
from core.decide import Verdict
from core.files import atomic_write
from core.ledger import Row, Status
from core.pending import Stage
from evaluators import kind as evaluator_kind
from evaluators.base import AsyncEvaluator, Collected, Launch, Measurement, NotNow
from steps.lab import Lab
from steps.trial import Remeasure, Trial

BASELINE = "baseline"  # the baseline's description: recorded at the first decision


def asynchronous(lab: Lab) -> bool:
    """Whether the study's evaluator gives its results days later (its kind says so)."""
    return evaluator_kind(lab.study.config.evaluator.kind).asynchronous


class ABTests:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.records = lab.records
        self.evaluator: AsyncEvaluator = lab.instrument.evaluator  # type: ignore[assignment]
        self._handles: dict[int, dict[str, Any]] = {}  # as saved: a plan, read once (~1 MB)

    @property
    def state_dir(self) -> Path:
        return self.lab.study.state_dir

    def handle_path(self, number: int) -> Path:
        return self.records.pending.folder / f"{number}.handle.json"

    def handle(self, trial: Trial) -> dict[str, Any]:
        number = trial.experiment
        if number not in self._handles:
            self._handles[number] = json.loads(self.handle_path(number).read_text())
        return self._handles[number]

    # what is in flight -------------------------------------------------------------------

    def launched(self) -> list[Trial]:
        """The tests sent and being counted, oldest first."""
        return [
            Trial.resume(r)
            for r in self.records.pending.at(Stage.LAUNCHED)
            if self.handle_path(r.experiment).exists()
        ]

    def unlaunched(self) -> list[Trial]:
        """Candidates proposed but not launched yet (none could be mailed then; or a kill)."""
        return self.records.resumable()

    def room(self) -> int:
        return self.evaluator.max_pending - len(self.launched()) - len(self.unlaunched())

    def reserve_baseline(self) -> None:
        """Number 1 is the baseline's, recorded with the champion's arm of the first decision."""
        lab = self.lab
        if lab.records.champion() is None and not self.records.pending.at(Stage.BASELINE):
            trial = lab.reserve()
            lab.release(trial)
            trial.description = BASELINE
            self.records.note(trial, stage=Stage.BASELINE)

    # launching ---------------------------------------------------------------------------

    def launch(self, trial: Trial) -> str | None:
        """Plan the trial's batch (champion's copy and the candidate's), save the plan, start
        sending. Returns when to try again when nothing can be sent now (NotNow)."""
        lab, slot = self.lab, self.lab.slot(trial)
        champion = slot.champion.open_at(trial.built_on).study_dir
        challenger = slot.workspace.study_dir
        where = Launch(lab.study.name, trial.experiment, champion, challenger, self.state_dir)
        try:
            handle = self.evaluator.launch(where)
        except NotNow as exc:
            return exc.retry_at
        self.finish(trial, "superseded")  # a test of the change on an older champion stops
        with self.records.own_files.writing():
            atomic_write(self.handle_path(trial.experiment), json.dumps(handle))
        self._handles[trial.experiment] = handle
        self.records.note(trial, stage=Stage.LAUNCHED, due=handle.get("planned_at_iso", ""))
        self.evaluator.start(handle, self.state_dir)
        return None

    # deciding ----------------------------------------------------------------------------

    def collect(self, trial: Trial) -> Collected:
        """What the batch has sent and counted so far (sending first what it still owes)."""
        handle = self.handle(trial)
        self.evaluator.start(handle, self.state_dir)
        collected = self.evaluator.collect(handle, self.state_dir)
        self.records.note(trial, stage=Stage.LAUNCHED, due=collected.due_at or "now")
        return collected

    def decide(self, trial: Trial, c: Collected) -> Verdict | Remeasure | None:
        """The rule's decision, or None to wait. A keep of a test whose champion arm is not
        the champion now is never taken as it is: the change is applied again, and tested
        again, against the champion now."""
        lab = self.lab
        planned = int(c.detail.get("challenger", {}).get("planned", 0))
        d = abtest.interim(
            lab.study.rule,
            c.arms["champion"],
            c.arms["challenger"],
            closed=c.closed,
            waited_h=self.evaluator.waited_h(self.handle(trial), self.state_dir),
            max_wait_h=self.evaluator.max_wait_h,
            planned=planned,
        )
        if d is None:
            return None
        trial.measurement = measurement(c)
        trial.decided_at = c.at or ""
        rates = f"{_rate(c.arms['champion']):.2%} -> {_rate(c.arms['challenger']):.2%}"
        trial.description = f"{trial.proposal.hypothesis if trial.proposal else ''} ({rates})"
        current = lab.records.champion_commit()
        if d.ledger_status == "keep" and trial.built_on != current:
            return Remeasure(current, f"the champion moved to {current[:7]} during the test")
        return d.verdict()

    def baseline_row(self, trial: Trial, c: Collected) -> Row | None:
        """The baseline's row, from the champion's arm of this first decided test (only while
        no champion is recorded)."""
        record = next(iter(self.records.pending.at(Stage.BASELINE)), None)
        if record is None or self.lab.records.champion() is not None:
            return None
        baseline = Trial(record.experiment, description=BASELINE, commit=trial.built_on)
        baseline.started_at = record.since or baseline.started_at
        baseline.decided_at = c.at or ""
        s, n = c.arms["champion"]
        baseline.measurement = Measurement.of(_rate((s, n)), {"successes": s, "trials": n})
        return baseline.row(Status.KEEP, f"the champion's arm of experiment {trial.experiment}")

    def finish(self, trial: Trial, status: str) -> None:
        """The batch is decided: it stops sending; later replies show as late, uncounted."""
        path = self.handle_path(trial.experiment)
        if path.exists():
            self.evaluator.finish(self.handle(trial), self.state_dir, status)
            with self.records.own_files.writing():
                path.unlink()
        self._handles.pop(trial.experiment, None)

    def due(self) -> str | None:
        """When collecting again is worth it: the earliest due time of the tests in flight."""
        times = [r.due for r in self.records.pending.at(Stage.LAUNCHED)]
        return min((t for t in times if t and t != "now"), default=None)

    def wait_until(self, when: str) -> bool:
        return self.evaluator.wait_until(when, self.state_dir)

    # the dashboard -----------------------------------------------------------------------

    def save_dashboard(self, text: str) -> None:
        """The dashboard beside the ledger, for report.html."""
        atomic_write(self.state_dir / "ab-tests.md", text + "\n")

    def dashboard(self) -> str:
        """Each test in flight: its arms' sent, delivered, replied, reply rate with its 95%
        interval, P(challenger better), and when it is due (markdown)."""
        lines = [
            f"# {self.lab.study.name}: A/B tests in flight",
            "",
            "| # | arm | sent | delivered | replied | rate (95% interval) | P(better) | due |",
            "|---|---|---|---|---|---|---|---|",
        ]
        direction = self.lab.study.metric.direction
        for trial in self.launched():
            c = self.evaluator.collect(self.handle(trial), self.state_dir)
            p = abtest.prob_challenger_better(direction, c.arms["champion"], c.arms["challenger"])
            for arm in ("champion", "challenger"):
                d = c.detail.get(arm, {})
                s, n = c.arms[arm]
                low, high = _interval(s, n)
                better = f"{p:.3f}" if arm == "challenger" else ""
                lines.append(
                    f"| {trial.experiment} | {arm} | {int(d.get('sent', 0))} | "
                    f"{int(d.get('delivered', 0))} | {int(d.get('replied', 0))} | "
                    f"{_rate((s, n)):.2%} ({low:.2%}-{high:.2%}) | {better} | "
                    f"{c.due_at or 'now'} |"
                )
        if len(lines) == 4:
            lines.append("| | (none) | | | | | | |")
        return "\n".join(lines)


def measurement(c: Collected) -> Measurement:
    """The challenger's reply rate, with both arms' counts."""
    (s_h, n_h), (s_c, n_c) = c.arms["champion"], c.arms["challenger"]
    counts = {"successes": s_c, "trials": n_c, "champion_successes": s_h, "champion_trials": n_h}
    return Measurement.of(_rate((s_c, n_c)), {k: float(v) for k, v in counts.items()}, c.log)


def _rate(counts: tuple[int, int]) -> float:
    s, n = counts
    return s / n if n else 0.0


def _interval(s: int, n: int) -> tuple[float, float]:
    from scipy.stats import beta

    return float(beta.ppf(0.025, 1 + s, 1 + n - s)), float(beta.ppf(0.975, 1 + s, 1 + n - s))
