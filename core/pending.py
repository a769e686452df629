"""Candidates in flight: one small JSON file each under the study's state folder (pending/<n>.json).

A candidate's experiment number is given when it is proposed, and its record is written then,
before anything irreversible (a commit, a launch on a worker, a send), and again at each stage;
every write is atomic. The record goes when the candidate's row lands in the ledger. A run killed
with candidates in flight leaves their records: the next start resumes each one under its own
number (re-measures it, waits for its remote run, or collects its results), so that the ledger
gains every number exactly once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.files import atomic_write

FOLDER = "pending"


class Stage(StrEnum):
    """Where a candidate in flight is; what a new start does with it."""

    RESERVED = "reserved"  # a number and a slot: proposed again
    PROPOSED = "proposed"  # a proposal: applied and measured
    MEASURING = "measuring"  # a commit: measured again from it (or waited for on its worker)
    LAUNCHED = "launched"  # an A/B test sent out: collected when due
    BASELINE = "baseline"  # the baseline of A/B tests: recorded at the first decision
    HOLDOUT = "holdout"  # a holdout check: done under this number when next due


@dataclass(frozen=True)
class Record:
    """One candidate in flight, as its file holds it. `proposal` and `candidate` are the
    Trial's own (steps.trial), as JSON."""

    experiment: int
    stage: Stage = Stage.RESERVED
    slot: int = 1
    since: str = ""
    hypothesis: str = ""
    proposer: str = "-"
    proposal: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    built_on: str = ""
    first: list[Any] | None = None  # [champion, metric] before a re-apply
    flow_run: str = ""  # measured by a worker: its flow run
    due: str = ""  # an A/B test: when collecting again is worth it (ISO, or "now")
    extra: dict[str, Any] = field(default_factory=dict)  # what a newer version wrote

    def but(self, **changes: Any) -> Record:
        return replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {**data.pop("extra"), **data, "stage": self.stage.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        known = {f.name for f in fields(cls)} - {"extra"}
        given = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**given | {"stage": Stage(given.get("stage", "reserved"))}, extra=extra)


class PendingError(ValueError):
    """A pending record cannot be read; the message names the file."""


class Pending:
    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / FOLDER

    def path(self, number: int) -> Path:
        return self.folder / f"{number}.json"

    def write(self, record: Record) -> Record:
        text = json.dumps(record.as_json(), indent=1, sort_keys=True) + "\n"
        atomic_write(self.path(record.experiment), text)
        return record

    def read(self, number: int) -> Record | None:
        path = self.path(number)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            why = f"{path}: not a valid record ({exc}); remove it to drop it"
            raise PendingError(why) from None
        try:
            return Record.from_json(data | {"experiment": number})
        except (TypeError, ValueError) as exc:
            raise PendingError(
                f"{path}: not a valid record ({exc}); remove it to drop it"
            ) from None

    def drop(self, number: int) -> None:
        self.path(number).unlink(missing_ok=True)

    def numbers(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(int(p.stem) for p in self.folder.glob("*.json") if p.stem.isdigit())

    def all(self) -> list[Record]:
        return [record for n in self.numbers() if (record := self.read(n))]

    def at(self, stage: Stage) -> list[Record]:
        return [r for r in self.all() if r.stage == stage]
