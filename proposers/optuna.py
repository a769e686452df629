"""`optuna`: the study's numeric knobs searched by an Optuna sampler, or by CMA-ES (cmaes).

The knobs are the literals `mutate` would move (limited by `mutate_lines`), or those named in
`knobs`, each with an optional range. The ledger is the search's only memory: on every proposal
the measured points are read back from the rows' keys (`optuna loc=value ...`; discarded
candidates count, crashes are failures), the champion joins them as a measured point, and the
sampler asks for the next point. So a restarted campaign resumes where it stopped, the same seed
and history give the same proposal, and a point already measured or in flight (same values as
written) is never proposed again. Keep or discard is the study's decision rule, as for any
proposer.

Samplers: `tpe` (the default), `cmaes`, `gp` (Optuna's Gaussian process: the fewest
experiments on smooth studies with a few knobs, bench/search.py; needs torch) and `random`
(a baseline). `startup`: how many measured points tpe and gp sample at random before modelling.

Default range of a knob without one, around its value when the search started (v): v/10 to 10v
on a log scale; 0 to 1 (an integer: 0 to 10) for a zero. An explicit range [low, high] is on a
log scale when high >= 100 low > 0. Integers stay integers.

CMA-ES runs through the cmaes package directly, not optuna's CmaEsSampler: that sampler keeps its
state (the optimizer and its generations) in trial attributes that points read back from a
ledger cannot carry. Here the measured points are told to a fresh `cmaes.CMA` generation by
generation, in the ledger's order, which rebuilds the same state every time; it starts at the
knobs' values when the search started, with a step of a sixth of each range.
"""

from __future__ import annotations

import importlib.util
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial
from pydantic import Field, field_validator

from core.ledger import Row, Status
from core.study import ProposerConfig
from proposers.base import Context, InvalidProposal, Kind, Learned, Outcome, Proposal, StopCampaign
from proposers.mutate import Number, format_like, knob_literals, literals, replace_at

optuna.logging.set_verbosity(optuna.logging.WARNING)

KEY_PREFIX = "optuna "
PAIR_RE = re.compile(r"(\S+:\d+:\d+)=(\S+)")  # loc=value, in a key
MOVE_RE = re.compile(r"(\S+:\d+:\d+) (\S+) -> ")  # `loc old -> new`, in a description
LOCATION_RE = re.compile(r"^(.+):(\d+):(\d+)$")
LOG_RATIO = 100.0  # an explicit range this wide (high / low) is searched on a log scale
MEASURED = (Status.KEEP, Status.DISCARD)  # rows whose metric is a measurement
ATTEMPTS = 100  # asks before giving up on finding a point not yet measured
CMA_SIGMA = 1 / 6  # CMA-ES's first step, as a fraction of each knob's range

Distribution = FloatDistribution | IntDistribution
Point = dict[str, float]  # location -> value


class OptunaConfig(ProposerConfig):
    kind: Literal["optuna"] = "optuna"
    sampler: Literal["tpe", "cmaes", "gp", "random"] = "tpe"  # random: a baseline
    # knob -> [low, high] or null (the default range); a knob is `NAME` (the first number on
    # the line `NAME = ...` or `NAME: ...`) or a location `path:line:k` (path relative to the
    # study folder or the repository). Empty: every literal (on `mutate_lines`).
    knobs: dict[str, tuple[float, float] | None] = {}
    mutate_lines: list[str] = []  # regexes: only numbers on matching lines are knobs
    startup: int = Field(5, ge=1)  # tpe, gp: points measured before modelling them

    @field_validator("knobs")
    @classmethod
    def _ranges(
        cls, knobs: dict[str, tuple[float, float] | None]
    ) -> dict[str, tuple[float, float] | None]:
        for name, bounds in knobs.items():
            if bounds is not None and not 0 <= bounds[0] < bounds[1]:
                raise ValueError(f"{name}: a range is [low, high] with 0 <= low < high")
        return knobs


# Knobs and their ranges -----------------------------------------------------------------


