"""A campaign's bookkeeping, so that its flow only composes tasks: which trial starts next (what
a killed run left in flight first, under their own numbers; then new ones while the budget
lasts; the baseline first, alone), what the budget says, how far along it is, how it ended."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from core.ledger import Row
from steps.budget import Budget
from steps.lab import Lab
from steps.report import Summary
from steps.trial import Stop, Trial


class Plan:
    def __init__(
        self, lab: Lab, experiments: int | None, minutes: float | None, resume: bool = True
    ) -> None:
        self.lab = lab
        self.budget = Budget(lab.study, experiments, minutes)
        self.first = lab.records.ledger.next_experiment()
        self.resumed = lab.records.resumable() if resume else []
        self.progress_id: Any = None  # the UI's progress artifact, once made

    def may_start(self, in_flight: int) -> bool:
        """Room in a slot, a trial left to resume or budget left, and no baseline in flight."""
        if in_flight >= self.lab.slots.count or not (self.resumed or self.budget.more()):
            return False
        return not (in_flight and self.lab.records.champion() is None)

    def calibrations_due(self, in_flight: int) -> list[int]:
        """The slots whose noise is to be measured first, with nothing else running (at the
        start, on a new machine; each GPU of its own)."""
        if in_flight:
            return []
        return [s.index for s in self.lab.slots.all if self.lab.judge.needs_calibration(s.index)]

    def next_trial(self) -> tuple[Trial, bool]:
        """A trial given a slot: one a killed run left in flight, else a new one (counted);
        and whether it is resumed."""
        if self.resumed:
            trial = self.resumed.pop(0)
            self.lab.claim(trial)
            return trial, True
        self.budget.started += 1
        return self.lab.reserve(), False

    def count(self, ended: list[tuple[Trial | None, Row | Stop]]) -> None:
        """Experiments that ended: their slots free, their outcomes against the budget."""
        for trial, outcome in ended:
            if trial is not None:
                self.lab.release(trial)
            self.budget.account(outcome)

    def progress(self, in_flight: int = 0, note: str = "") -> tuple[float, str]:
        """The share done (experiments of planned, or minutes of the budget), in percent, and
        its words."""
        b = self.budget
        if b.planned:
            text, pct = f"{b.done} of {b.planned} experiments done", 100.0 * b.done / b.planned
        elif b.minutes:
            used = b.minutes_used()
            text = f"{b.done} experiments done, {used:.1f} of {b.minutes:g} min"
            pct = 100.0 * used / b.minutes
        else:
            text, pct = f"{b.done} experiments done, running until stopped", 0.0
        text += f", {in_flight} in flight" if in_flight else ""
        if tree := self.lab.search.describe(self.lab.records.ledger.rows()):
            text += f"; {tree}"
        return min(pct, 100.0), f"{text}; {note}" if note else text

    def ended(self, summary: Summary) -> Summary:
        """The published summary, with how the campaign ran and ended."""
        overfitting = self.lab.holdout.overfitting_since(self.first)
        b = self.budget
        return replace(summary, ran=b.done, stop=b.stop, overfitting=overfitting)
