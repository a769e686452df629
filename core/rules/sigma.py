"""`sigma`: the baseline's repeated runs measure the noise; a candidate's mean gain must
exceed k standard errors of the difference of means."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from core.decide import Verdict, sigma_rule
from core.rules.base import Arms, DecisionConfig, Rule


class SigmaConfig(DecisionConfig):
    calibration_runs: int = Field(5, ge=2)  # the baseline's runs: the study's noise
    k: float = Field(2.0, gt=0)  # standard errors a gain must exceed
    repeats: int = Field(5, ge=2)  # runs per candidate


class Sigma(Rule):
    name = "sigma"
    Config = SigmaConfig
    config: SigmaConfig

    @property
    def repeats(self) -> int:
        return self.config.repeats

    @property
    def baseline_runs(self) -> int:
        return self.config.calibration_runs

    @property
    def calibrates(self) -> bool:
        return True

    def describe(self) -> str:
        return (
            f"a gain beyond {self.config.k:g} standard deviations of the measured noise "
            f"({self.config.repeats} runs each)"
        )

    def test(self, champion: np.ndarray, candidate: np.ndarray, bar: float, arms: Arms) -> Verdict:
        dof = self.config.calibration_runs - 1 if arms.noise_dof is None else arms.noise_dof
        return sigma_rule(
            self.direction, champion, candidate, self.config.k, arms.noise_sigma, dof, bar
        )


RULE = Sigma
