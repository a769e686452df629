"""The campaign's progress in the UI: one progress artifact, updated as experiments end."""

from __future__ import annotations

from uuid import UUID

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from steps import report
from steps.budget import Budget


class Progress:
    """The UI's progress artifact: experiments done of planned (or minutes used of the budget),
    and how many are in flight."""

    def __init__(self, name: str, budget: Budget) -> None:
        self.name, self.budget = name, budget
        self.id: UUID | None = None

    def text(self, in_flight: int = 0, note: str = "") -> str:
        b = self.budget
        if b.planned:
            text = f"{b.done} of {b.planned} experiments done"
        elif b.minutes:
            text = f"{b.done} experiments done, {b.minutes_used():.1f} of {b.minutes:g} min"
        else:
            text = f"{b.done} experiments done, running until stopped"
        text += f", {in_flight} in flight" if in_flight else ""
        return f"{text}; {note}" if note else text

    async def update(self, in_flight: int = 0, note: str = "") -> None:
        b = self.budget
        if b.planned:
            pct = 100.0 * b.done / b.planned
        elif b.minutes:
            pct = 100.0 * b.minutes_used() / b.minutes
        else:
            pct = 0.0
        text = self.text(in_flight, note)
        if self.id is None:
            key = f"{report.artifact_key(self.name)}-progress"
            self.id = await acreate_progress_artifact(min(pct, 100.0), key=key, description=text)
        else:
            await aupdate_progress_artifact(self.id, min(pct, 100.0), description=text)
