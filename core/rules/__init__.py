"""The decision rules: each rule is one module whose `RULE` is its class (core.rules.base).

The registry: one line per rule, naming its module; other distributions add rules through the
entry-point group `autoresearch.rules`. A new rule is one file and one line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.entrypoints import Registry
from core.rules.config import DecisionConfig

if TYPE_CHECKING:
    from core.decide import Direction
    from core.rules.base import Rule

RULES = Registry(
    "decision rule",
    "autoresearch.rules",
    {
        "threshold": "core.rules.threshold",
        "sigma": "core.rules.sigma",
        "mannwhitney": "core.rules.mannwhitney",
        "beta_binomial": "core.rules.beta_binomial",
    },
)


DEFAULT = DecisionConfig.model_fields["rule"].default


def rule_class(name: str) -> type[Rule]:
    return RULES.load(name).RULE


def config(**options: Any) -> DecisionConfig:
    """A decision section checked by its rule's own model (`rule` names the rule)."""
    return rule_class(options.get("rule", DEFAULT)).Config.model_validate(options)


def make(decision: DecisionConfig, direction: Direction, min_delta: float = 0.0) -> Rule:
    """The rule a study's decision section describes."""
    cls = rule_class(decision.rule)
    if not isinstance(decision, cls.Config):
        decision = cls.Config.model_validate(decision.model_dump())
    return cls(decision, direction, min_delta)
