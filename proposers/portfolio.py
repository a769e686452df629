"""`portfolio`: several researchers behind one, each proposal drawn from one of them.

The members are any proposer kinds (several Claude models, `optuna`, `mutate`, an agent CLI),
each its own section with its own options, checked by its kind's own model; `name:` tells two
members of one kind apart. results.tsv names the member that proposed each row: its kind, or
`kind:name` for a named member (so `proposers.writes_code` reads a member as its kind).

Each draw, in this order:

1. the floor: a member whose share of the draws so far would fall below `floor` is drawn (the
   least drawn first), so that no member starves;
2. the hybrid (`tune_after_keep: <a numeric optimizer>`): for `tune_rounds` draws after the last
   kept change of a member that writes code, the optimizer tunes the numbers of the new champion;
3. the policy: `ucb` (UCB1) on each member's measured gain per cost, normalised by the best
   member's, or `round_robin` (the least drawn member first).

A row's gain is what a kept change gained over the champion before it (0 for every other row);
its cost is its dollars plus its time priced at `usd_per_hour`, so that an offline member's cost
is its time. A member's value is its rows' gain over their cost (sums, not a mean of ratios).
The draw reads nothing but the ledger (the context's history and the proposals in flight, which
count as draws): a restarted campaign draws as the stopped one would have, and a seed and a
history give one draw (ties broken by a generator seeded by the seed and the experiment).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.decide import Direction, gain
from core.ledger import Row, Status
from core.study import ProposerConfig, Strict
from proposers import KINDS, kind, writes_code
from proposers.base import Context, Kind, Learned, Outcome, Proposal, Proposer

log = logging.getLogger(__name__)

PORTFOLIO = "portfolio"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a member's name: no `:` or `+`, which names compose
MIN_COST = 1e-9  # a row's cost at least: a free change still has a finite value


def _problem(loc: tuple[str, ...], value: Any, message: str) -> ValidationError:
    """A validation error at `loc` inside a member's section (pydantic prefixes its place)."""
    error = PydanticCustomError("member", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "member", [InitErrorDetails(type=error, loc=loc, input=value)]
    )


class Member(Strict):
    """One member: its name (the kind's, unless given) and its section, checked by its kind."""

    name: str = Field(pattern=NAME)
    config: SerializeAsAny[ProposerConfig]

    @model_validator(mode="before")
    @classmethod
    def _its_kinds_section(cls, data: Any) -> Any:
        """`{kind: claude, name: opus, model: ...}` -> name and the kind's own config."""
        if not isinstance(data, dict) or data.keys() == {"name", "config"}:
            return data  # a Member's own fields (or not a section: the schema says so)
        section = dict(data)
        name = section.pop("name", section.get("kind"))
        chosen = section.get("kind")
        if chosen is None:
            raise _problem(("kind",), data, "each member names its kind")
        if not isinstance(chosen, str) or chosen not in KINDS:
            known = ", ".join(k for k in KINDS if k not in (PORTFOLIO, "auto"))
            raise _problem(("kind",), chosen, f"unknown kind {chosen!r}; choose one of {known}")
        if chosen == PORTFOLIO:
            raise _problem(("kind",), chosen, "a portfolio cannot be a member of a portfolio")
        try:
            found = kind(chosen)
        except ValueError as exc:  # its optional package is missing
            raise _problem(("kind",), chosen, str(exc)) from None
        if found.resolve is not None:
            raise _problem(("kind",), chosen, f"{chosen} stands for another kind: name that kind")
        return {"name": name, "config": found.config.model_validate(section)}

    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        """The section as study.yaml writes it (so that a dump validates again)."""
        return {"name": self.name, **self.config.model_dump()}

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def label(self) -> str:
        """How results.tsv names the member's rows: its kind, or `kind:name`."""
        return self.kind if self.name == self.kind else f"{self.kind}:{self.name}"

    @property
    def writes_code(self) -> bool:
        return writes_code(self.kind)