def at_location(files: dict[str, str], name: str, repo_path: Callable[[str], str]) -> list[Number]:
    """The literal at `path:line:k`, the path relative to the study folder or the repository."""
    m = LOCATION_RE.match(name)
    assert m is not None
    path, line, k = m.group(1), int(m.group(2)), int(m.group(3))
    path = repo_path(path) if repo_path(path) in files else path
    return [lit for lit in literals(path, files.get(path, "")) if (lit.line, lit.k) == (line, k)]


def assigned(files: dict[str, str], name: str) -> list[Number]:
    """The first literal of each line that sets `name` (`NAME = ...`, `NAME: ...`)."""
    sets = re.compile(rf"^\s*{re.escape(name)}\s*[:=]")
    return [
        on_line[0]
        for path, text in sorted(files.items())
        for i, line in enumerate(text.splitlines(), 1)
        if sets.match(line) and (on_line := [n for n in literals(path, text) if n.line == i])
    ]


def named(files: dict[str, str], name: str, repo_path: Callable[[str], str]) -> Number:
    """The literal a `knobs` entry names; a StopCampaign when it names none, or several."""
    is_location = LOCATION_RE.match(name) is not None
    found = at_location(files, name, repo_path) if is_location else assigned(files, name)
    if len(found) != 1:
        why = "matches no number" if not found else f"matches {len(found)} numbers"
        raise StopCampaign(f"proposer.knobs: {name!r} {why} in the editable files")
    return found[0]


def default_range(value: float, integer: bool) -> Distribution:
    """Around the value the search started from: a decade either side, on a log scale."""
    if value == 0:
        return IntDistribution(0, 10) if integer else FloatDistribution(0.0, 1.0)
    if integer:
        low, high = max(1, math.floor(value / 10)), math.ceil(value * 10)
        return IntDistribution(low, max(high, low + 1), log=True)
    return FloatDistribution(value / 10, value * 10, log=True)


def given_range(name: str, bounds: tuple[float, float], integer: bool) -> Distribution:
    """A range from `knobs`: on a log scale when it spans two decades or more."""
    low, high = bounds
    log = low > 0 and high >= LOG_RATIO * low
    if not integer:
        return FloatDistribution(low, high, log=log)
    if math.ceil(low) >= math.floor(high):
        raise StopCampaign(f"proposer.knobs: {name} is an integer; {list(bounds)} holds < 2")
    return IntDistribution(math.ceil(low), math.floor(high), log=log)


def widened(dist: Distribution, values: list[float]) -> Distribution:
    """A default range stretched over every value measured (or now in the champion)."""
    low, high = min([dist.low, *values]), max([dist.high, *values])
    log = dist.log and low > 0
    if isinstance(dist, IntDistribution):
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(low, high, log=log)


def contains(dist: Distribution, value: float) -> bool:
    return dist.low <= value <= dist.high


# The ledger as the search's history -------------------------------------------------------


def point_of(key: str) -> Point | None:
    """The point an optuna row measured, read from its key."""
    if not key.startswith(KEY_PREFIX):
        return None
    return {loc: float(value) for loc, value in PAIR_RE.findall(key)}


def starts(history: list[Row]) -> dict[str, str]:
    """Each knob's value when the search first moved it (the descriptions' `loc old -> new`)."""
    found: dict[str, str] = {}
    for row in history:
        if point_of(row.key) is not None:
            for loc, old in MOVE_RE.findall(row.description):
                found.setdefault(loc, old)
    return found


@dataclass(frozen=True)
class Measured:
    """A point the ledger shows measured: its value, or None for a crash or a rejection."""

    point: Point
    value: float | None


def measured(history: list[Row]) -> dict[str, Measured]:
    """Every point the search measured, by key, oldest first."""
    return {
        row.key: Measured(point, row.metric if row.status in MEASURED else None)
        for row in history
        if (point := point_of(row.key)) is not None
    }


