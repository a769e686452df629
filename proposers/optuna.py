"""`optuna`: the study's numeric knobs searched by an Optuna sampler, or by CMA-ES (cmaes).

The knobs are the literals `mutate` would move (limited by `mutate_lines`), or those named in
`knobs`, each with an optional range. The ledger is the search's only memory: on every proposal
the measured points are read back from the rows' keys (`optuna loc=value ...`; discarded
candidates count, crashes are failures), the champion joins them as a measured point, and the
sampler asks for the next point. So a restarted campaign resumes where it stopped, the same seed
and history give the same proposal, and a point already measured or in flight (same values as
written) is never proposed again; the points in flight are the sampler's running trials, so
that gp asks away from them. A sampler that keeps asking for points already measured (its best,
at the edge of the range) gets random ones after MODEL_ASKS asks. Keep or discard is the
study's decision rule, as for any proposer.

Samplers: `auto` (the default), `gp` (Optuna's Gaussian process; needs torch), `tpe`, `cmaes`
and `random` (a baseline). `auto` is `gp` when torch imports and there are at most GP_KNOBS
knobs, else `tpe` (no error without torch): gp needs the fewest experiments on every study of
bench/search.py, by itself and with the quadratic steps; GP_KNOBS bounds the cost of its asks
(a fit, and a search over every knob), where tpe's stays small. `startup`: how many measured
points tpe and gp sample at random before modelling.

Quadratic steps (`quadratic`, on by default; tpe and gp): once the ledger holds more measured
points than a quadratic of the knobs has coefficients (10 for three knobs), a proposal may be
the minimum of a quadratic fitted (least squares) to the points nearest the best one, in each
knob's range scaled to [0, 1], a step no longer than their spread, before the sampler's points:
again after a keep, QUADRATIC_WAIT experiments after a miss. Its rows read `optuna quadratic:`.
It is the fast last stretch the samplers lack on a smooth study (bench/search.py: gp 14 -> 12
experiments on the bowl, 28 -> 13.5 on the template; tpe 65.5 -> 12 on the bowl).

Default range of a knob without one, around its value when the search started (v): v/10 to 10v
on a linear scale (an integer: from 1 at least); 0 to 1 (an integer: 0 to 10) for a zero. Not
a log scale: that one spends half the range below v and stretches the values above it, and on
bench/search.py's `hidden` (its bowl without ranges) gp then needed 81 experiments, 12.5 on this
one. A knob better searched on a log scale (a learning rate) is given its range: [low, high] is
on a log scale when high >= 100 low > 0. Integers stay integers.

CMA-ES runs through the cmaes package directly, not optuna's CmaEsSampler: that sampler keeps its
state (the optimizer and its generations) in trial attributes that points read back from a
ledger cannot carry. Here the measured points are told to a fresh `cmaes.CMA` generation by
generation, in the ledger's order, which rebuilds the same state every time; it starts at the
knobs' values when the search started, with a step of a sixth of each range.
"""

from __future__ import annotations

import functools
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
MODEL_ASKS = 5  # a model's asks of points already measured before random ones take over
CMA_SIGMA = 1 / 6  # CMA-ES's first step, as a fraction of each knob's range
GP_KNOBS = 32  # auto: gp up to this many knobs (torch permitting), tpe beyond
QUADRATIC = "optuna quadratic: "  # the description of a quadratic step
QUADRATIC_WAIT = 4  # experiments after a quadratic step that missed before the next one

Distribution = FloatDistribution | IntDistribution
Point = dict[str, float]  # location -> value


class OptunaConfig(ProposerConfig):
    kind: Literal["optuna"] = "optuna"
    # auto: gp with torch and at most GP_KNOBS knobs, else tpe; random: a baseline
    sampler: Literal["auto", "gp", "tpe", "cmaes", "random"] = "auto"
    # knob -> [low, high] or null (the default range); a knob is `NAME` (the first number on
    # the line `NAME = ...` or `NAME: ...`) or a location `path:line:k` (path relative to the
    # study folder or the repository). Empty: every literal (on `mutate_lines`).
    knobs: dict[str, tuple[float, float] | None] = {}
    mutate_lines: list[str] = []  # regexes: only numbers on matching lines are knobs
    startup: int = Field(5, ge=1)  # tpe, gp: points measured before modelling them
    quadratic: bool = True  # tpe, gp: steps to the minimum of a quadratic fitted to the ledger

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
    """Around the value the search started from: a tenth to ten times it, on a linear scale."""
    if value == 0:
        return IntDistribution(0, 10) if integer else FloatDistribution(0.0, 1.0)
    if integer:
        low, high = max(1, math.floor(value / 10)), math.ceil(value * 10)
        return IntDistribution(low, max(high, low + 1))
    return FloatDistribution(value / 10, value * 10)


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


def moves_of(key: str) -> dict[str, str] | None:
    """The knobs a numeric proposer's row set, as written: the `loc=value` pairs of optuna's key
    or mutate's; None for a row of any other proposer."""
    body = key.removeprefix(KEY_PREFIX)
    pairs = PAIR_RE.findall(body)
    if not pairs or " ".join(f"{loc}={value}" for loc, value in pairs) != body:
        return None
    return dict(pairs)


