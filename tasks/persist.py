"""Persist: the ledger row, the learnings and the UI artifacts. Runs after crashes too."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from core.ledger import Row, Status, format_metric
from proposers.base import Learned, Proposer
from steps import report
from steps.lab import Lab
from steps.trial import Trial
from tasks.tracking import warn


@task(name="persist", cache_policy=NO_CACHE)
async def persist(
    lab: Lab, trial: Trial, status: Status, reason: str, researcher: Proposer | None = None
) -> Row:
    """Learn from the outcome (its tokens count in the row), record the row, write the learnings.

    The caller holds the lab's turn: rows land one at a time, in the order decided.
    """
    learned = Learned()
    if researcher is not None and trial.proposal is not None:
        try:
            learned = await asyncio.to_thread(lab.learn, researcher, trial, status, reason)
        except Exception as exc:  # a failed note must not cost the experiment's row
            get_run_logger().warning("learnings not updated: %s", exc)
    row = await asyncio.to_thread(lab.finish, trial, status, reason, learned)
    get_run_logger().info(
        "#%s %s %s %s", row.experiment, row.status, format_metric(row.metric), row.description
    )
    warn(await asyncio.to_thread(lab.records.tracking.record, row))  # landed: tracked too
    return row


@task(name="publish", cache_policy=NO_CACHE)
async def publish(lab: Lab) -> report.Summary:
    """The study's results table and summary, under one key each, so the latest is easy to find;
    only when the ledger changed since they were last published.

    Also writes progress.png and report.html; the summary carries the chart inline (a data-URI
    PNG, which the UI renders), the cost so far and the report's path.
    """
    summary = report.summary(lab.records.ledger, lab.study.metric.direction)
    html = lab.study.state_dir / "report.html"
    if not await asyncio.to_thread(lab.records.unpublished):
        return replace(summary, report=str(html) if html.exists() else None)
    key = report.artifact_key(lab.study.name)
    frame = report.results_frame(lab.records.ledger)
    await acreate_table_artifact(
        key=f"{key}-results",
        table=frame.astype(str).to_dict(orient="records"),
        description=f"results.tsv of study {lab.study.name}",
    )
    report_path = None
    chart = ""
    if len(frame):
        try:
            report_path, chart = await asyncio.to_thread(_report, lab)
        except Exception as exc:  # the report is a view: never fail the campaign over it
            get_run_logger().warning("report of %s not written: %s", lab.study.name, exc)
    await acreate_markdown_artifact(
        key=f"{key}-summary",
        markdown=report.summary_markdown(lab.study, lab.records.ledger, chart, report_path),
        description=f"champion of study {lab.study.name}",
    )
    await asyncio.to_thread(lab.records.published)
    return replace(summary, report=str(report_path) if report_path else None)


def _report(lab: Lab) -> tuple[Path, str]:
    png, html = report.write_report(lab.study)
    return html, report.chart_markdown(lab.study, png)
