"""Where changes come from: each proposer turns a Context into a Proposal."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoresearch.study import Study
    from proposers.base import Proposer

KINDS = ("auto", "mutate", "claude", "agent_cli")


def choose_kind(study: Study, override: str | None = None) -> tuple[str, str]:
    """The proposer kind to use and why: `auto` means Claude with a key, else offline `mutate`."""
    kind = override or study.config.proposer.kind
    if kind not in KINDS:
        raise ValueError(f"unknown proposer {kind!r}; choose one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind, f"proposer {kind} (asked for)"
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "claude", "proposer claude (auto: ANTHROPIC_API_KEY is set)"
    return "mutate", "proposer mutate (auto: no ANTHROPIC_API_KEY, offline mutations)"


def make_proposer(study: Study, kind: str, seed: int | None = None) -> Proposer:
    config = study.config.proposer
    if kind == "mutate":
        from proposers.mutate import MutateProposer

        return MutateProposer(config, seed)
    if kind == "claude":
        from proposers.claude import ClaudeProposer

        return ClaudeProposer(config)
    if kind == "agent_cli":
        from proposers.agent_cli import AgentCliProposer

        return AgentCliProposer(config)
    raise ValueError(f"unknown proposer {kind!r}")
