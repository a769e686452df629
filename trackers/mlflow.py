"""MLflow: a campaign is a run of the study's MLflow experiment, each row a run nested in it.

Where: MLFLOW_TRACKING_URI when it is set (a tracking server, a database), else a SQLite store
in the study's runs folder (runs/<name>/mlflow/mlflow.db, its artifacts beside it), which
`mlflow ui --backend-store-uri sqlite:///runs/<name>/mlflow/mlflow.db` shows. Through
MlflowClient only, never the fluent API: no active run, no global state, safe from the threads
the campaign records from.

A tracking server that does not answer is given up on in seconds, not MLflow's minutes of
retries: its HTTP retries and timeout are bounded, unless MLFLOW_HTTP_REQUEST_* says otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core.ledger import Row, Status
from core.study import Study
from trackers.base import MEASURED, Summary, Tracker, numbers, settings, texts

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# MLflow's defaults retry an unreachable server for about four minutes, at every call
BOUNDED = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PARAM_CHARS, TAG_CHARS = 6000, 8000  # MLflow's limits on a param's and a tag's value
STUDY_TAG = "autoresearch.study"
PARAMS = ("experiment", "commit", "parent", "proposer", "hypothesis", "status")


def store(study: Study) -> Path:
    """The study's own MLflow store, when MLFLOW_TRACKING_URI names none."""
    return study.state_dir / "mlflow"


def _ms(started_at: str) -> int | None:
    try:
        return int(datetime.fromisoformat(started_at).timestamp() * 1000)
    except ValueError:
        return None


def _experiment(client: MlflowClient, name: str, artifacts: str | None) -> str:
    """The study's MLflow experiment (of its name), made or restored when need be."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name, artifacts, {STUDY_TAG: name})
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


class MLflow(Tracker):
    name = "mlflow"

    def __init__(self) -> None:
        self.client: MlflowClient | None = None
        self.experiment_id = ""
        self.parent = ""  # the campaign's run
        self.study = ""
        self.metric = ""

    def start(self, study: Study, run: Mapping[str, str]) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient  # seconds: only when a study is tracked

        for name, value in BOUNDED.items():
            os.environ.setdefault(name, value)
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        artifacts = None
        if not uri:
            store(study).mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{store(study) / 'mlflow.db'}"
            artifacts = (store(study) / "artifacts").as_uri()
        client = MlflowClient(tracking_uri=uri)
        experiment_id = _experiment(client, study.name, artifacts)
        name = run.get("name") or f"{study.name} campaign"
        tags = {k: v[:TAG_CHARS] for k, v in run.items() if k != "name"}
        created = client.create_run(
            experiment_id, run_name=name, tags={STUDY_TAG: study.name} | tags
        )
        params = [Param(k, v[:PARAM_CHARS]) for k, v in settings(study).items()]
        client.log_batch(created.info.run_id, params=params)
        self.client, self.experiment_id, self.parent = client, experiment_id, created.info.run_id
        self.study, self.metric = study.name, study.metric.name

    def _client(self) -> MlflowClient:
        if self.client is None:
            raise RuntimeError("the MLflow tracker was not started")
        return self.client

    def record(self, row: Row, files: Mapping[str, str]) -> None:
        from mlflow.entities import Metric, Param

        client = self._client()
        said = texts(row)
        tags = {STUDY_TAG: self.study, "mlflow.parentRunId": self.parent}
        tags |= {"mlflow.note.content": row.description[:TAG_CHARS]}
        tags |= {k: v[:TAG_CHARS] for k, v in said.items()}
        start = _ms(row.started_at) or int(time.time() * 1000)
        run = client.create_run(
            self.experiment_id, start, tags, run_name=f"{self.study}-{row.experiment}"
        ).info.run_id
        at = start + int(row.duration_s * 1000)
        params = [Param(k, v[:PARAM_CHARS]) for k, v in said.items() if k in PARAMS]
        metrics = [Metric(k, v, at, 0) for k, v in numbers(row, self.metric).items()]
        client.log_batch(run, metrics=metrics, params=params, tags=[])
        for name, text in files.items():
            client.log_text(run, text, name)
        client.set_terminated(run, "FAILED" if row.status == Status.CRASH else "FINISHED", at)
        if row.status in MEASURED:  # the campaign's run: the metric, experiment by experiment
            client.log_metric(self.parent, self.metric, row.metric, at, row.experiment)

    def finish(self, summary: Summary) -> None:
        from mlflow.entities import Metric, RunTag

        client = self._client()
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"campaign.{k}", float(v), now, 0)
            for k, v in summary.items()
            if isinstance(v, int | float) and k != "failed"
        ]
        tags = [
            RunTag(f"campaign.{k}", v[:TAG_CHARS])
            for k, v in summary.items()
            if isinstance(v, str) and v
        ]
        client.log_batch(self.parent, metrics=metrics, tags=tags)
        client.set_terminated(self.parent, "FAILED" if summary.get("failed") else "FINISHED")
        self.client = None


TRACKER = MLflow
