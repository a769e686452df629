"""`mannwhitney`, for timings: candidate and champion interleaved; kept when a one-sided
Mann-Whitney test and a bootstrap interval of the median ratio both say faster."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from core.decide import Verdict, mann_whitney
from core.rules.base import Arms, DecisionConfig, Rule


class MannWhitneyConfig(DecisionConfig):
    repeats: int = Field(5, ge=2)  # interleaved rounds, candidate and champion
    alpha: float = Field(0.01, gt=0, lt=1)
    min_effect: float = Field(0.02, ge=0)  # the whole interval beyond this fraction


class MannWhitney(Rule):
    name = "mannwhitney"
    Config = MannWhitneyConfig
    config: MannWhitneyConfig
    by_median = True

    @property
    def repeats(self) -> int:
        return self.config.repeats

    @property
    def paired(self) -> bool:
        return True

    def describe(self) -> str:
        c = self.config
        return (
            f"faster in a Mann-Whitney test over {c.repeats} interleaved runs "
            f"(p < {c.alpha:g}) by at least {c.min_effect:.0%}"
        )

    def test(self, champion: np.ndarray, candidate: np.ndarray, bar: float, arms: Arms) -> Verdict:
        c = self.config
        return mann_whitney(self.direction, champion, candidate, c.alpha, c.min_effect, bar)


RULE = MannWhitney
