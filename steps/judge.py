"""The judge: keep or discard a measured candidate against the champion now, by the study's
rule, with the champion's runs and the study's noise as state.json holds them."""

from __future__ import annotations

from core import constraints
from core.decide import Verdict
from core.rules.base import Arms, Rule
from evaluators.base import Measurement
from steps.champion import counts
from steps.records import Records
from steps.slots import Slots
from steps.trial import Candidate, Remeasure, Trial


class Judge:
    def __init__(self, rule: Rule, records: Records, slots: Slots, rebase: bool = True) -> None:
        self.rule = rule
        self.records = records
        self.slots = slots
        self.rebase = rebase  # greedy: a candidate is kept only on top of the champion now

    def needs_calibration(self, slot: int = 1) -> bool:
        """A rule that calibrates its noise does so at the start, for each slot's GPU, and
        again on another machine."""
        if not self.rule.calibrates or self.records.champion() is None:
            return False
        return not self.records.champion_runs.calibrated(self.slots[slot].place)

    def decide(self, trial: Trial) -> Verdict | Remeasure:
        """Keep or discard, against the champion now. A candidate built on an older champion
        is never kept on that measurement alone: when it beats the champion now, its change is
        to be applied again on that champion and measured again."""
        assert trial.measurement is not None and trial.candidate is not None
        if broke := self.broken(trial.measurement):
            trial.constraint = broke
            return Verdict("discard", f"breaks a constraint: {broke}", broke)
        current = self.records.champion_commit()
        if trial.built_on == current or not self.rebase:  # a node may beat it from anywhere
            return self.judge(trial.measurement, trial.candidate, trial.champion_runs, trial.slot)
        verdict = self.judge(trial.measurement, trial.candidate, slot=trial.slot)
        champ = self.records.champion()
        since = f"#{champ.experiment}" if champ else "the baseline"
        if verdict.status != "keep":
            why = f"built on {trial.built_on[:7]}; against the champion kept since ({since})"
            return Verdict("discard", f"{why}: {verdict.reason}", f"{why}: {verdict.evidence}")
        return Remeasure(current, f"the champion moved to {current[:7]} ({since})")

    def broken(self, measurement: Measurement) -> str | None:
        """The study's constraint the measurement breaks (ratios: against the champion's row)."""
        wanted = self.records.study.metric.constraints
        if not wanted:
            return None
        champion = next((r for r in reversed(self.records.ledger.rows()) if r.kept), None)
        theirs = dict(champion.secondary) if champion else {}
        if champion and champion.memory_gb:  # its own column (0.0: not reported)
            theirs["memory_gb"] = champion.memory_gb
        return constraints.broken(wanted, measurement.secondary, theirs)

    def judge(
        self,
        measurement: Measurement,
        candidate: Candidate,
        champion: list[float] | None = None,
        slot: int = 1,
    ) -> Verdict:
        """The rule's verdict on this measurement (with the noise of the slot it was measured
        on); measurements that differ in a tag (the data's hash, say) are not comparable."""
        assert measurement.metric is not None
        runs = self.records.champion_runs
        saved = runs.saved()
        theirs = saved.get("tags", {})
        mine_tags = measurement.tags
        differ = [k for k in theirs.keys() & mine_tags.keys() if theirs[k] != mine_tags[k]]
        if differ:
            why = f"not comparable: {', '.join(differ)} differs from the champion's"
            return Verdict("discard", why, why)
        champion = champion or runs.samples()
        cal = runs.calibration(self.slots[slot].place)
        if cal.get("samples") == champion:  # the calibration runs are the champion arm:
            cal = {}  # counting them again as noise would double their weight
        mine = counts(measurement) if self.rule.needs_counts else None
        base = saved.get("counts") if mine else None
        return self.rule.decide(
            Arms(
                champion=champion,
                candidate=list(measurement.samples) or [measurement.metric],
                champion_counts=tuple(base) if base else None,
                candidate_counts=mine,
                noise_sigma=cal.get("sigma"),
                noise_dof=len(cal["samples"]) - 1 if cal.get("samples") else None,
                lines_added=candidate.lines_added,
                lines_removed=candidate.lines_removed,
            )
        )
