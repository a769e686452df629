"""What a batch shows so far: replies over delivered per arm, the window, the next look.

The counts the decision reads change only at the look times (core.abtest.as_of), so that peeking
more often changes nothing; the live counts beside them are for people to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import abtest
from email_ab.clock import Clock
from email_ab.mailstore import MailStore, Stores, store_path
from evaluators.base import Collected, iso

ARMS = ("champion", "challenger")
DETAIL = (
    "planned sent delivered bounced replied late_replies auto_replies unsubscribed "
    "spam_reports unsent skipped failed unknown cancelled"
).split()


class Collector:
    """collect(): the counts as of the last look, whether the window closed, and when looking
    (and sending) again is worth it."""

    def __init__(self, stores: Stores, clock: Clock, daily_cap: int) -> None:
        self.stores = stores
        self.clock = clock
        self.daily_cap = daily_cap

    def collect(self, handle: dict[str, Any], state_dir: Path) -> Collected:
        """Replies over delivered per arm as of the last look, and whether the window closed."""
        mode, batch = handle["mode"], handle["batch"]
        window_s = handle["window_h"] * 3600.0
        empty = {arm: (0, 0) for arm in ARMS}
        not_started = f"batch {batch}: not started; call start() first"
        if not store_path(state_dir, mode).exists():
            return Collected(empty, False, iso(handle["planned_at"]), {}, not_started)
        with self.stores.open(state_dir, mode) as store:
            if store.plans.size(batch) == 0:  # never started: nothing may close it
                return Collected(empty, False, iso(handle["planned_at"]), {}, not_started)
            now = self.clock.now(store, mode, handle["planned_at"])
            last_sent, remaining = store.counts.batch_times(batch)
            decided = store.plans.decided_at(batch)
            close_at = None
            if remaining == 0:
                close_at = (last_sent + window_s) if last_sent else handle["planned_at"]
            look = abtest.as_of(now, handle["planned_at"], handle["look_every_h"], close_at)
            at_look = store.counts.arm_counts(batch, look, window_s, decided)
            live = (
                at_look if look == now else store.counts.arm_counts(batch, now, window_s, decided)
            )
            due = self._due(store, now, handle, close_at, remaining)
        arms = {
            arm: (at_look.get(arm, {}).get("replied", 0), at_look.get(arm, {}).get("delivered", 0))
            for arm in ARMS
        }
        details = {arm: detail(live.get(arm, {}), arms[arm]) for arm in ARMS}
        closed = close_at is not None and now >= close_at
        text = summary(handle, now, look, arms, details, close_at, closed)
        return Collected(arms, closed, None if closed else iso(due), details, text, iso(now))

    def _due(
        self,
        store: MailStore,
        now: float,
        handle: dict[str, Any],
        close_at: float | None,
        remaining: int,
    ) -> float:
        """When collecting (and sending) again is worth it: the next look, the window's close,
        or when the daily cap lets the rest of the batch go."""
        times = [abtest.next_look(now, handle["planned_at"], handle["look_every_h"])]
        if close_at is not None:
            times.append(close_at)
        if remaining:
            day_ago = now - 86400.0
            if store.sends.sent_since(day_ago) >= self.daily_cap:
                first = store.sends.first_send_since(day_ago)
                times.append((first or now) + 86400.0 + 1.0)
            else:
                times.append(now)
        return max(now, min(times))


def detail(live: dict[str, int], counted: tuple[int, int]) -> dict[str, float]:
    """One arm's live counts, with what the decision counted as of the last look."""
    out = {k: float(live.get(k, 0)) for k in DETAIL}
    out["counted_replies"], out["counted_delivered"] = float(counted[0]), float(counted[1])
    return out


def summary(
    handle: dict[str, Any],
    now: float,
    look: float,
    arms: dict[str, tuple[int, int]],
    details: dict[str, dict[str, float]],
    close_at: float | None,
    closed: bool,
) -> str:
    """The batch in a few lines, for the campaign's log and dashboard."""
    lines = [
        f"batch {handle['batch']} ({handle['mode']}), now {iso(now)}, counts as of {iso(look)}"
    ]
    for arm in ARMS:
        s, n = arms[arm]
        d = details[arm]
        rate = f"{s / n:.2%}" if n else "n/a"
        lines.append(
            f"  {arm}: {s}/{n} replied ({rate}); sent {d['sent']:.0f}, bounced "
            f"{d['bounced']:.0f}, auto-replies {d['auto_replies']:.0f}, unsubscribed "
            f"{d['unsubscribed']:.0f}, late replies {d['late_replies']:.0f}, unsent "
            f"{d['unsent']:.0f}"
        )
    if closed:
        lines.append(f"  window closed at {iso(close_at or now)}")
    elif close_at is not None:
        lines.append(f"  window closes at {iso(close_at)}")
    if handle["mode"] == "live" and handle["sender"]["sandbox_mode"]:
        lines.append("  sandbox mode: SendGrid delivered nothing; these counts are not real")
    return "\n".join(lines)
