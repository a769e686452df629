"""Notes from a person: steering a study without stopping it (`autoresearch note STUDY "..."`,
or the campaign's `note` parameter from the Prefect UI). Every model's next prompt includes
each note until the person removes it; `status` lists them.

runs/<name>/notes.json: a list of {id, text, added_at}, each write whole and atomic. A note is
the person's words: kept as written (one line, bounded), secrets redacted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.files import atomic_write
from core.secrets import redact

NOTES = "notes.json"  # in the study's state folder
MAX_CHARS = 2000


class NotesError(ValueError):
    """notes.json cannot be read, or a note cannot be taken; the message names the file."""

    exit_code = 2


@dataclass(frozen=True)
class Note:
    id: int
    text: str
    added_at: str


class Notes:
    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[Note]:
        try:
            raw = json.loads(self.path.read_text())
            return [Note(int(n["id"]), str(n["text"]), str(n["added_at"])) for n in raw]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError, KeyError) as exc:
            raise NotesError(f"{self.path}: cannot read the notes ({exc})") from None

    def add(self, text: str) -> Note:
        said = redact(" ".join(text.split()))
        if not said:
            raise NotesError(f"{self.path}: an empty note")
        if len(said) > MAX_CHARS:
            raise NotesError(f"{self.path}: a note has at most {MAX_CHARS} characters")
        found = self.all()
        note = Note(max((n.id for n in found), default=0) + 1, said, _now())
        self._write([*found, note])
        return note

    def remove(self, number: int) -> Note:
        found = self.all()
        gone = next((n for n in found if n.id == number), None)
        if gone is None:
            known = ", ".join(str(n.id) for n in found) or "none"
            raise NotesError(f"{self.path}: no note {number} (notes: {known})")
        self._write([n for n in found if n.id != number])
        return gone

    def _write(self, notes: list[Note]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps([asdict(n) for n in notes], indent=2) + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
