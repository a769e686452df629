"""The decision section's shared options: pydantic only, so that loading a study's schema
imports no statistics (numpy comes with the rule that decides)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DecisionConfig(BaseModel):
    """The options every rule has. Each rule's own model subclasses it (core/rules/<rule>.py)."""

    model_config = STRICT

    rule: str = "threshold"
    relative: bool = False  # min_delta as a fraction of the champion
    complexity_cost: float = Field(0.0, ge=0)  # gain each net added line must buy
    rebaseline: bool = False  # re-measure the champion beside each candidate


class AnyDecision(DecisionConfig):
    """A decision section before its rule's model has checked the keys of its own."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
