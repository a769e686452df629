"""results.tsv: one typed Row per experiment, appended, the study's source of truth.

The champion is the last kept row, the next experiment number is one past the highest row.
Karpathy's five columns come first (his notebook reads the file unchanged), then ours. An append
is one write of one line with fsync, so it costs the same at row 10,000 as at row 10; a line torn
by a kill is cut off by `repair()` when the study is next opened. Rows read are kept in memory
until the file changes on disk, so an experiment reads the ledger once.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.files import atomic_write
from core.secrets import redact


class Status(StrEnum):
    KEEP = "keep"
    DISCARD = "discard"
    CRASH = "crash"
    REJECTED = "rejected"  # the candidate overstepped a guard before or while it ran
    INVALID = "invalid"  # the proposer produced no usable change
    HOLDOUT = "holdout"  # the champion scored on held-out data, not an experiment
    SCREENED = "screened"  # stopped by a cheap stage of the evaluation; never fully measured


class LedgerError(ValueError):
    """results.tsv cannot be read; the message names the file and line."""


def format_metric(value: float | None) -> str:
    """At least 6 significant digits: Karpathy's `%.6f`, or `%.6g` for small values (4e-07)."""
    if value is None:
        return "0.000000"
    if value == 0 or abs(value) >= 0.1:
        return f"{value:.6f}"
    return f"{value:.6g}"


@dataclass(frozen=True)
class Champion:
    commit: str
    metric: float
    experiment: int


@dataclass(frozen=True)
class Row:
    """One experiment as recorded. Crashes carry metric 0.0, as in Karpathy's ledger."""

    experiment: int
    status: Status
    description: str
    commit: str = "-"
    metric: float = 0.0
    memory_gb: float = 0.0
    started_at: str = ""
    duration_s: float = 0.0
    proposer: str = "-"
    lines_added: int = 0
    lines_removed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cache_read: int = 0
    tokens_cache_write: int = 0
    cost_usd: float = 0.0
    evidence: str = ""
    key: str = ""
    built_on: str = ""  # a confirmation: the champion the candidate was first measured against
    parent: str = ""  # the commit the candidate was built on (the champion, or a tree's node)
    # the evaluator's other numbers, and each screening stage's as `screen.<stage>`
    secondary: dict[str, float] = field(default_factory=dict)
    constraint: str = ""  # the constraint a discarded candidate broke
    suspect: str = ""  # why the audit of a keep doubts it, and what re-measuring it found
    decided_at: str = ""  # results that arrive over days: when it was decided (their clock)
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # unknown columns

    @property
    def kept(self) -> bool:
        return self.status == Status.KEEP

    def with_usage(self, tokens: dict[str, int], cost_usd: float) -> Row:
        """The row with more tokens and dollars in it (a proposer's learning step, say)."""
        more = {k: getattr(self, k) + v for k, v in tokens.items()}
        return replace(self, cost_usd=self.cost_usd + cost_usd, **more)


# The columns: "{metric}" is the study's metric.
KARPATHY = ["commit", "{metric}", "memory_gb", "status", "description"]
OURS = [
    "experiment",
    "started_at",
    "duration_s",
    "proposer",
    "lines_added",
    "lines_removed",
    "tokens_in",
    "tokens_out",
    "tokens_cache_read",
    "tokens_cache_write",
    "cost_usd",
    "evidence",
    "key",
    "built_on",
    "parent",
    "secondary",
    "constraint",
    "suspect",
    "decided_at",
]
INTS = {"experiment", "lines_added", "lines_removed"} | {c for c in OURS if c.startswith("tokens")}
FLOATS = {"memory_gb", "duration_s", "cost_usd"}
FORMATS = {"memory_gb": "{:.1f}", "duration_s": "{:.2f}", "cost_usd": "{:.6f}"}


def _clean(value: Any) -> str:
    """One field: one line, no tab, no double quote (so pandas and csv read it back as written)."""
    return " ".join(str(value).split()).replace('"', "'")


