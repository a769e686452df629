"""state.json: what the ledger cannot derive (protected hashes, the noise calibration, the
champion's runs). Small, and rewritten whole on every change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.files import atomic_write


class StateError(ValueError):
    """state.json cannot be read; the message names the file and says what to do."""


class State:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StateError(f"{self.path}: not valid JSON ({exc}); fix or remove it") from None
        if not isinstance(data, dict):
            raise StateError(f"{self.path}: expected a JSON object; fix or remove it")
        return data

    def update(self, **changes: Any) -> dict[str, Any]:
        data = self.load() | changes
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return data
