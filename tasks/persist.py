"""Persist: the ledger row, the learnings and the UI artifacts. Runs after crashes too."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from autoresearch import report
from autoresearch.lab import Lab
from evaluators.base import Measurement
from proposers.base import Outcome, Proposer


@task(name="persist", cache_policy=NO_CACHE)
def persist(
    lab: Lab,
    row: dict[str, Any],
    proposer: Proposer | None = None,
    outcome: Outcome | None = None,
    measurement: Measurement | None = None,
) -> None:
    learned = None
    if proposer and outcome:
        learned = proposer.learn(lab.context(row["experiment"]), outcome)
    lab.record(row, learned, measurement)
    get_run_logger().info(
        "#%s %s %s %s",
        row["experiment"],
        row["status"],
        row[lab.study.metric.name],
        row["description"],
    )


@task(name="publish", cache_policy=NO_CACHE)
def publish(lab: Lab) -> dict[str, Any]:
    """The study's results table and summary, under one key each, so the latest is easy to find."""
    key = report.artifact_key(lab.study.name)
    frame = report.results_frame(lab.ledger)
    create_table_artifact(
        key=f"{key}-results",
        table=frame.astype(str).to_dict(orient="records"),
        description=f"results.tsv of study {lab.study.name}",
    )
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=report.summary_markdown(lab),
        description=f"champion of study {lab.study.name}",
    )
    return report.summary(lab.ledger)
