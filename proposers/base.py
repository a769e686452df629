"""The proposer interface: what a researcher sees (Context) and what it returns (Proposal)."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from core.ledger import Row
from core.sandbox import Sandbox
from core.study import ProposerConfig, Study
from proposers.novelty import Saved, Tried


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
        )

    def columns(self) -> dict[str, int]:
        """The ledger's token columns."""
        return {
            "tokens_in": self.input_tokens,
            "tokens_out": self.output_tokens,
            "tokens_cache_read": self.cache_read_tokens,
            "tokens_cache_write": self.cache_write_tokens,
        }


class StopCampaign(Exception):
    """A fault that must stop the whole campaign (bad credentials, spend limit, budget)."""


class InvalidProposal(Exception):
    """The proposer could not produce a usable change; the experiment is logged as invalid.

    It still cost tokens: `usage` and `cost_usd` go into the ledger row.
    """

    def __init__(self, reason: str, usage: Usage | None = None, cost_usd: float = 0.0) -> None:
        super().__init__(reason)
        self.usage = usage or Usage()
        self.cost_usd = cost_usd


@dataclass(frozen=True)
class Proposal:
    """One candidate change: the new full text of each file it changes (paths repo-relative)."""

    hypothesis: str
    files: dict[str, str]
    proposer: str
    key: str = ""  # identity of the change, so that it is never tried twice
    usage: Usage = Usage()
    cost_usd: float = 0.0


@dataclass
class Context:
    """Everything a proposer may read. Paths are relative to the repository root."""

    study: Study
    program: str
    files: dict[str, str]  # editable files at the champion
    protected: list[str]
    history: list[Row]  # ledger rows, oldest first
    learnings: str
    last_crash: str | None
    experiment: int
    workdir: Path  # root of the worktree (agent CLIs edit it in place)
    tried: set[str] = field(default_factory=set)  # keys of proposals already tried
    # proposals being evaluated right now (other slots, workers, pending A/B tests): never
    # propose one of them again; their keys are in `tried` too
    in_flight: list[Proposal] = field(default_factory=list)
    # where a proposer that runs programs (an agent CLI) runs them: the worktree writable,
    # nothing of the study's state, .git, the user's files or the tool's; None: unsandboxed
    sandbox: Sandbox | None = None
    # a tree search's node the files are taken from, when it is not the champion
    node: Row | None = None
    # what was measured (or is being measured now), normalised, to refuse a proposal that
    # repeats one (proposers.novelty); and the count of evaluations that saved, shared by the
    # contexts of a campaign
    tried_changes: list[Tried] = field(default_factory=list)
    saved: Saved = field(default_factory=Saved)
    # what the person running the study asks (`autoresearch note`): every prompt includes them
    notes: list[str] = field(default_factory=list)

    def is_protected(self, path: str) -> bool:
        """Is this repo-relative path a protected file, or inside a protected folder?"""
        path = posixpath.normpath(path)
        return any(
            path == (base := posixpath.normpath(p)) or path.startswith(base + "/")
            for p in self.protected
        )


@dataclass(frozen=True)
class Outcome:
    """What became of a proposal, for the proposer to learn from."""

    proposal: Proposal
    status: str  # keep | discard | crash | invalid | rejected
    metric: float | None
    champion_metric: float | None
    reason: str
    log_tail: str = ""


@dataclass(frozen=True)
class Learned:
    """What learn() wrote: resource.md's new text (None: the core keeps the learnings), and
    what writing it cost."""

    text: str | None = None
    usage: Usage = Usage()
    cost_usd: float = 0.0


class Proposer(Protocol):
    name: str

    def propose(self, context: Context) -> Proposal: ...

    def learn(self, context: Context, outcome: Outcome) -> Learned: ...


@dataclass(frozen=True)
class Kind:
    """A proposer kind: its study.yaml section's model and how to build one from it."""

    config: type[ProposerConfig]
    create: Callable[[ProposerConfig, int | None], Proposer]
    # False only for kinds that change nothing but numbers in the study's own files (their
    # candidates may run unsandboxed where bwrap cannot run)
    writes_code: bool = True
    # a kind that stands for another (auto): its section -> (the kind to use, why)
    resolve: Callable[[ProposerConfig], tuple[str, str]] | None = None
