"""What every decision rule is: its options, what it reads, how it measures and decides.

A rule is one class (as an Optuna sampler is): built from the study's `metric.decision` section,
it says how many runs a candidate needs, whether the champion is re-measured beside it, what the
baseline calibrates, how it reads to a model and how it decides. Nothing else in the tool asks a
rule's name. Conventions every rule keeps (see `Rule.decide`):

- Samples are one value per run; a crashed run is NaN (or None). Champion runs that crashed are
  dropped; a champion with no valid run left is the caller's bug (ValueError). A candidate with
  any crashed run is discarded: a change that makes some runs crash is not an improvement.
- The practical bar is `min_delta` (absolute, or a fraction of the champion when `relative`),
  plus `complexity_cost` per net line added; a candidate must clear it and the rule's test.
- Ties go to the champion; with `complexity_cost` > 0, a candidate that deletes more lines than
  it adds and is not worse is kept even when the test does not pass.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from core.decide import Counts, Direction, Samples, Verdict, gain
from core.rules.config import AnyDecision, DecisionConfig

__all__ = ["AnyDecision", "Arms", "DecisionConfig", "Rule"]


@dataclass(frozen=True)
class Arms:
    """What one decision reads: each arm's runs, counts when the evaluator reports them, the
    study's calibrated noise, and the size of the candidate's change."""

    champion: Samples
    candidate: Samples
    champion_counts: Counts | None = None
    candidate_counts: Counts | None = None
    noise_sigma: float | None = None
    noise_dof: int | None = None  # default: the calibration's runs less one
    lines_added: int = 0
    lines_removed: int = 0

    @property
    def net_lines(self) -> int:
        return self.lines_added - self.lines_removed


def as_array(samples: Samples) -> np.ndarray:
    return np.asarray([np.nan if s is None else s for s in samples], dtype=float)


def champion_values(samples: Samples) -> np.ndarray:
    """The champion's valid runs; crashed ones dropped. None left is the caller's bug."""
    values = as_array(samples)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError(
            f"no valid champion measurement ({len(samples)} run(s), all crashed or none given)"
        )
    return values


def candidate_problem(samples: Samples) -> str | None:
    """Why the candidate's runs cannot be kept (none, or some crashed), or None when fine."""
    values = as_array(samples)
    if values.size == 0:
        return "no candidate measurement"
    crashed = int(np.sum(~np.isfinite(values)))
    if crashed:
        return f"{crashed} of {values.size} candidate run(s) crashed"
    return None


class Rule:
    """One decision rule. Subclasses set `name` and `Config`, describe themselves, and test."""

    name: ClassVar[str]
    Config: ClassVar[type[DecisionConfig]] = DecisionConfig
    by_median: ClassVar[bool] = False  # several runs as their median (timings), else mean

    def __init__(self, config: DecisionConfig, direction: Direction, min_delta: float = 0.0):
        self.config = config
        self.direction = direction
        self.min_delta = min_delta

    # how candidates are measured -------------------------------------------------------

    @property
    def repeats(self) -> int:
        """Runs per candidate."""
        return 1

    @property
    def paired(self) -> bool:
        """Whether the champion is re-measured beside each candidate, interleaved with it."""
        return self.config.rebaseline

    @property
    def baseline_runs(self) -> int:
        return 1

    @property
    def calibrates(self) -> bool:
        """Whether the baseline's runs are the study's noise (again on another machine)."""
        return False

    @property
    def needs_counts(self) -> bool:
        """Whether the evaluator must report `successes` and `trials`."""
        return False

    def center(self, samples: Sequence[float]) -> float:
        """Several runs as one number (the row's metric)."""
        return statistics.median(samples) if self.by_median else statistics.fmean(samples)

    def _center(self, values: np.ndarray) -> float:
        return float(np.median(values) if self.by_median else values.mean())

    # to a model --------------------------------------------------------------------------

    def describe(self) -> str:
        """What a candidate must do to be kept, as the end of "kept only for ..."."""
        raise NotImplementedError

    def prompt_line(self) -> str:
        """How the code decides, so that the researcher aims above the noise."""
        text = f"A candidate is kept only for {self.describe()}; ties go to the champion."
        if self.config.complexity_cost:
            text += (
                f" Each net added line must buy {self.config.complexity_cost:g} more gain; an "
                "equal result that deletes code is kept."
            )
        return text

    # deciding ----------------------------------------------------------------------------

    def bar(self, champion: float) -> float:
        """The practical bar: min_delta, or that fraction of the champion's value."""
        return self.min_delta * abs(champion) if self.config.relative else self.min_delta

    def extra(self, arms: Arms) -> float:
        """What the candidate's added lines cost."""
        return self.config.complexity_cost * max(0, arms.net_lines)

    def decide(self, arms: Arms) -> Verdict:
        """Keep or discard the candidate against the champion."""
        champ = champion_values(arms.champion)
        problem = candidate_problem(arms.candidate)
        if problem:
            return Verdict("discard", problem, f"{self.name} n={champ.size}/{len(arms.candidate)}")
        cand = as_array(arms.candidate)
        bar = self.bar(self._center(champ)) + self.extra(arms)
        verdict = self.test(champ, cand, bar, arms)
        point = gain(self.direction, self._center(cand), self._center(champ))
        return self.simplicity(verdict, point, arms.net_lines)

    def test(self, champion: np.ndarray, candidate: np.ndarray, bar: float, arms: Arms) -> Verdict:
        """The rule's own test of valid runs against `bar`."""
        raise NotImplementedError

    def simplicity(self, verdict: Verdict, point_gain: float, net_lines: int) -> Verdict:
        """With a complexity cost, an equal (not worse) result that deletes code is kept."""
        if verdict.status == "keep" or self.config.complexity_cost <= 0 or net_lines >= 0:
            return verdict
        if point_gain >= 0:
            reason = f"not worse (gain {point_gain:.6g}) and {-net_lines} line(s) fewer"
            return Verdict("keep", reason, f"{verdict.evidence} simpler={-net_lines}")
        return verdict
