"""Constraints on the evaluator's other numbers (study.yaml `metric.constraints`): a candidate
that breaks one is discarded, however good its metric.

    metric:
      constraints:
        memory_gb: {max: 40}            # absolute bounds
        allocations: {max_ratio: 1.0}   # relative to the champion's value

A number the candidate does not report breaks its constraint (a candidate cannot pass by
printing less); a ratio needs the champion's value, and holds while the champion has none.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Constraint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max: float | None = None
    min: float | None = None
    max_ratio: float | None = Field(None, gt=0)  # of the champion's value
    min_ratio: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _a_bound(self) -> Self:
        if all(v is None for v in (self.max, self.min, self.max_ratio, self.min_ratio)):
            raise ValueError("give max, min, max_ratio or min_ratio")
        return self

    def bounds(self, champion: float | None) -> list[tuple[str, float, bool]]:
        """(how it reads, the bound, an upper bound?) for each bound that applies now."""
        out = []
        if self.max is not None:
            out.append((f"<= {self.max:g}", self.max, True))
        if self.min is not None:
            out.append((f">= {self.min:g}", self.min, False))
        if champion is not None and self.max_ratio is not None:
            out.append((f"<= {self.max_ratio:g} x the champion's", self.max_ratio * champion, True))
        if champion is not None and self.min_ratio is not None:
            low = self.min_ratio * champion
            out.append((f">= {self.min_ratio:g} x the champion's", low, False))
        return out

    def describe(self) -> str:
        """For the prompt: every bound, the ratios against `the champion's`."""
        return " and ".join(text for text, _, _ in self.bounds(1.0))


def broken(
    constraints: dict[str, Constraint],
    numbers: dict[str, float],
    champion: dict[str, float],
) -> str | None:
    """The first constraint the candidate's numbers break, as it reads (None: all hold)."""
    for name, constraint in constraints.items():
        value = numbers.get(name)
        if value is None:
            return f"{name} not reported"
        for text, bound, upper in constraint.bounds(champion.get(name)):
            if (value > bound) if upper else (value < bound):
                return f"{name} {value:.6g} breaks {name} {text} ({bound:.6g})"
    return None


def prompt_line(constraints: dict[str, Constraint]) -> str:
    """What a model is told: the constraints a candidate must hold to be kept."""
    if not constraints:
        return ""
    said = "; ".join(f"{name} {c.describe()}" for name, c in constraints.items())
    return f"Constraints (a candidate that breaks one is discarded, however good): {said}."