def starts(history: list[Row]) -> dict[str, str]:
    """Each knob's value when a numeric proposer first moved it (the descriptions'
    `loc old -> new`)."""
    found: dict[str, str] = {}
    for row in history:
        if moves_of(row.key) is not None:
            for loc, old in MOVE_RE.findall(row.description):
                found.setdefault(loc, old)
    return found


@dataclass(frozen=True)
class Measured:
    """A point the ledger shows measured: its value, or None for a crash or a rejection."""

    point: Point
    value: float | None


def measured(history: list[Row], knobs: list[Number]) -> dict[str, Measured]:
    """Every point of the knobs measured, by key, oldest first: each row of a numeric proposer
    (optuna's or mutate's) is the node it was built on (its parent, else the champion then)
    with its moves. So the members of a portfolio search on each other's measurements."""
    locations = [lit.location for lit in knobs]
    begun = starts(history)
    champion = {lit.location: begun.get(lit.location, lit.text) for lit in knobs}
    at: dict[str, dict[str, str]] = {}  # commit -> its knobs, as written
    found: dict[str, Measured] = {}
    for row in history:
        moves = moves_of(row.key)
        if moves is None or not moves.keys() <= set(locations):
            continue
        texts = at.get(row.parent, champion) | moves
        if row.commit:
            at[row.commit] = texts
        if row.kept:
            champion = texts
        written = {loc: texts[loc] for loc in locations}
        point = {loc: float(text) for loc, text in written.items()}
        value = row.metric if row.status in MEASURED else None
        found[key_of(written)] = Measured(point, value)
    return found


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


def params_of(space: Space, point: Point) -> dict[str, float]:
    return {
        loc: int(v) if isinstance(space.dists[loc], IntDistribution) else v
        for loc, v in point.items()
    }


def trial(space: Space, m: Measured) -> FrozenTrial:
    state = TrialState.COMPLETE if m.value is not None else TrialState.FAIL
    params = params_of(space, m.point)
    return create_trial(state=state, value=m.value, params=params, distributions=space.dists)


def running(space: Space, point: Point) -> FrozenTrial:
    """A point in flight, as a trial not yet finished."""
    params = params_of(space, point)
    return create_trial(state=TrialState.RUNNING, params=params, distributions=space.dists)


def optuna_asks(
    space: Space,
    sampler: optuna.samplers.BaseSampler,
    history: dict[str, Measured],
    direction: str,
    seed: int,
    pending: list[Point],
) -> Iterator[dict[str, float]]:
    """Optuna's points, one ask at a time; a point already measured is told its value. The
    points in flight are running trials (gp asks away from them). After MODEL_ASKS points
    already measured or in flight (a model asking again for its best, at the edge of the range
    say), random points: the proposal is not a hundred model fits away."""
    study = optuna.create_study(direction=direction, sampler=sampler)
    study.add_trials([trial(space, m) for m in history.values() if space.fits(m.point)])
    study.add_trials([running(space, p) for p in pending if space.fits(p)])
    for n in range(1, ATTEMPTS + 1):
        asked = study.ask(space.dists)
        key = key_of(space.write(asked.params))
        yield asked.params
        known = history.get(key)
        if known is None or known.value is None:
            study.tell(asked, state=TrialState.FAIL)
        else:
            study.tell(asked, known.value)
        if n == MODEL_ASKS:
            study.sampler = optuna.samplers.RandomSampler(seed=seed)


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


def quadratic_step(space: Space, history: dict[str, Measured], direction: str) -> Point | None:
    """The minimum of a quadratic fitted (least squares) to the measured points nearest the best
    one, in each knob's range scaled to [0, 1], a step from the best no longer than their spread;
    None while the points are no more than its coefficients, or when the fit has no minimum."""
    locs = list(space.dists)
    pairs = [(i, j) for i in range(len(locs)) for j in range(i, len(locs))]
    size = 1 + len(locs) + len(pairs)  # a quadratic's coefficients
    points = [m for m in history.values() if m.value is not None and space.fits(m.point)]
    if len(points) <= size:
        return None
    x = np.array([[to_unit(space.dists[loc], m.point[loc]) for loc in locs] for m in points])
    y = np.array([m.value for m in points]) * (1.0 if direction == "minimize" else -1.0)
    best = x[int(np.argmin(y))]
    distance = np.linalg.norm(x - best, axis=1)
    near = np.argsort(distance, kind="stable")[: 2 * size]
    z = x[near] - best
    features = np.column_stack([np.ones(len(z)), z, *(z[:, i] * z[:, j] for i, j in pairs)])
    coefficients = np.linalg.lstsq(features, y[near], rcond=None)[0]
    gradient, hessian = coefficients[1 : 1 + len(locs)], np.zeros((len(locs), len(locs)))
    for c, (i, j) in zip(coefficients[1 + len(locs) :], pairs, strict=True):
        hessian[i, j] += c  # c z_i z_j: the Hessian's (i, j) and (j, i) are c; (i, i) is 2c
        hessian[j, i] += c
    try:
        np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        return None  # not convex: no minimum to step to
    step = -np.linalg.solve(hessian, gradient)
    step *= min(1.0, float(distance[near].max()) / max(float(np.abs(step).max()), 1e-12))
    unit = np.clip(best + step, 0.0, 1.0)
    return {loc: from_unit(space.dists[loc], float(u)) for loc, u in zip(locs, unit, strict=True)}