class PortfolioConfig(ProposerConfig):
    kind: Literal["portfolio"] = "portfolio"
    members: list[Member] = Field(min_length=1)
    policy: Literal["ucb", "round_robin"] = "ucb"
    floor: float = Field(0.1, ge=0, lt=1)  # each member's least share of the draws
    exploration: float = Field(1.0, ge=0)  # UCB's c: its bonus c * sqrt(2 ln N / n)
    usd_per_hour: float = Field(1.0, ge=0)  # an hour of an experiment, priced beside its dollars
    tune_after_keep: str | None = None  # a member (a numeric optimizer) to run after a model keep
    tune_rounds: int = Field(3, ge=1)  # its draws after each such keep

    @field_validator("members")
    @classmethod
    def _apart(cls, members: list[Member]) -> list[Member]:
        seen: dict[str, int] = {}
        for i, member in enumerate(members):
            if (other := seen.setdefault(member.label, i)) != i:
                raise ValueError(
                    f"members {other} and {i} are both called {member.label}: give each its own "
                    "`name:`"
                )
        return members

    @field_validator("floor")
    @classmethod
    def _a_share_for_each(cls, floor: float, info: ValidationInfo) -> float:
        members = info.data.get("members") or []
        if floor * len(members) > 1:
            raise ValueError(f"{len(members)} members cannot each have {floor} of the draws")
        return floor

    @field_validator("tune_after_keep")
    @classmethod
    def _an_optimizer(cls, name: str | None, info: ValidationInfo) -> str | None:
        members: list[Member] = info.data.get("members") or []
        if name is None or not members:
            return name
        found = [m for m in members if name in (m.name, m.label)]
        if not found:
            names = ", ".join(m.name for m in members)
            raise ValueError(f"{name!r} is not a member; choose one of {names}")
        if found[0].writes_code:
            raise ValueError(f"{name} writes code: name a numeric optimizer (mutate, optuna)")
        return name

    def member(self, name: str) -> Member:
        return next(m for m in self.members if name in (m.name, m.label))


# What the ledger says of each member ------------------------------------------------------


def row_gains(rows: Sequence[Row], direction: Direction) -> list[float]:
    """Each row's gain: a kept change's improvement on the champion before it (never negative;
    0 for the baseline, which follows no champion), 0 for every other row."""
    gains, champion = [], None
    for row in rows:
        up = 0.0
        if row.kept:
            if champion is not None:
                up = max(0.0, gain(direction, row.metric, champion))
            champion = row.metric
        gains.append(up)
    return gains


@dataclass
class Tally:
    """One member's record: its draws (rows and proposals in flight), rows, keeps, what they
    gained and what they cost."""

    draws: int = 0
    rows: int = 0
    keeps: int = 0
    gain: float = 0.0
    usd: float = 0.0
    seconds: float = 0.0

    def cost(self, usd_per_hour: float) -> float:
        return self.usd + self.seconds * usd_per_hour / 3600

    def value(self, usd_per_hour: float) -> float:
        """Gain per cost."""
        return self.gain / max(self.cost(usd_per_hour), MIN_COST)


def tallies(
    labels: Sequence[str], history: Sequence[Row], in_flight: Sequence[str], direction: Direction
) -> dict[str, Tally]:
    """Each member's Tally, by label: its rows in the ledger, its proposals in flight."""
    out = {label: Tally() for label in labels}
    for row, up in zip(history, row_gains(history, direction), strict=True):
        tally = out.get(row.proposer)
        if tally is None or row.status == Status.HOLDOUT:
            continue
        tally.draws += 1
        tally.rows += 1
        tally.keeps += row.kept
        tally.gain += up
        tally.usd += row.cost_usd
        tally.seconds += row.duration_s
    for label in in_flight:
        if label in out:
            out[label].draws += 1
    return out


# The draw --------------------------------------------------------------------------------


