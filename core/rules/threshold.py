"""`threshold` (the default): keep when better than the champion by more than the bar."""

from __future__ import annotations

import numpy as np

from core.decide import Verdict, threshold
from core.rules.base import Arms, Rule


class Threshold(Rule):
    name = "threshold"

    def describe(self) -> str:
        relative = " (relative)" if self.config.relative else ""
        return f"better than the champion by more than {self.min_delta:g}{relative}"

    def test(self, champion: np.ndarray, candidate: np.ndarray, bar: float, arms: Arms) -> Verdict:
        verdict = threshold(self.direction, float(champion.mean()), float(candidate.mean()), bar)
        runs = f"threshold n={champion.size}/{candidate.size}"
        return Verdict(verdict.status, verdict.reason, verdict.evidence.replace("threshold", runs))


RULE = Threshold
