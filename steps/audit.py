"""The audit of a keep: before a keep lands, core.audit's rules look at its diff and its gain;
a keep they doubt is measured again at once, beside the champion it beat, each run with a seed
of its own (the study's evaluator reads it from `audit.seed_env`), and judged again by the
study's rule. It is kept, marked suspect with what was found, only when it holds; else it is
discarded (`reverted`), so that the champion never moves to it.
"""

from __future__ import annotations

import statistics

from core import audit
from core.decide import Verdict, gain
from core.study import Study
from evaluators.base import Measurement
from steps.instrument import Instrument, combine, log_path
from steps.judge import Judge
from steps.slots import Slots
from steps.trial import Trial


class Audit:
    def __init__(self, study: Study, instrument: Instrument, slots: Slots, judge: Judge) -> None:
        self.study = study
        self.config = study.config.audit
        self.instrument = instrument
        self.slots = slots
        self.judge = judge

    def review(self, trial: Trial, verdict: Verdict) -> Verdict:
        """The verdict on a keep, after its audit (the trial carries what the audit found)."""
        if not self.config.enabled or verdict.status != "keep" or trial.description == "baseline":
            return verdict
        doubts = self.doubts(trial)
        if not doubts:
            return verdict
        again = self.remeasure(trial)
        runs = max(self.config.remeasure_runs, self.study.rule.repeats)
        said = f"re-measured {runs}x with other seeds: {again.reason}"
        held = again.status == "keep"
        trial.suspect = "; ".join(doubts) + f"; {said}" + ("" if held else "; reverted")
        if held:
            return verdict
        return Verdict("discard", f"a suspect keep that did not hold: {trial.suspect}", said)

    def doubts(self, trial: Trial) -> list[str]:
        """Why the rules doubt this keep (none: it is not audited further)."""
        assert trial.measurement is not None and trial.measurement.metric is not None
        diff = self.slots[trial.slot].workspace.diff(trial.built_on, trial.commit)
        found = audit.sensitive(diff, self.config)
        kept = [r.metric for r in self.judge.records.ledger.rows() if r.kept]
        direction = self.study.metric.direction
        earlier = [gain(direction, new, old) for old, new in zip(kept, kept[1:], strict=False)]
        if kept:
            up = gain(direction, trial.measurement.metric, kept[-1])
            if (jumped := audit.jump(up, earlier, self.config)) is not None:
                found.append(jumped)
        return found

    def remeasure(self, trial: Trial) -> Verdict:
        """The candidate and the champion it was built on, run in turns, each run with a seed of
        its own; the study's rule on those runs."""
        slot = self.slots[trial.slot]
        champion = slot.champion.open_at(trial.built_on)
        mine: list[Measurement] = []
        theirs: list[Measurement] = []
        for i in range(max(self.config.remeasure_runs, self.study.rule.repeats)):
            env = slot.env | {self.config.seed_env: str(i + 1)}
            log = log_path(self.study, trial.experiment, i, arm="audit")
            mine.append(self.instrument.run_once(slot.workspace, log, env))
            log = log_path(self.study, trial.experiment, i, arm="audit-champion")
            theirs.append(self.instrument.run_once(champion, log, env))
        candidate, old = combine(mine, self.study.rule.center), combine(theirs, statistics.fmean)
        if candidate.metric is None or old.metric is None:
            return Verdict("discard", "a run crashed", "")
        assert trial.candidate is not None
        runs = list(old.samples) or [old.metric]
        return self.judge.judge(candidate, trial.candidate, runs, trial.slot)
