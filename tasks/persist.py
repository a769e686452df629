"""Persist: the ledger row, the learnings and the UI artifacts. Runs after crashes too."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from autoresearch import report
from autoresearch.lab import Lab, add_usage
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
    """Learn from the outcome (its tokens count in the row), record the row, write the learnings."""
    learned = None
    if proposer and outcome:
        try:
            learned = proposer.learn(lab.context(row["experiment"]), outcome)
        except Exception as exc:  # a failed note must not cost the experiment's row
            get_run_logger().warning("learnings not updated: %s", exc)
        usage = getattr(proposer, "last_learn_usage", None)
        if learned is not None and usage is not None:
            row = add_usage(row, usage, getattr(proposer, "last_learn_cost_usd", 0.0))
    lab.record(row, measurement)
    if learned is not None:
        lab.write_learnings(learned)
    get_run_logger().info(
        "#%s %s %s %s",
        row["experiment"],
        row["status"],
        row[lab.study.metric.name],
        row["description"],
    )


@task(name="publish", cache_policy=NO_CACHE)
def publish(lab: Lab) -> dict[str, Any]:
    """The study's results table and summary, under one key each, so the latest is easy to find.

    Also writes progress.png and report.html; the summary carries the chart inline (a data-URI
    PNG, which the UI renders), the cost so far and the report's path.
    """
    key = report.artifact_key(lab.study.name)
    frame = report.results_frame(lab.ledger)
    create_table_artifact(
        key=f"{key}-results",
        table=frame.astype(str).to_dict(orient="records"),
        description=f"results.tsv of study {lab.study.name}",
    )
    report_path = None
    chart = ""
    if len(frame):
        try:
            report_path = report.write_report(lab.study)[1]
            chart = report.chart_markdown(lab.study, lab.ledger)
        except Exception as exc:  # the report is a view: never fail the campaign over it
            get_run_logger().warning("report of %s not written: %s", lab.study.name, exc)
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=report.summary_markdown(lab, chart, report_path),
        description=f"champion of study {lab.study.name}",
    )
    return report.summary(lab.ledger) | {"report": str(report_path) if report_path else None}
