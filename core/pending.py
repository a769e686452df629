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
from pathlib import Path
from typing import Any

from core.files import atomic_write

FOLDER = "pending"


class PendingError(ValueError):
    """A pending record cannot be read; the message names the file."""


class Pending:
    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / FOLDER

    def path(self, number: int) -> Path:
        return self.folder / f"{number}.json"

    def write(self, number: int, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "experiment": number}
        atomic_write(self.path(number), json.dumps(record, indent=1, sort_keys=True) + "\n")
        return record

    def update(self, number: int, **changes: Any) -> dict[str, Any]:
        return self.write(number, self.read(number) | changes)

    def read(self, number: int) -> dict[str, Any]:
        path = self.path(number)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            why = f"{path}: not a valid record ({exc}); remove it to drop it"
            raise PendingError(why) from None
        if not isinstance(data, dict):
            raise PendingError(f"{path}: not a valid record; remove it to drop it")
        return data

    def drop(self, number: int) -> None:
        self.path(number).unlink(missing_ok=True)

    def numbers(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(int(p.stem) for p in self.folder.glob("*.json") if p.stem.isdigit())

    def all(self) -> list[dict[str, Any]]:
        return [record for n in self.numbers() if (record := self.read(n))]
