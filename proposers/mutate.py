"""The offline proposer: move one numeric literal of an editable file at a time.

Python files are read with the tokenize module (so numbers in strings and comments are left
alone); other text by regex. A location is `path:line:k` (the k-th number on that line), which
survives kept changes because a mutation never adds or removes a number.

The search is a compass search per literal (a knob), replayed from the ledger's descriptions, so
it needs no state of its own and is deterministic for a seed and history. Each knob has its own
step, on a log scale (a step of 0.2 multiplies by e^0.2). A keep doubles the step and the next
move goes on in the same direction; a miss sends the next move to the other side of the same
knob; when both sides of a knob have missed, its step halves (down to MIN_STEP) and the next
move goes to the side that measured better. It never proposes a (location, value) the ledger
shows or that is in flight: when the planned value is taken, a shorter or a jittered step is.
"""

from __future__ import annotations

import io
import math
import random
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from core.ledger import Row, Status
from core.study import ProposerConfig
from proposers.base import Context, InvalidProposal, Kind, Learned, Outcome, Proposal

NUMBER_RE = re.compile(r"(?<![\w.])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w.])")
TRIED_RE = re.compile(r"^mutate (\S+:\d+:\d+) (\S+) -> (\S+)")
GROW, SHRINK, MIN_STEP, MAX_STEP = 2.0, 0.5, 1e-3, 2.0
FALLBACKS = (1.0, 0.5, 0.25)  # fractions of a knob's step tried when a value is taken
JITTERED = 4  # then this many steps drawn from half to one and a half times the knob's


@dataclass(frozen=True)
class Number:
    path: str
    line: int  # 1-based
    k: int  # k-th number on that line, from 0
    start: int  # column
    text: str

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}:{self.k}"

    @property
    def is_int(self) -> bool:
        return is_int(self.text)

    @property
    def value(self) -> float:
        return float(self.text.replace("_", ""))


def is_int(text: str) -> bool:
    return re.fullmatch(r"\d+", text.replace("_", "")) is not None


def _python_literals(path: str, text: str) -> list[tuple[int, int, str]]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return _text_literals(text)
    return [
        (t.start[0], t.start[1], t.string)
        for t in tokens
        if t.type == tokenize.NUMBER
        and not t.string.lower().endswith("j")
        and not t.string.lower().startswith(("0x", "0o", "0b"))
    ]


def _text_literals(text: str) -> list[tuple[int, int, str]]:
    return [
        (i, m.start(), m.group())
        for i, line in enumerate(text.splitlines(), 1)
        for m in NUMBER_RE.finditer(line)
    ]


def literals(path: str, text: str) -> list[Number]:
    """Every numeric literal of a file, with its stable location."""
    found = _python_literals(path, text) if path.endswith(".py") else _text_literals(text)
    out: list[Number] = []
    per_line: dict[int, int] = {}
    for line, col, s in found:
        k = per_line.get(line, 0)
        per_line[line] = k + 1
        out.append(Number(path, line, k, col, s))
    return out


def knob_literals(files: dict[str, str], mutate_lines: list[str]) -> list[Number]:
    """The literals a search may move: all of them, or those on lines matching `mutate_lines`."""
    patterns = [re.compile(p) for p in mutate_lines]
    return [
        lit
        for path, text in sorted(files.items())
        for lit in literals(path, text)
        if not patterns or any(p.search(text.splitlines()[lit.line - 1]) for p in patterns)
    ]


def format_like(value: float, like: str, digits: int = 4) -> str:
    """A value written as the literal it replaces is: an integer stays an integer."""
    if is_int(like):
        return str(round(value))
    text = f"{value:.{digits}g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text


def replace_at(text: str, lit: Number, new: str) -> str:
    lines = text.splitlines(keepends=True)
    line = lines[lit.line - 1]
    assert line[lit.start : lit.start + len(lit.text)] == lit.text
    lines[lit.line - 1] = line[: lit.start] + new + line[lit.start + len(lit.text) :]
    return "".join(lines)


def tried(history: list[Row]) -> set[str]:
    """(location=value) pairs the ledger shows measured: every value moved to, and every value
    moved from (the champion's at the time)."""
    return {
        f"{m.group(1)}={value}"
        for r in history
        if (m := TRIED_RE.match(r.description))
        for value in (m.group(2), m.group(3))
    }


# The compass search ----------------------------------------------------------------------


def distance(old: str, new: str) -> float | None:
    """How far a move went on the log scale; None across zero."""
    a, b = float(old.replace("_", "")), float(new.replace("_", ""))
    return abs(math.log(b / a)) if a > 0 and b > 0 else None


def better_side(missed: dict[int, float | None], direction: str) -> int:
    """Of two missed sides, the one that measured better (a crash is worst); 0 when unknown."""
    measured = {side: metric for side, metric in missed.items() if metric is not None}
    if not measured:
        return 0
    pick = min if direction == "minimize" else max
    return pick(measured, key=lambda side: measured[side])


