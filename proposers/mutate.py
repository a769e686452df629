"""The offline proposer: perturb one numeric literal of an editable file.

Python files are read with the tokenize module (so numbers in strings and comments are left
alone); other text by regex. A location is `path:line:k` (the k-th number on that line), which
survives kept changes because a mutation never adds or removes a number. The proposer never
repeats a (location, value) already tried (it reads them from the ledger's descriptions), adapts
its step to its success rate (grow after a keep, shrink after a miss), and is deterministic for
a given seed and history.
"""

from __future__ import annotations

import io
import math
import random
import re
import tokenize
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from core.ledger import Row, Status
from core.study import ProposerConfig
from proposers.base import Context, InvalidProposal, Kind, Learned, Outcome, Proposal

NUMBER_RE = re.compile(r"(?<![\w.])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w.])")
TRIED_RE = re.compile(r"^mutate (\S+:\d+:\d+) \S+ -> (\S+)")
GROW, SHRINK, MIN_STEP, MAX_STEP = 1.5, 0.85, 1e-3, 2.0
ATTEMPTS = 200


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


def _format(value: float, like: str) -> str:
    if re.fullmatch(r"\d+", like.replace("_", "")):
        return str(int(value))
    text = f"{value:.4g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text


def perturb(text: str, step: float, rng: random.Random) -> str:
    """A new value for a literal: multiplicative for non-zero values, additive for zero."""
    value = float(text.replace("_", ""))
    is_int = re.fullmatch(r"\d+", text.replace("_", "")) is not None
    sign = rng.choice((-1, 1))
    if value == 0:
        new = sign * (1 if is_int else step)
    elif is_int:
        delta = max(1, round(abs(value) * step * rng.uniform(0.5, 1.5)))
        new = value + sign * delta
    else:
        new = value * math.exp(sign * step * rng.uniform(0.5, 1.5))
    if value >= 0 and new < 0:
        new = abs(new)
    return _format(new, text)


def replace_at(text: str, lit: Number, new: str) -> str:
    lines = text.splitlines(keepends=True)
    line = lines[lit.line - 1]
    assert line[lit.start : lit.start + len(lit.text)] == lit.text
    lines[lit.line - 1] = line[: lit.start] + new + line[lit.start + len(lit.text) :]
    return "".join(lines)


def tried(history: list[Row]) -> set[str]:
    """(location=value) pairs already tried, read from the ledger's descriptions."""
    return {f"{m.group(1)}={m.group(2)}" for r in history for m in TRIED_RE.finditer(r.description)}


def step_size(initial: float, history: list[Row]) -> float:
    """The 1/5th-success-rule style adaptation, replayed from this proposer's past rows."""
    step = initial
    for r in history:
        if not TRIED_RE.match(r.description):
            continue
        step *= GROW if r.status == Status.KEEP else SHRINK
        step = min(MAX_STEP, max(MIN_STEP, step))
    return step


class MutateConfig(ProposerConfig):
    kind: Literal["mutate"] = "mutate"
    step: float = Field(0.2, gt=0)
    mutate_lines: list[str] = []  # regexes: only numbers on matching lines are perturbed


class MutateProposer:
    name = "mutate"

    def __init__(self, config: MutateConfig, seed: int | None = None) -> None:
        self.config = config
        self.seed = config.seed if seed is None else seed
        self.patterns = [re.compile(p) for p in config.mutate_lines]

    def propose(self, context: Context) -> Proposal:
        rng = random.Random(f"{self.seed}:{context.experiment}")
        step = step_size(self.config.step, context.history)
        seen = tried(context.history) | context.tried
        candidates = [
            lit
            for path, text in sorted(context.files.items())
            for lit in literals(path, text)
            if self._allowed(text, lit)
        ]
        if not candidates:
            raise InvalidProposal("no numeric literal in any editable file")
        for _ in range(ATTEMPTS):
            lit = rng.choice(candidates)
            new = perturb(lit.text, step, rng)
            key = f"{lit.location}={new}"
            if new == lit.text or key in seen:
                continue
            text = replace_at(context.files[lit.path], lit, new)
            return Proposal(
                hypothesis=f"mutate {lit.location} {lit.text} -> {new}",
                files={lit.path: text},
                proposer=self.name,
                key=key,
            )
        raise InvalidProposal(f"no untried perturbation found in {ATTEMPTS} attempts")

    def _allowed(self, text: str, lit: Number) -> bool:
        """With `mutate_lines`, only numbers on lines matching one of its patterns."""
        if not self.patterns:
            return True
        line = text.splitlines()[lit.line - 1]
        return any(p.search(line) for p in self.patterns)

    def learn(self, context: Context, outcome: Outcome) -> Learned:
        return Learned()  # the core writes the offline summary


KIND = Kind(MutateConfig, MutateProposer)