def key_of(texts: dict[str, str]) -> str:
    """The identity of a point: every knob's value as written in the file."""
    return KEY_PREFIX + " ".join(f"{loc}={text}" for loc, text in texts.items())


# The samplers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    """The knobs (in a fixed order) and each one's distribution."""

    knobs: list[Number]
    dists: dict[str, Distribution]

    def write(self, params: dict[str, float]) -> dict[str, str]:
        """Each value as its literal will be written (an integer stays an integer)."""
        return {lit.location: format_like(params[lit.location], lit.text) for lit in self.knobs}

    def fits(self, point: Point) -> bool:
        return point.keys() == self.dists.keys() and all(
            contains(self.dists[loc], v) for loc, v in point.items()
        )


def trial(space: Space, m: Measured) -> FrozenTrial:
    params = {
        loc: int(v) if isinstance(space.dists[loc], IntDistribution) else v
        for loc, v in m.point.items()
    }
    state = TrialState.COMPLETE if m.value is not None else TrialState.FAIL
    return create_trial(state=state, value=m.value, params=params, distributions=space.dists)


def optuna_asks(
    space: Space, sampler: optuna.samplers.BaseSampler, history: dict[str, Measured], direction: str
) -> Iterator[dict[str, float]]:
    """Optuna's points, one ask at a time; a point already measured is told its value."""
    study = optuna.create_study(direction=direction, sampler=sampler)
    study.add_trials([trial(space, m) for m in history.values() if space.fits(m.point)])
    for _ in range(ATTEMPTS):
        asked = study.ask(space.dists)
        key = key_of(space.write(asked.params))
        yield asked.params
        known = history.get(key)
        if known is None or known.value is None:
            study.tell(asked, state=TrialState.FAIL)
        else:
            study.tell(asked, known.value)


def unit_bounds(dist: Distribution) -> tuple[float, float]:
    """The range CMA-ES sees: of the logarithm on a log scale; an integer's, half a step wider."""
    low, high = dist.low, dist.high
    if isinstance(dist, IntDistribution):
        low, high = low - 0.5, high + 0.5
    return (math.log(low), math.log(high)) if dist.log else (low, high)


def to_unit(dist: Distribution, value: float) -> float:
    """A value as a fraction of its range."""
    low, high = unit_bounds(dist)
    value = min(max(value, dist.low), dist.high)
    return ((math.log(value) if dist.log else value) - low) / (high - low)


def from_unit(dist: Distribution, u: float) -> float:
    low, high = unit_bounds(dist)
    value = low + min(max(u, 0.0), 1.0) * (high - low)
    value = min(max(math.exp(value) if dist.log else value, dist.low), dist.high)
    return float(round(value)) if isinstance(dist, IntDistribution) else value