@dataclass
class Knob:
    """What the ledger says about one literal: its step, and where to move it next."""

    step: float
    side: int = 0  # +1 up, -1 down, 0 either
    follow: bool = False  # move this knob again next: after a keep, or a miss on one side
    base: str = ""  # the value the recorded misses were tried from
    missed: dict[int, float | None] = field(default_factory=dict)  # side -> metric (None: crash)

    def record(self, old: str, new: str, row: Row, champion: float | None, direction: str) -> None:
        """One of this knob's experiments: old -> new, kept or not (champion: the metric the
        move was measured against)."""
        side = 1 if float(new.replace("_", "")) > float(old.replace("_", "")) else -1
        used = distance(old, new) or self.step
        if old != self.base:  # moved since (by a keep, or by another proposer): start afresh
            self.base, self.missed = old, {}
        if row.kept:  # go on the same way, faster; the value left behind is the worse side
            self.step = min(MAX_STEP, GROW * used)
            self.side, self.follow, self.base = side, True, new
            self.missed = {-side: champion}
            return
        self.missed[side] = row.metric if row.status == Status.DISCARD else None
        if len(self.missed) < 2:
            self.side, self.follow = -side, True
            return
        self.step = max(MIN_STEP, SHRINK * min(self.step, used))
        self.side, self.follow = better_side(self.missed, direction), False
        self.missed = {}


def knobs(history: list[Row], initial: float, direction: str) -> tuple[dict[str, Knob], str]:
    """Every knob's state replayed from the ledger, and the location of the last move."""
    states: dict[str, Knob] = {}
    champion: float | None = None
    last = ""
    for row in history:
        m = TRIED_RE.match(row.description)
        if m:
            last, old, new = m.groups()
            states.setdefault(last, Knob(initial)).record(old, new, row, champion, direction)
        if row.kept:
            champion = row.metric
    return states, last


def moved(lit: Number, side: int, step: float) -> str | None:
    """The literal moved `step` to one side on the log scale (from zero: up by step, or 1)."""
    value = lit.value
    if value == 0:
        return None if side < 0 else format_like(1 if lit.is_int else step, lit.text)
    new = value * math.exp(side * step)
    if lit.is_int and round(new) == value:
        new = value + side
    digits = max(4, 2 - math.floor(math.log10(step)))
    return format_like(new, lit.text, digits)


class MutateConfig(ProposerConfig):
    kind: Literal["mutate"] = "mutate"
    step: float = Field(0.2, gt=0)  # a knob's first step, on the log scale
    mutate_lines: list[str] = []  # regexes: only numbers on matching lines are moved


class MutateProposer:
    name = "mutate"

    def __init__(self, config: MutateConfig, seed: int | None = None) -> None:
        self.config = config
        self.seed = config.seed if seed is None else seed

    def propose(self, context: Context) -> Proposal:
        candidates = knob_literals(context.files, self.config.mutate_lines)
        if not candidates:
            raise InvalidProposal("no numeric literal in any editable file")
        rng = random.Random(f"{self.seed}:{context.experiment}")
        states, last = knobs(context.history, self.config.step, context.study.metric.direction)
        seen = tried(context.history) | context.tried  # in-flight keys included
        for lit, side, step in self._moves(candidates, states, last, rng):
            new = moved(lit, side, step)
            key = f"{lit.location}={new}"
            if new is None or new == lit.text or key in seen:
                continue
            return Proposal(
                hypothesis=f"mutate {lit.location} {lit.text} -> {new}",
                files={lit.path: replace_at(context.files[lit.path], lit, new)},
                proposer=self.name,
                key=key,
            )
        raise InvalidProposal("every move of every literal has been tried")

    def _moves(
        self,
        candidates: list[Number],
        states: dict[str, Knob],
        last: str,
        rng: random.Random,
    ) -> Iterator[tuple[Number, int, float]]:
        """Moves in the order to try them: the last knob's follow-up when it has one, then a
        knob at random (to its favoured side first), then every other knob and side."""
        first: list[tuple[Number, int]] = []
        follow = states.get(last)
        if follow is not None and follow.follow:
            first += [(lit, follow.side) for lit in candidates if lit.location == last]
        shuffled = rng.sample(candidates, len(candidates))
        for lit in shuffled:
            side = states[lit.location].side if lit.location in states else 0
            first.append((lit, side or rng.choice((-1, 1))))
        rest = [(lit, -side) for lit, side in first]
        for lit, side in first + rest:
            step = states[lit.location].step if lit.location in states else self.config.step
            fractions = [*FALLBACKS, *(rng.uniform(0.5, 1.5) for _ in range(JITTERED))]
            for fraction in fractions:  # off the lattice of halvings: never out of moves
                yield lit, side, step * fraction

    def learn(self, context: Context, outcome: Outcome) -> Learned:
        return Learned()  # the core writes the offline summary


KIND = Kind(MutateConfig, MutateProposer, writes_code=False)  # numbers in the study's files