def quadratic_due(history: list[Row], experiment: int) -> bool:
    """A quadratic step now: none taken yet, the last one kept, or QUADRATIC_WAIT experiments
    have gone to the sampler since it missed."""
    steps = [r for r in history if r.description.startswith(QUADRATIC)]
    return not steps or steps[-1].kept or experiment - steps[-1].experiment > QUADRATIC_WAIT


@functools.cache
def has_torch() -> bool:
    """Whether torch imports (optuna's GP sampler needs it)."""
    try:
        import torch  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def auto_sampler(knobs: int) -> str:
    """`auto`'s sampler for this many knobs: gp (torch permitting) up to GP_KNOBS, else tpe."""
    return "gp" if knobs <= GP_KNOBS and has_torch() else "tpe"


# The proposer ----------------------------------------------------------------------------


class OptunaProposer:
    name = "optuna"

    def __init__(self, config: OptunaConfig, seed: int | None = None) -> None:
        self.config = config
        self.seed = config.seed if seed is None else seed

    def sampler(self, space: Space) -> str:
        """The sampler this search uses: the configured one, `auto` resolved."""
        if self.config.sampler == "auto":
            return auto_sampler(len(space.knobs))
        if self.config.sampler == "gp" and not has_torch():
            raise StopCampaign("proposer.sampler gp needs torch: pip install -e '.[torch]'")
        return self.config.sampler

    def propose(self, context: Context) -> Proposal:
        space, champion = self._space(context)
        history = measured(context.history, space.knobs)
        busy = context.tried | {key_of(space.write(champion))}  # in-flight keys included
        sampler = self.sampler(space)
        for label, params in self._asks(context, space, champion, history, sampler):
            texts = space.write(params)
            key = key_of(texts)
            if key not in history and key not in busy:
                return self._proposal(context, space, texts, key, label)
        raise InvalidProposal(f"no point left unmeasured after {ATTEMPTS} asks")

    def _asks(
        self,
        context: Context,
        space: Space,
        champion: Point,
        history: dict[str, Measured],
        sampler: str,
    ) -> Iterator[tuple[str, dict[str, float]]]:
        """The points to propose, best guess first, for this seed, experiment and history: a
        quadratic step when one is due, then the sampler's points; each with its label."""
        seed = random.Random(f"{self.seed}:{context.experiment}").randrange(2**31)
        direction = context.study.metric.direction
        if sampler == "cmaes":
            start = {loc: float(v) for loc, v in starts(context.history).items()}
            yield from (
                ("cmaes", p) for p in cma_asks(space, champion | start, history, direction, seed)
            )
            return
        kept = [r.metric for r in context.history if r.kept]
        known = dict(history)
        if kept:  # the champion is a measured point too (the baseline, or another's change)
            known.setdefault(key_of(space.write(champion)), Measured(champion, kept[-1]))
        quadratic = sampler != "random" and self.config.quadratic
        if quadratic and quadratic_due(context.history, context.experiment):
            step = quadratic_step(space, known, direction)
            if step is not None:
                yield "quadratic", step
        flying = [point_of(p.key) for p in context.in_flight]
        pending = [p for p in flying if p is not None and key_of(space.write(p)) not in known]
        optimizer = self._optuna(sampler, seed)
        asks = optuna_asks(space, optimizer, known, direction, seed, pending)
        yield from ((sampler, p) for p in asks)

    def _optuna(self, sampler: str, seed: int) -> optuna.samplers.BaseSampler:
        if sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.config.startup)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.config.startup)

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
        moved = [moves_of(r.key) or {} for r in context.history]
        seen = [{loc: float(v) for loc, v in m.items()} for m in moved] + [champion]
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
        self, context: Context, space: Space, texts: dict[str, str], key: str, label: str
    ) -> Proposal:
        files = dict(context.files)
        moves = []
        for lit in sorted(space.knobs, key=lambda lit: (lit.line, lit.start), reverse=True):
            new = texts[lit.location]
            if new != lit.text:
                files[lit.path] = replace_at(files[lit.path], lit, new)
                moves.append(f"{lit.location} {lit.text} -> {new}")
        changed = {p: t for p, t in files.items() if t != context.files[p]}
        hypothesis = f"optuna {label}: " + ", ".join(reversed(moves))
        return Proposal(hypothesis, changed, self.name, key)

    def learn(self, context: Context, outcome: Outcome) -> Learned:
        return Learned()  # the core writes the offline summary


KIND = Kind(OptunaConfig, OptunaProposer, writes_code=False)  # numbers in the study's files
