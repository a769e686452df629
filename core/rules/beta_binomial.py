"""`beta_binomial`, for rates: kept when P(the candidate's rate is better by more than the bar)
is high enough and the expected loss small, under Beta(1+s, 1+f) posteriors. The evaluator
reports `successes` and `trials` (or each run is a 0/1 outcome)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from core.decide import Counts, Samples, Verdict, beta_binomial, gain
from core.rules.base import Arms, DecisionConfig, Rule, as_array, candidate_problem


class BetaBinomialConfig(DecisionConfig):
    probability: float = Field(0.95, gt=0.5, lt=1)  # P(better) a keep needs
    max_expected_loss: float = Field(0.001, ge=0)  # E[max(champion - candidate, 0)] below this


def posterior_rate(counts: Counts) -> float:
    """The rate's posterior mean under a uniform prior."""
    return (1 + counts[0]) / (2 + counts[1])


def outcomes(name: str, samples: Samples) -> Counts:
    """Single-trial outcomes (0 or 1, one per sample) as (successes, trials)."""
    values = as_array(samples)
    values = values[np.isfinite(values)]
    if not np.all((values == 0) | (values == 1)):
        raise ValueError(
            f"beta_binomial: {name} samples must be 0/1 outcomes, or pass {name}_counts"
        )
    return int(values.sum()), int(values.size)


class BetaBinomial(Rule):
    name = "beta_binomial"
    Config = BetaBinomialConfig
    config: BetaBinomialConfig

    @property
    def needs_counts(self) -> bool:
        return True

    def describe(self) -> str:
        return f"P(better) >= {self.config.probability:g} under Beta posteriors of the rates"

    def on_counts(
        self, champion: Counts, candidate: Counts, probability: float | None = None
    ) -> Verdict:
        """The test on counts alone (an A/B test's look: `probability` for a stricter bar)."""
        c = self.config
        bar = self.bar(posterior_rate(champion))
        return beta_binomial(
            self.direction, champion, candidate, probability or c.probability,
            c.max_expected_loss, bar,
        )  # fmt: skip

    def decide(self, arms: Arms) -> Verdict:
        champ = arms.champion_counts or outcomes("champion", arms.champion)
        if arms.candidate_counts is None and (problem := candidate_problem(arms.candidate)):
            return Verdict("discard", problem, "beta_binomial")
        cand = arms.candidate_counts or outcomes("candidate", arms.candidate)
        bar = self.bar(posterior_rate(champ)) + self.extra(arms)
        c = self.config
        verdict = beta_binomial(
            self.direction, champ, cand, c.probability, c.max_expected_loss, bar
        )
        if cand[1] == 0:
            return verdict
        point = gain(self.direction, posterior_rate(cand), posterior_rate(champ))
        return self.simplicity(verdict, point, arms.net_lines)


RULE = BetaBinomial
