"""When a campaign stops: its experiments, minutes and dollars, a run of crashes, a baseline that
failed, a Stop from the proposer, or a person's request (Ctrl-C, SIGTERM)."""

from __future__ import annotations

import time

from core.interrupt import stop_requested
from core.ledger import Row, Status
from core.study import Study
from steps.trial import Stop


class Budget:
    """What a campaign may still spend. `experiments` 0 or None with no minutes: until stopped."""

    def __init__(self, study: Study, experiments: int | None, minutes: float | None) -> None:
        budget = study.config.budget
        forever = experiments == 0
        self.planned = None if forever else (experiments or budget.experiments)
        self.minutes = minutes or (None if forever else budget.minutes)
        if self.planned is None and self.minutes is None and not forever:
            self.planned = 10
        self.usd = budget.usd
        self.crash_limit = study.config.stop_after_crashes
        self.start = time.monotonic()
        self.started = 0  # new experiments started (not counting those resumed)
        self.done = 0
        self.spent = 0.0
        self.crashes: list[Row] = []  # the current run of crashes
        self.stop = ""

    def minutes_used(self) -> float:
        return (time.monotonic() - self.start) / 60

    def more(self) -> bool:
        """Start another experiment? When not for a reason other than the planned number being
        started, `stop` says why."""
        if not self.stop:
            asked = "stopped by request (signal)" if stop_requested.is_set() else ""
            self.stop = asked or self._minutes_left() or self._dollars_left()
        return not self.stop and (self.planned is None or self.started < self.planned)

    def _minutes_left(self) -> str:
        if self.minutes is not None and self.minutes_used() >= self.minutes:
            return f"time budget of {self.minutes:g} min reached"
        return ""

    def _dollars_left(self) -> str:
        if self.usd is not None and self.spent >= self.usd:
            return f"USD budget of {self.usd:g} reached (spent {self.spent:.4f})"
        return ""

    def account(self, out: Row | Stop) -> None:
        """Count one experiment's outcome against the budget; set `stop` when it must."""
        self.done += 1
        if isinstance(out, Stop):
            self.stop = f"stopped: {out.reason}"
            return
        self.spent += out.cost_usd
        if out.description == "baseline" and out.status != Status.KEEP:
            what = "crashed" if out.status == Status.CRASH else "was rejected"
            self.stop = f"the baseline {what} ({out.evidence}): see logs/{out.experiment}.log"
            return
        self.crashes = [*self.crashes, out] if out.status == Status.CRASH else []
        if self.crash_limit and len(self.crashes) >= self.crash_limit:
            self.stop = (
                f"{len(self.crashes)} experiments in a row crashed; the last: {out.evidence} "
                f"(logs/{out.experiment}.log)"
            )
