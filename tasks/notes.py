"""A person's note, sent with a campaign's run (the `note` parameter, from the Prefect UI):
taken before the campaign starts, read by every proposal until it is removed."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.notes import NOTES, Notes
from core.study import Study


@task(name="note", cache_policy=NO_CACHE)
async def take_note(study: Study, text: str) -> int:
    """The note's number (`autoresearch note STUDY --remove N` removes it)."""
    note = await asyncio.to_thread(Notes(study.state_dir / NOTES).add, text)
    get_run_logger().info("note %d taken: %s", note.id, note.text)
    return note.id