def cma_asks(
    space: Space, start: Point, history: dict[str, Measured], direction: str, seed: int
) -> Iterator[dict[str, float]]:
    """CMA-ES's points: the measured ones told generation by generation, then asks."""
    from cmaes import CMA  # its import costs half a second: only when asked for

    locs = list(space.dists)
    sign = 1.0 if direction == "minimize" else -1.0
    mean = np.array([to_unit(space.dists[loc], start[loc]) for loc in locs])
    bounds = np.array([[0.0, 1.0]] * len(locs))
    cma = CMA(mean=np.clip(mean, 0.0, 1.0), sigma=CMA_SIGMA, bounds=bounds, seed=seed)
    told = [
        (np.array([to_unit(space.dists[loc], m.point[loc]) for loc in locs]), sign * m.value)
        for m in history.values()
        if m.value is not None and space.fits(m.point)
    ]
    size = cma.population_size
    for g in range(len(told) // size):
        cma.tell(told[g * size : (g + 1) * size])
    for _ in range(ATTEMPTS):
        x = cma.ask()
        yield {loc: from_unit(space.dists[loc], u) for loc, u in zip(locs, x, strict=True)}


# The proposer ----------------------------------------------------------------------------


class OptunaProposer:
    name = "optuna"

    def __init__(self, config: OptunaConfig, seed: int | None = None) -> None:
        self.config = config
        self.seed = config.seed if seed is None else seed

    def propose(self, context: Context) -> Proposal:
        space, champion = self._space(context)
        history = measured(context.history)
        busy = context.tried | {key_of(space.write(champion))}  # in-flight keys included
        for params in self._asks(context, space, champion, history):
            texts = space.write(params)
            key = key_of(texts)
            if key not in history and key not in busy:
                return self._proposal(context, space, texts, key)
        raise InvalidProposal(f"no point left unmeasured after {ATTEMPTS} asks")

    def _asks(
        self, context: Context, space: Space, champion: Point, history: dict[str, Measured]
    ) -> Iterator[dict[str, float]]:
        """The sampler's points, best guess first, for this seed, experiment and history."""
        seed = random.Random(f"{self.seed}:{context.experiment}").randrange(2**31)
        direction = context.study.metric.direction
        if self.config.sampler == "cmaes":
            start = {loc: float(v) for loc, v in starts(context.history).items()}
            return cma_asks(space, champion | start, history, direction, seed)
        if self.config.sampler == "random":
            sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=seed)
        elif self.config.sampler == "gp":
            if importlib.util.find_spec("torch") is None:
                raise StopCampaign("proposer.sampler gp needs torch: pip install -e '.[torch]'")
            sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.config.startup)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.config.startup)
        kept = [r.metric for r in context.history if r.kept]
        known = dict(history)
        if kept:  # the champion is a measured point too (the baseline, or another's change)
            known.setdefault(key_of(space.write(champion)), Measured(champion, kept[-1]))
        return optuna_asks(space, sampler, known, direction)

    def _knobs(self, context: Context) -> tuple[list[Number], dict[str, tuple[float, float]]]:
        """The knobs, and the ranges given for some of them (by location)."""
        if not self.config.knobs:
            return knob_literals(context.files, self.config.mutate_lines), {}
        repo_path = context.study.repo_path
        found = {name: named(context.files, name, repo_path) for name in self.config.knobs}
        given = {
            lit.location: bounds
            for name, lit in found.items()
            if (bounds := self.config.knobs[name]) is not None
        }
        knobs = sorted(set(found.values()), key=lambda lit: (lit.path, lit.line, lit.k))
        return knobs, given

    def _space(self, context: Context) -> tuple[Space, Point]:
        """The search space, and the champion's point in it."""
        knobs, given = self._knobs(context)
        if not knobs:
            raise InvalidProposal("no numeric literal to search in any editable file")
        champion = {lit.location: lit.value for lit in knobs}
        begun = starts(context.history)
        seen = [point_of(r.key) or {} for r in context.history] + [champion]
        dists: dict[str, Distribution] = {}
        for lit in knobs:
            loc = lit.location
            if loc in given:
                dists[loc] = given_range(loc, given[loc], lit.is_int)
                continue
            start = float(begun.get(loc, lit.value))
            values = [p[loc] for p in seen if loc in p]
            dists[loc] = widened(default_range(start, lit.is_int), values)
        return Space(knobs, dists), champion

    def _proposal(
        self, context: Context, space: Space, texts: dict[str, str], key: str
    ) -> Proposal:
        files = dict(context.files)
        moves = []
        for lit in sorted(space.knobs, key=lambda lit: (lit.line, lit.start), reverse=True):
            new = texts[lit.location]
            if new != lit.text:
                files[lit.path] = replace_at(files[lit.path], lit, new)
                moves.append(f"{lit.location} {lit.text} -> {new}")
        changed = {p: t for p, t in files.items() if t != context.files[p]}
        hypothesis = f"optuna {self.config.sampler}: " + ", ".join(reversed(moves))
        return Proposal(hypothesis, changed, self.name, key)

    def learn(self, context: Context, outcome: Outcome) -> Learned:
        return Learned()  # the core writes the offline summary


KIND = Kind(OptunaConfig, OptunaProposer, writes_code=False)  # numbers in the study's files
