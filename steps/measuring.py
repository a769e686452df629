"""Measuring as the study's rule needs it: a candidate once, repeated, or interleaved with the
champion it is built on; the baseline; the noise of a rule that calibrates."""

from __future__ import annotations

from core.ledger import Status
from core.workspace import GuardViolation
from evaluators.base import Measurement
from steps.instrument import Instrument
from steps.records import Records
from steps.screening import Screened, Screening
from steps.slots import Slots
from steps.trial import Candidate, Trial


class Measuring:
    def __init__(self, instrument: Instrument, slots: Slots, records: Records) -> None:
        self.instrument = instrument
        self.slots = slots
        self.records = records
        self.rule = records.study.rule
        self.screening = Screening(instrument, records)

    def screen(self, trial: Trial) -> None:
        """The study's cheap stages, on the trial's slot (Screened: the candidate failed one)."""
        slot = self.slots[trial.slot]
        self.screening.run(trial, slot.workspace, slot.env)

    def candidate(self, trial: Trial) -> Measurement:
        """The candidate, on the trial's slot, as the rule needs it measured (its stages first)."""
        self.screen(trial)
        slot = self.slots[trial.slot]
        if self.rule.paired:
            champion = slot.champion.open_at(trial.built_on)
            m, runs = self.instrument.paired(
                slot.workspace, champion, trial.experiment, self.rule.repeats, slot.env
            )
            trial.champion_runs = runs
        else:
            m = self.instrument.repeat(
                slot.workspace, trial.experiment, self.rule.repeats, slot.env
            )
        trial.measurement = m
        return m

    def start_baseline(self, trial: Trial) -> None:
        """The trial is the unchanged artifact: the branch head, built on itself."""
        head = self.records.repo.branch_head()
        trial.description = "baseline"
        trial.apply(Candidate(head, 0, 0), head)

    def baseline(self, trial: Trial, measured: Measurement | None = None) -> tuple[Status, str]:
        """The unchanged artifact, measured here (or by a worker: `measured`), as many times as
        the rule's baseline needs: kept, crashed, or rejected when it broke a guard."""
        self.start_baseline(trial)
        try:
            self.slots[trial.slot].workspace.checkout(trial.commit)
            if measured is None:
                measured = self.evaluate(trial.experiment, self.rule.baseline_runs)
            self.screen(trial)
        except GuardViolation as exc:
            return Status.REJECTED, str(exc)
        except Screened as exc:
            return Status.CRASH, f"the baseline: {exc}"
        trial.measurement = measured
        if measured.status == "ok" and self.rule.calibrates:
            self.records.save_calibration(measured, self.slots[trial.slot].place)
        return (Status.KEEP, "") if measured.status == "ok" else (Status.CRASH, measured.reason)

    def calibrate(self, index: int = 1) -> Measurement:
        """The champion run as many times as the baseline on a slot: its spread is the noise
        there (slot 1's runs are the champion's arm too). Its logs are those of the next
        experiment's number, `-calibration` (`-calibration-slot-k` on slot k)."""
        slot = self.slots[index]
        slot.workspace.checkout(self.records.champion_commit())
        label = f"{self.records.ledger.next_experiment()}-calibration"
        m = self.evaluate(
            label + (f"-slot-{index}" if index > 1 else ""), self.rule.baseline_runs, index
        )
        if m.status == "ok":
            self.records.save_calibration(m, slot.place, arm=index == 1)
        return m

    def evaluate(self, label: int | str, runs: int = 1, index: int = 1) -> Measurement:
        """What a slot (1) has checked out, measured `runs` times."""
        slot = self.slots[index]
        return self.instrument.repeat(slot.workspace, label, runs, slot.env)
