"""results.tsv (append-only, one row per experiment) and state.json, both written atomically.

The ledger is the source of truth: the champion is the last kept row, the next experiment number
is one past the last row. state.json holds only what the ledger cannot: protected-file hashes,
the calibrated noise, pending evaluations. A SIGKILL at any point leaves files that the next run
repairs by resetting the worktree to the ledger's champion and redoing the unrecorded experiment.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.secrets import redact

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
]
KEPT = {"keep"}


def atomic_write(path: Path, text: str) -> None:
    """Write a whole file by temporary file and rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(value: Any) -> str:
    """One field: one line, no tab, no double quote (so pandas and csv read it back as written)."""
    if value is None:
        return ""
    return redact(" ".join(str(value).split())).replace('"', "'")


@dataclass(frozen=True)
class Champion:
    commit: str
    metric: float
    experiment: int


class Ledger:
    """The study's results.tsv."""

    def __init__(self, path: Path, metric: str) -> None:
        self.path = path
        self.metric = metric
        self.columns = [c.format(metric=metric) for c in KARPATHY] + OURS

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        text = io.StringIO(self.path.read_text())
        reader = csv.DictReader(text, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [dict(r) for r in reader]

    def append(self, row: dict[str, Any]) -> bool:
        """Add one row unless its experiment number is already recorded (a redo after a kill)."""
        rows = self.rows()
        if any(r.get("experiment") == str(row["experiment"]) for r in rows):
            return False
        text = self.path.read_text() if self.path.exists() else ""
        if text.split("\n", 1)[0] != "\t".join(self.columns):  # new, or from an older version
            text = "".join(
                self._line(r) for r in [dict(zip(self.columns, self.columns, strict=True)), *rows]
            )
        atomic_write(self.path, text + self._line(row))
        return True

    def _line(self, row: dict[str, Any]) -> str:
        return "\t".join(_clean(row.get(c)) for c in self.columns) + "\n"

    def next_experiment(self) -> int:
        rows = self.rows()
        return max((int(r["experiment"]) for r in rows), default=0) + 1

    def champion(self) -> Champion | None:
        """The last kept row: the baseline first, then each improvement."""
        for r in reversed(self.rows()):
            if r["status"] in KEPT:
                return Champion(r["commit"], float(r[self.metric]), int(r["experiment"]))
        return None

    def baseline(self) -> Champion | None:
        for r in self.rows():
            if r["status"] in KEPT:
                return Champion(r["commit"], float(r[self.metric]), int(r["experiment"]))
        return None


class State:
    """state.json: what the ledger cannot derive. Small, rewritten whole on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}: not valid JSON ({exc}); fix or remove it") from None

    def update(self, **changes: Any) -> dict[str, Any]:
        data = self.load() | changes
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return data