class Ledger:
    """The study's results.tsv."""

    def __init__(self, path: Path, metric: str) -> None:
        self.path = path
        self.metric = metric
        self.columns = [c.format(metric=metric) for c in KARPATHY] + OURS
        self._rows: list[Row] = []
        self._numbers: set[int] = set()
        self._last = 0  # the highest experiment number
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime) of what _rows holds

    # reading ---------------------------------------------------------------------------

    def _fresh(self) -> list[Row]:
        """The rows in memory, read again only when the file changed on disk."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._remember([], None)
            return self._rows
        seen = (info.st_ino, info.st_size, info.st_mtime_ns)
        if seen != self._seen:
            self._remember(self._parse(self.path.read_bytes()), seen)
        return self._rows

    def rows(self) -> list[Row]:
        """Every whole row, oldest first (a torn last line is not a row)."""
        return list(self._fresh())

    def _parse(self, data: bytes) -> list[Row]:
        text = data.decode("utf-8", errors="replace")
        whole = text[: text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(whole), delimiter="\t", quoting=csv.QUOTE_NONE)
        return [self._row(r, i) for i, r in enumerate(reader, 2)]

    def _row(self, raw: dict[Any, Any], line: int) -> Row:
        values: dict[str, Any] = {}
        extra: dict[str, str] = {}
        try:
            for column, text in raw.items():
                if column is None or text is None:
                    continue
                name = "metric" if column == self.metric else column
                if name in Row.__dataclass_fields__ and name != "extra":
                    values[name] = _value(name, text)
                else:
                    extra[column] = text
            values["status"] = Status(values.get("status", ""))
            return Row(**values, extra=extra)
        except (ValueError, TypeError) as exc:
            raise LedgerError(f"{self.path}:{line}: cannot read this row ({exc})") from None

    def experiments(self) -> set[int]:
        self._fresh()
        return set(self._numbers)

    def next_experiment(self) -> int:
        self._fresh()
        return self._last + 1

    def champion(self) -> Champion | None:
        """The last kept row: the baseline first, then each improvement."""
        for r in reversed(self._fresh()):
            if r.kept:
                return Champion(r.commit, r.metric, r.experiment)
        return None

    def baseline(self) -> Champion | None:
        for r in self._fresh():
            if r.kept:
                return Champion(r.commit, r.metric, r.experiment)
        return None

    # writing ---------------------------------------------------------------------------

    def line(self, row: Row) -> str:
        """The row as written: one line, every field free of tabs, newlines, quotes, secrets."""
        data = asdict(row) | {self.metric: row.metric}
        texts = [_text(c, data.get(c, row.extra.get(c, ""))) for c in self.columns]
        return redact("\t".join(_clean(t) for t in texts)) + "\n"

    def header(self) -> str:
        return "\t".join(self.columns) + "\n"

    def append(self, row: Row) -> bool:
        """Add one row unless its experiment number is already recorded (a redo after a kill)."""
        rows = self._fresh()
        if row.experiment in self._numbers:
            return False
        if not self._current_header():  # new, or written by an older version: rewrite once
            atomic_write(self.path, self.header() + "".join(self.line(r) for r in rows))
        line = self.line(row)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        info = self.path.stat()
        rows.append(self._row(dict(zip(self.columns, line[:-1].split("\t"), strict=True)), 0))
        self._numbers.add(row.experiment)
        self._last = max(self._last, row.experiment)
        self._seen = (info.st_ino, info.st_size, info.st_mtime_ns)
        return True

    def _current_header(self) -> bool:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return f.readline() == self.header()
        except FileNotFoundError:
            return False

    def _remember(self, rows: list[Row], seen: tuple[int, int, int] | None) -> None:
        self._rows, self._numbers, self._seen = rows, {r.experiment for r in rows}, seen
        self._last = max(self._numbers, default=0)

    def repair(self) -> bool:
        """Cut a last line torn by a kill mid-append; True when there was one. Writer only."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        if not data or data.endswith(b"\n"):
            return False
        with open(self.path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            os.fsync(f.fileno())
        return True


def numbers_text(values: dict[str, float]) -> str:
    """The secondary column: `name=value name=value`."""
    return " ".join(f"{name}={value:.6g}" for name, value in values.items())


def numbers(text: str) -> dict[str, float]:
    """`name=value name=value` (the secondary column) as a dict."""
    pairs = (item.partition("=") for item in text.split())
    return {name: float(value) for name, _, value in pairs}


def _value(name: str, text: str) -> Any:
    if name == "secondary":
        return numbers(text)
    if name in INTS:
        return int(float(text)) if text else 0
    if name in FLOATS or name == "metric":
        return float(text) if text else 0.0
    return text


def _text(column: str, value: Any) -> str:
    if isinstance(value, dict):
        return numbers_text(value)
    if column in FORMATS:
        return FORMATS[column].format(value)
    if isinstance(value, float):
        return format_metric(value)
    return "" if value is None else str(value)
