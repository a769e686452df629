"""`auto`: Claude when ANTHROPIC_API_KEY is set, else the offline mutate proposer.

Its section may carry the options of both, since either may run.
"""

from __future__ import annotations

import os
from typing import Literal

from proposers.base import Kind, Proposer
from proposers.claude import ClaudeConfig, ClaudeProposer
from proposers.mutate import MutateConfig, MutateProposer


class AutoConfig(MutateConfig, ClaudeConfig):
    kind: Literal["auto"] = "auto"  # type: ignore[assignment]


def resolve() -> tuple[str, str]:
    """The kind `auto` means here and now, and why."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "claude", "proposer claude (auto: ANTHROPIC_API_KEY is set)"
    return "mutate", "proposer mutate (auto: no ANTHROPIC_API_KEY, offline mutations)"


def create(config: AutoConfig, seed: int | None = None) -> Proposer:
    fields = config.model_dump(exclude={"kind"})
    if resolve()[0] == "claude":
        return ClaudeProposer(ClaudeConfig.model_validate(_of(ClaudeConfig, fields)))
    return MutateProposer(MutateConfig.model_validate(_of(MutateConfig, fields)), seed)


def _of(model: type[ClaudeConfig] | type[MutateConfig], fields: dict[str, object]) -> dict:
    return {k: v for k, v in fields.items() if k in model.model_fields}


KIND = Kind(AutoConfig, create)
