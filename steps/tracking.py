"""A study's trackers (`trackers:` in study.yaml, trackers/) fed as its campaign goes: a parent
run when it starts, each row as it lands (with the candidate's diff and the tail of its log),
the summary when it ends.

Tracking is a view, as the report is: a tracker that fails is named in a warning and never
stops the campaign (the row is in results.tsv already); one that cannot start is off until the
next campaign. Nothing reaches a tracker unredacted (core.secrets, as the ledger writes).

The study's records hold it (`Records.tracking`): the trackers are another place its rows land.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trackers
from core.ledger import Row
from core.secrets import redact
from core.study import Study
from core.workspace import StudyRepo
from steps.instrument import log_path
from trackers.base import Tracker

if TYPE_CHECKING:
    from steps.report import Summary

LOG_TAIL_BYTES = 64_000  # of the experiment's log
DIFF_CHARS = 200_000


def _why(exc: BaseException) -> str:
    """An exception in one line (MLflow's run long), redacted: a URL may carry a login."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return redact(text[:400] + ("..." if len(text) > 400 else ""))


def _redacted(row: Row) -> Row:
    """The row with every text in it redacted (numbers and the status stay)."""
    texts = {
        f.name: redact(value)
        for f in dataclasses.fields(row)
        if type(value := getattr(row, f.name)) is str
    }
    extra = {k: redact(v) for k, v in row.extra.items()}
    return dataclasses.replace(row, **texts, extra=extra)


def tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last `limit` bytes of a file, as text."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - limit))
        data = f.read()
    cut = f"[... the first {size - limit} bytes left out ...]\n" if size > limit else ""
    return cut + data.decode("utf-8", errors="replace")


class Tracking:
    """The study's trackers, as one: started, fed and finished together, each on its own."""

    def __init__(self, study: Study, repo: StudyRepo) -> None:
        self.study = study
        self.repo = repo
        self.chosen: list[Tracker] = [
            trackers.make(n) for n in dict.fromkeys(study.config.trackers)
        ]
        self.live: list[Tracker] = []  # started for this campaign

    def start(self, name: str = "", tags: Mapping[str, str] | None = None) -> list[str]:
        """Each tracker's parent run for the campaign; what failed, in words."""
        run = {"name": redact(name)} | {k: redact(v) for k, v in (tags or {}).items()}
        problems, self.live = [], []
        for tracker in self.chosen:
            try:
                tracker.start(self.study, run)
            except ModuleNotFoundError as exc:
                problems.append(
                    f"tracker {tracker.name}: needs the package {exc.name} "
                    f"(pip install -e '.[{tracker.name}]'); this campaign is not tracked there"
                )
            except Exception as exc:
                problems.append(
                    f"tracker {tracker.name} did not start ({_why(exc)}); "
                    "this campaign is not tracked there"
                )
            else:
                self.live.append(tracker)
        return problems

    def record(self, row: Row) -> list[str]:
        """The row (landed in results.tsv) in each started tracker; what failed, in words."""
        if not self.live:
            return []
        try:
            files = self.files(row)
        except Exception as exc:  # the row goes without them
            files = {}
            problems = [f"the diff and log of #{row.experiment} not tracked: {_why(exc)}"]
        else:
            problems = []
        row = _redacted(row)
        for tracker in self.live:
            try:
                tracker.record(row, files)
            except Exception as exc:
                problems.append(
                    f"tracker {tracker.name}: #{row.experiment} not recorded ({_why(exc)}); "
                    "results.tsv has it"
                )
        return problems

    def finish(self, summary: Summary | None, failed: str = "") -> list[str]:
        """Each started tracker's parent run closed, with the campaign's summary (or why the
        campaign failed); what failed, in words."""
        fields: dict[str, Any] = dataclasses.asdict(summary) if summary is not None else {}
        fields |= {"failed": failed} if failed else {}
        said = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        live, self.live = self.live, []
        problems = []
        for tracker in live:
            try:
                tracker.finish(said)
            except Exception as exc:
                problems.append(f"tracker {tracker.name}: campaign not closed ({_why(exc)})")
        return problems

    def files(self, row: Row) -> dict[str, str]:
        """The row's artifacts, redacted: its change (the commit against its parent) and the
        tail of its evaluation's log, when it has them."""
        found = {}
        if row.parent and row.commit not in ("", "-"):
            diff = self.repo.origin.git.show("--format=", "--no-color", row.commit)
            found["diff.patch"] = redact(diff[:DIFF_CHARS])
        log = log_path(self.study, row.experiment)
        if log.is_file():
            found[log.name] = redact(tail(log))
        return found
