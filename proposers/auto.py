"""`auto`: Claude when ANTHROPIC_API_KEY is set, else an offline proposer: `mutate`, or the one
the study names under `offline:` (its own section, e.g. an agent_cli script of the study).

Its section may carry the options of both mutate and claude, since either may run.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import ValidationError, field_validator

from proposers.base import Kind, Proposer
from proposers.claude import ClaudeConfig
from proposers.mutate import MutateConfig

OFFLINE = ("mutate", "optuna", "agent_cli")


class AutoConfig(MutateConfig, ClaudeConfig):
    kind: Literal["auto"] = "auto"  # type: ignore[assignment]
    offline: dict[str, Any] | None = None  # the proposer section used without a key

    @field_validator("offline")
    @classmethod
    def _an_offline_proposer(cls, section: dict[str, Any] | None) -> dict[str, Any] | None:
        if section is None:
            return None
        name = section.get("kind")
        if name not in OFFLINE:
            raise ValueError(f"kind must be one of {', '.join(OFFLINE)} (got {name!r})")
        from proposers import kind

        try:
            kind(name).config.model_validate(section)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(problems) from None
        return section


def resolve(config: AutoConfig) -> tuple[str, str]:
    """The kind `auto` means here and now, and why."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "claude", "proposer claude (auto: ANTHROPIC_API_KEY is set)"
    if config.offline:
        name = config.offline["kind"]
        return name, f"proposer {name} (auto: no ANTHROPIC_API_KEY, the study's offline proposer)"
    return "mutate", "proposer mutate (auto: no ANTHROPIC_API_KEY, offline mutations)"


def create(config: AutoConfig, seed: int | None = None) -> Proposer:
    """Never a proposer of its own: `auto` is resolved to a kind first (proposers.choose_kind)."""
    raise ValueError("auto is not a proposer: resolve it with proposers.choose_kind first")


KIND = Kind(AutoConfig, create, resolve=resolve)
