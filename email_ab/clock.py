"""The study's clock: the real one live; offline, the simulated one its mail store keeps.

Every time the evaluator plans, counts or waits by comes from here, so that an offline study
lives days in seconds: the simulated clock moves only when the campaign waits (wait_until).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from email_ab import audience
from email_ab.mailstore import MailStore, Stores, store_path
from evaluators.base import from_iso, iso


def floor_hour(t: float) -> float:
    return (t // 3600.0) * 3600.0


class Clock:
    """Now, on a batch's clock: real (`live`) or simulated (`simulate`)."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    def now(self, store: MailStore | None, mode: str, start: float | None = None) -> float:
        """Live: the time. Offline: the store's simulated time, which the first call sets to
        `start` (or the hour now); the hour now when there is no store yet."""
        if mode == "live":
            return time.time()
        if store is None:
            return floor_hour(time.time())
        return audience.now(store, start)

    def iso_now(self, state_dir: Path, mode: str) -> str:
        """Now on the study's clock in that mode, ISO 8601; creates no store."""
        if mode == "live" or not store_path(state_dir, mode).exists():
            return iso(self.now(None, mode))
        with self.stores.open(state_dir, mode) as store:
            return iso(self.now(store, mode))

    def waited_h(self, handle: dict[str, Any], state_dir: Path) -> float:
        """Hours since the batch was planned, on its own clock: for max_wait_h."""
        return (from_iso(self.iso_now(state_dir, handle["mode"])) - handle["planned_at"]) / 3600.0

    def advance(self, when: str, state_dir: Path) -> None:
        """Move the simulated clock to `when` (never back) and deliver what is due by then."""
        with self.stores.open(state_dir, "simulate") as store:
            target = max(from_iso(when), self.now(store, "simulate"))
            audience.advance(store, target)
