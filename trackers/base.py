"""A tracker: an experiment-tracking service a campaign's rows are recorded in, as runs.

`start(study, run)` once a campaign: its parent run (`run` gives its name and tags);
`record(row, files)` once a row: a run nested in it, the row's texts as params and tags, its
numbers as metrics, `files` (an artifact's name -> its text: the diff, the log's tail) as
artifacts; `finish(summary)` when the campaign ends (`failed` in it: the campaign failed).

Whatever a tracker is handed is redacted already (steps.tracking). Any method may raise: the
caller logs it and goes on (the ledger has the row); a tracker that fails to start is off for
the campaign.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from core.ledger import Row, Status
from core.secrets import redact
from core.study import Study

MEASURED = (Status.KEEP, Status.DISCARD, Status.HOLDOUT)  # rows whose metric was measured
COUNTS = ("lines_added", "lines_removed", "tokens_in", "tokens_out")
COUNTS += ("tokens_cache_read", "tokens_cache_write")

Summary = Mapping[str, float | int | str | bool | None]  # steps.report.Summary's fields


class Tracker(ABC):
    name: ClassVar[str]

    @abstractmethod
    def start(self, study: Study, run: Mapping[str, str]) -> None:
        """Open the campaign's parent run (`run`: its `name`, and tags)."""

    @abstractmethod
    def record(self, row: Row, files: Mapping[str, str]) -> None:
        """One row, as a run nested in the campaign's."""

    @abstractmethod
    def finish(self, summary: Summary) -> None:
        """Close the campaign's run with its summary."""


def settings(study: Study) -> dict[str, str]:
    """What a campaign runs under, as its run's params: the study's metric and how it decides,
    the evaluator, the proposer, the search."""
    config, metric = study.config, study.config.metric
    said = {
        "study": study.name,
        "metric": metric.name,
        "direction": metric.direction,
        "min_delta": str(metric.min_delta),
        "rule": str(getattr(metric.decision, "rule", "")),
        "evaluator": config.evaluator.kind,
        "proposer": config.proposer.kind,
        "search": config.search.strategy,
        "parallel": str(study.parallel),
    }
    return {k: redact(v) for k, v in said.items()}


def texts(row: Row) -> dict[str, str]:
    """What a row says in words: each experiment's params (the commit, the proposer, the
    hypothesis, the status, the parent), then what only some rows have."""
    said = {
        "experiment": str(row.experiment),
        "commit": row.commit,
        "parent": row.parent or "-",
        "proposer": row.proposer,
        "hypothesis": row.description,
        "status": row.status.value,
    }
    more = {
        "evidence": row.evidence,
        "constraint": row.constraint,
        "suspect": row.suspect,
        "built_on": row.built_on,
        "key": row.key,
        "started_at": row.started_at,
    }
    return said | {k: v for k, v in more.items() if v}


def numbers(row: Row, metric: str) -> dict[str, float]:
    """Every number of a row: the metric and memory (when measured), the evaluator's other
    numbers, the duration, the dollars, the tokens and the lines changed."""
    found = dict(row.secondary)
    if row.status in MEASURED:
        found |= {metric: row.metric, "memory_gb": row.memory_gb}
    found |= {"duration_s": row.duration_s, "cost_usd": row.cost_usd}
    return found | {name: float(getattr(row, name)) for name in COUNTS}