def draw(
    config: PortfolioConfig,
    history: Sequence[Row],
    in_flight: Sequence[str],
    direction: Direction,
    rng: random.Random,
) -> tuple[Member, str]:
    """The member to ask next, and why (floor, tuning, or the policy's score)."""
    members = config.members
    counts = tallies([m.label for m in members], history, in_flight, direction)
    total = sum(t.draws for t in counts.values())
    starved = [m for m in members if counts[m.label].draws < config.floor * (total + 1)]
    if starved:
        member = min(starved, key=lambda m: counts[m.label].draws)
        return member, f"its floor of {config.floor:g} of the draws"
    tuner = _tuning(config, history, in_flight)
    if tuner is not None:
        return tuner, "tuning the numbers of a kept change"
    if config.policy == "round_robin":
        member = min(members, key=lambda m: counts[m.label].draws)
        return member, "its turn"
    values = {m.label: counts[m.label].value(config.usd_per_hour) for m in members}
    best = max(values.values())
    scores: dict[str, float] = {}
    for m in members:
        tally = counts[m.label]
        if tally.draws == 0:
            scores[m.label] = math.inf
            continue
        mean = values[m.label] / best if best > 0 else 0.0
        scores[m.label] = mean + config.exploration * math.sqrt(2 * math.log(total) / tally.draws)
    top = max(scores.values())
    tied = [m for m in members if scores[m.label] >= top - 1e-12]
    member = tied[0] if len(tied) == 1 else rng.choice(tied)
    return member, f"UCB {scores[member.label]:.3g} (gain per cost {values[member.label]:.3g})"


def _tuning(
    config: PortfolioConfig, history: Sequence[Row], in_flight: Sequence[str]
) -> Member | None:
    """The optimizer, while it has had fewer than `tune_rounds` draws since the last kept change
    of a member that writes code."""
    if config.tune_after_keep is None:
        return None
    tuner = config.member(config.tune_after_keep)
    models = {m.label for m in config.members if m.writes_code}
    kept = [i for i, row in enumerate(history) if row.kept and row.proposer in models]
    if not kept:
        return None
    since = sum(row.proposer == tuner.label for row in history[kept[-1] + 1 :])
    since += sum(label == tuner.label for label in in_flight)
    return tuner if since < config.tune_rounds else None


# The proposer ----------------------------------------------------------------------------

# the member this context's last draw chose (portfolio, label): the lab names an invalid
# proposal's row by `researcher.name`, read in the context (the thread) that proposed
_DRAWN: ContextVar[tuple[int, str] | None] = ContextVar("portfolio_drawn", default=None)


class PortfolioProposer:
    """Asks one member per proposal; the member's own learn() for what it proposed."""

    def __init__(self, config: PortfolioConfig, seed: int | None = None) -> None:
        self.config = config
        self.seed = config.seed if seed is None else seed
        self.members: dict[str, Proposer] = {}
        for member in config.members:  # a seed given now, else the member's, else ours
            own = seed
            if own is None and "seed" not in member.config.model_fields_set:
                own = config.seed
            self.members[member.label] = kind(member.kind).create(member.config, own)

    @property
    def name(self) -> str:
        """The member drawn last in this context (an invalid proposal's row is its); else
        `portfolio:` and the members, which `proposers.writes_code` reads."""
        drawn = _DRAWN.get()
        if drawn is not None and drawn[0] == id(self):
            return drawn[1]
        return f"{PORTFOLIO}:" + "+".join(self.members)

    def draw(self, context: Context) -> tuple[Member, str]:
        rng = random.Random(f"{self.seed}:{context.experiment}")
        flying = [p.proposer for p in context.in_flight]
        direction = context.study.metric.direction
        return draw(self.config, context.history, flying, direction, rng)

    def propose(self, context: Context) -> Proposal:
        member, why = self.draw(context)
        _DRAWN.set((id(self), member.label))
        log.info("experiment %d: %s proposes (%s)", context.experiment, member.label, why)
        proposal = self.members[member.label].propose(context)
        return replace(proposal, proposer=member.label)

    def learn(self, context: Context, outcome: Outcome) -> Learned:
        """The member that proposed it learns (its resource.md); else the core does."""
        researcher = self.members.get(outcome.proposal.proposer)
        if researcher is None:
            return Learned()
        own = replace(outcome.proposal, proposer=researcher.name)
        return researcher.learn(context, replace(outcome, proposal=own))


def create(config: PortfolioConfig, seed: int | None = None) -> PortfolioProposer:
    return PortfolioProposer(config, seed)


# writes code when a member does: proposers.writes_code reads the proposer's name for that
KIND = Kind(PortfolioConfig, create)
