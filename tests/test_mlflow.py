"""MLflow tracking (`trackers: [mlflow]`): a campaign is a parent run, each experiment a run nested
in it, read back through MLflow's own client: from the study's local store, from a real `mlflow
server` on loopback, and a tracker that cannot be reached costs a warning, never a row."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.ledger import Ledger, Row
from core.processes import stop_group
from core.study import StudyError, load_study
from tests.conftest import Scripted, campaign

pytestmark = [
    pytest.mark.usefixtures("prefect_server"),
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy"),  # MLflow's SQLAlchemy
]

SECRET = "hunter2-correct-horse-battery"  # the value of a secret-named variable: redacted
EVALUATE = """import model
print(f"score: {abs(model.X - 3.0):.6f}")
print(f"size: {model.X * 2:.3f}")
print("memory_gb: 1.5")
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`mlflow server` on loopback, booting from the moment it is made (it takes a while)."""

    def __init__(self, folder: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = os.environ | {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        self.log = open(folder / "server.log", "wb")  # noqa: SIM115
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", port,
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def wait_healthy(self, timeout_s: float = 180) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, Path(self.log.name).read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"mlflow server not healthy in {timeout_s}s")

    def stop(self) -> None:
        stop_group(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `mlflow server` for the module: it boots while the local-store campaign runs."""
    started = Server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def tracked(make_study, scripted: Scripted, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A study tracked in MLflow and its three experiments: the baseline, a keep whose change
    and hypothesis hold a secret's value, and a discard."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("TRACKER_TEST_PASSWORD", SECRET)
    scripted += [
        {"study/model.py": f"X = 3.5  # {SECRET}\n", "hypothesis": f"X near 3 ({SECRET})"},
        {"study/model.py": "X = 8.0\n", "hypothesis": "X far from 3"},
    ]
    return make_study(EVALUATE, yaml_extra="trackers: [mlflow]\n")


def rows(folder: Path) -> list[Row]:
    return Ledger(folder.parent / "runs" / "toy" / "results.tsv", "score").rows()


def read_text(client, run_id: str, path: str, into: Path) -> str:  # noqa: ANN001
    return Path(client.download_artifacts(run_id, path, str(into))).read_text()


def check_runs(uri: str, folder: Path, tmp_path: Path) -> None:
    """One parent run, FINISHED with the summary; one nested run per row, with its texts as
    params and tags, its numbers as metrics, its diff and log as artifacts; no secret."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("toy")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["metric"] == "score" and parent.data.params["rule"] == "threshold"
    assert parent.data.metrics["campaign.ran"] == 3 and parent.data.metrics["campaign.keep"] == 2
    assert parent.data.metrics["campaign.best"] == pytest.approx(0.5)
    history = client.get_metric_history(parent.info.run_id, "score")
    assert sorted((m.step, m.value) for m in history) == [(1, 7.0), (2, 0.5), (3, 5.0)]
    nested = {int(r.data.params["experiment"]): r for r in runs if r is not parent}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in nested.values())
    ledger = rows(folder)
    assert sorted(nested) == [r.experiment for r in ledger] == [1, 2, 3]
    for row in ledger:
        run = nested[row.experiment]
        said = {"commit": row.commit, "proposer": row.proposer, "hypothesis": row.description,
                "status": row.status.value, "parent": row.parent or "-"}  # fmt: skip
        assert {k: run.data.params[k] for k in said} == said
        assert {k: run.data.tags[k] for k in said} == said
        metrics = run.data.metrics
        assert metrics["score"] == pytest.approx(row.metric)
        assert metrics["size"] == pytest.approx(row.secondary["size"])
        assert metrics["memory_gb"] == pytest.approx(1.5)
        assert metrics["duration_s"] == pytest.approx(row.duration_s, abs=0.01)
        assert {"cost_usd", "tokens_in", "tokens_out"} <= metrics.keys()
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert f"{row.experiment}.log" in files
        log = read_text(
            client, run.info.run_id, f"{row.experiment}.log", tmp_path / str(row.experiment)
        )
        assert f"score: {row.metric:.6f}" in log
        assert ("diff.patch" in files) == (row.experiment > 1)  # the baseline changes nothing
        texts = [*run.data.params.values(), *run.data.tags.values(), log]
        assert not any(SECRET in t for t in texts)
    assert (
        nested[1].data.params["status"] == "keep" and nested[3].data.params["status"] == "discard"
    )
    assert "[redacted]" in nested[2].data.params["hypothesis"]
    diff = read_text(client, nested[2].info.run_id, "diff.patch", tmp_path / "diff")
    assert "-X = 10.0" in diff and "+X = 3.5  # [redacted]" in diff and SECRET not in diff


def test_a_campaign_is_a_parent_run_with_a_nested_run_per_experiment(
    tracked: Path, scripted: Scripted, server: Server, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the study's own store
    assert campaign(str(tracked), experiments=3, researcher=scripted).ran == 3
    store = tracked.parent / "runs" / "toy" / "mlflow"
    check_runs(f"sqlite:///{store / 'mlflow.db'}", tracked, tmp_path)
    assert (store / "artifacts").is_dir()


def test_a_campaign_tracked_on_an_mlflow_server(
    tracked: Path, scripted: Scripted, server: Server, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.wait_healthy())
    assert campaign(str(tracked), experiments=3, researcher=scripted).ran == 3
    check_runs(server.url, tracked, tmp_path)
    assert not (tracked.parent / "runs" / "toy" / "mlflow").exists()  # nothing stored locally


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_an_unreachable_tracker_is_a_warning_and_every_row_lands(
    tracked: Path, scripted: Scripted, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
    caught = Warnings()
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(caught)
    try:
        started = time.monotonic()
        assert campaign(str(tracked), experiments=3, researcher=scripted).ran == 3
        took = time.monotonic() - started
    finally:
        logger.removeHandler(caught)
    assert [(r.experiment, r.status.value) for r in rows(tracked)] == [
        (1, "keep"), (2, "keep"), (3, "discard")
    ]  # fmt: skip
    [warning] = [m for m in caught.messages if "tracker mlflow" in m]
    assert "did not start" in warning and "not tracked there" in warning, warning
    assert took < 60, f"the campaign waited on the tracker: {took:.0f}s"


def test_an_unknown_tracker_is_an_error_of_the_study_file(make_study) -> None:
    folder = make_study(yaml_extra="trackers: [mlflow, wandb]\n")
    with pytest.raises(StudyError, match=r"study\.yaml.*\n.*trackers\.1: .*'mlflow'"):
        load_study(folder)
