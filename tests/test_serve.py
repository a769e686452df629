"""Against a real Prefect server: deployments applied, runs triggered, scheduled, and one writer.

One server (a `prefect server start` subprocess on a free loopback port, temporary PREFECT_HOME)
and one `autoresearch serve` (deploy + process worker) for the module; every process started
here leads its own process group and is killed as a group at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoresearch.server import Server, request, start_server
from core.lock import StudyLock, StudyLocked
from core.processes import group_members, stop_group
from tests.conftest import COOLING, ROOT, commit_all

AUTORESEARCH = str(Path(sys.executable).with_name("autoresearch"))
GATED_EVALUATE = """import os, time, model
while not os.path.exists({gate!r}):
    time.sleep(0.05)
print(f"score: {{abs(model.X - 3.0):.6f}}")
"""


# helpers -----------------------------------------------------------------------------------


def api(server: Server, path: str, body: Any = None, method: str | None = None) -> Any:
    """One Prefect REST call, with the server's credentials; a 503 (SQLite busy under
    concurrent writers) is tried again."""
    data = json.dumps(body).encode() if body is not None else None
    req = request(server.api_url + path, server.auth, data)
    req.method = method or ("POST" if data is not None else "GET")
    for attempt in range(6):
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read()
            return json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == 5:
                raise
            time.sleep(0.5 * (attempt + 1))


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def study_copy(repo: Path, name: str, evaluate: str | None = None) -> Path:
    folder = repo / name
    shutil.copytree(COOLING, folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    spec = (folder / "study.yaml").read_text().replace("name: cooling", f"name: {name}")
    (folder / "study.yaml").write_text(spec)
    if evaluate:
        (folder / "evaluate.py").write_text(evaluate)
        (folder / "model.py").write_text("X = 10.0\n")
        spec = spec.replace("name: rmse", "name: score")  # the gate: a file outside the study
        (folder / "study.yaml").write_text(spec + f"sandbox: {{readable: ['{repo.parent}']}}\n")
    return folder


class Served:
    """The module's server, its `autoresearch serve`, the studies and the child environment."""

    def __init__(
        self, server: Server, env: dict[str, str], studies: dict[str, Path], gate: Path
    ) -> None:
        self.server, self.env, self.studies, self.gate = server, env, studies, gate
        self.procs: list[subprocess.Popen[str]] = []
        self.serve_output = ""

    def start(self, *args: str, log: Path | None = None) -> subprocess.Popen[str]:
        """An `autoresearch` subprocess leading its own process group (killed as one)."""
        out = log.open("w") if log else subprocess.PIPE
        proc = subprocess.Popen(
            [AUTORESEARCH, *args],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, timeout_s: float = 90) -> tuple[int, str]:
        proc = self.start(*args)
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, out

    def deployment(self, name: str) -> dict[str, Any]:
        return api(self.server, f"/deployments/name/campaign/{name}")

    def runs_of(self, deployment: str) -> list[dict[str, Any]]:
        dep_id = self.deployment(deployment)["id"]
        body = {"flow_runs": {"deployment_id": {"any_": [dep_id]}}}
        return api(self.server, "/flow_runs/filter", body)


def deployments_file(tmp_path: Path, names: list[str]) -> Path:
    """The bundled cooling deployment, pointed at copies of the study, plus a fast schedule.

    tick runs every 20 s from an anchor a little ahead, so that its first run comes soon after
    the deployment exists, without a run every few seconds loading this 2-core machine.
    """
    anchor = datetime.now(UTC) + timedelta(seconds=18)
    real = yaml.safe_load((ROOT / "deployments.yaml").read_text())
    cooling = next(d for d in real["deployments"] if d["name"] == "cooling")
    out = []
    for name in names:
        item = json.loads(json.dumps(cooling))
        item["name"] = name
        item["parameters"] = {"study": str(tmp_path / "repo" / name), "proposer": "mutate"}
        item["parameters"]["experiments"] = 1
        tick = {"interval": 20, "anchor_date": anchor.isoformat(), "timezone": "UTC"}
        item["schedules"] = [tick] if name == "tick" else []
        item["work_pool"]["name"] = "test-pool"
        out.append(item)
    path = tmp_path / "deployments.yaml"
    path.write_text(yaml.safe_dump({"name": "test", "deployments": out}))
    return path


# fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    tmp.chmod(0o755)  # `readable` below: as root, the evaluation is nobody, and reads as others
    repo = tmp / "repo"
    gate = tmp / "gate-open"
    studies = {
        "cooling": study_copy(repo, "cooling"),
        "tick": study_copy(repo, "tick"),
        "gate": study_copy(repo, "gate", GATED_EVALUATE.format(gate=str(gate))),
    }
    commit_all(repo)
    home = tmp / "prefect-home"
    fast = {
        "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    server = start_server(home, **fast)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ANTHROPIC_"))}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": server.api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    ctx = Served(server, env, studies, gate)
    print(f"prefect server started in {server.started_in_s:.1f}s")
    deployments = deployments_file(tmp, list(studies))
    log = tmp / "serve.log"
    serve = ctx.start("serve", "--deployments", str(deployments), log=log)
    try:

        def ready() -> bool:
            assert serve.poll() is None, f"serve exited:\n{log.read_text()}"
            return "worker on work pool" in log.read_text()

        wait_for("autoresearch serve to deploy and start its worker", ready, 120)
        ctx.serve_output = log.read_text()
        yield ctx
    finally:
        for proc in reversed(ctx.procs):
            stop_group(proc)
        server.stop()
        for proc in [*ctx.procs, server.process]:
            assert proc is not None
            assert group_members(proc.pid) == [], f"left running: {proc.args}"


# tests -------------------------------------------------------------------------------------


def test_serve_connects_and_deploys(served: Served) -> None:
    out = served.serve_output
    assert served.server.auth and served.server.auth not in out  # required, never printed
    assert f"Prefect UI: {served.server.api_url.removesuffix('/api')}" in out
    assert "deployed from" in out and "cooling, tick, gate" in out
    dep = served.deployment("cooling")
    assert dep["entrypoint"] == "flows/campaign.py:campaign"
    assert dep["work_pool_name"] == "test-pool"
    assert dep["global_concurrency_limit"]["limit"] == 1
    assert dep["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    pool = api(served.server, "/work_pools/test-pool")
    assert pool["type"] == "process"


def test_the_ui_talks_to_its_own_api_on_any_port(served: Served) -> None:
    """The module's server listens on a free port, not 4200: its UI must be told so."""
    assert not served.server.api_url.endswith(":4200/api")
    with urllib.request.urlopen(served.server.ui_url + "/ui-settings", timeout=30) as resp:
        settings = json.loads(resp.read())
    assert settings["api_url"] == served.server.api_url


def test_trigger_watch_and_artifacts(served: Served) -> None:
    code, out = served.cli(
        "trigger", str(served.studies["cooling"]), "--param", "experiments=2", "--watch"
    )
    assert code == 0, out
    run_id = re.search(r"\(([0-9a-f-]{36})\) of campaign/cooling", out).group(1)  # type: ignore[union-attr]
    states = re.findall(r"^\d\d:\d\d:\d\d (\w+)", out, re.M)
    assert states[-1] == "Completed" and "Running" in states
    run = api(served.server, f"/flow_runs/{run_id}")
    assert run["state_type"] == "COMPLETED" and run["parameters"]["experiments"] == 2

    state_dir = served.studies["cooling"].parent / "runs" / "cooling"
    rows = (state_dir / "results.tsv").read_text().splitlines()[1:]
    assert len(rows) == 2

    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
    mine = {a["key"]: a for a in api(served.server, "/artifacts/filter", body) if a["key"]}
    assert {"cooling-results", "cooling-summary", "cooling-progress"} <= set(mine)
    keys = ["cooling-results", "cooling-summary", "cooling-progress"]
    latest = api(served.server, "/artifacts/latest/filter", {"artifacts": {"key": {"any_": keys}}})
    latest = {a["key"]: a for a in latest}
    table = latest["cooling-results"]["data"]
    table = json.loads(table) if isinstance(table, str) else table
    assert [r["experiment"] for r in table] == ["1", "2"]
    assert table[0]["description"] == "baseline"
    summary = latest["cooling-summary"]["data"]
    assert "data:image/png;base64," in summary and "Cost so far" in summary
    assert (state_dir / "report.html").as_uri() in summary
    assert (state_dir / "report.html").exists() and (state_dir / "progress.png").exists()
    assert float(latest["cooling-progress"]["data"]) == 100.0


def test_a_short_interval_schedule_runs(served: Served) -> None:
    def completed() -> list[dict[str, Any]]:
        runs = served.runs_of("tick")
        return [r for r in runs if r["auto_scheduled"] and r["state_type"] == "COMPLETED"]

    done = wait_for("a scheduled run of tick to complete", completed)
    assert done[0]["parameters"]["experiments"] == 1
    tick = served.deployment("tick")
    api(served.server, f"/deployments/{tick['id']}", {"paused": True}, method="PATCH")
    rows = (served.studies["tick"].parent / "runs" / "tick" / "results.tsv").read_text()
    assert len(rows.splitlines()) - 1 >= 1


def test_one_writer_per_study(served: Served) -> None:
    """A CLI run holds the study; a second CLI run is refused, an ad-hoc run set to wait waits."""
    study = served.studies["gate"]
    lock = StudyLock(study.parent / "runs" / "gate")
    holder = served.start("run", str(study), "-n", "2", "--proposer", "mutate")
    wait_for("the CLI run to take the lock", lambda: (lock.holder() or {}).get("pid") == holder.pid)

    waiter = served.start(
        "trigger", str(study), "--param", "experiments=1", "--param", "lock_wait_s=120", "--watch"
    )
    code, out = served.cli("run", str(study), "-n", "1", "--proposer", "mutate")
    assert code == StudyLocked.exit_code, out
    assert f"study gate is being written by pid {holder.pid}" in " ".join(out.split())
    assert "refusing a second writer" in out

    def waiting() -> bool:
        return any(r["state_type"] == "RUNNING" for r in served.runs_of("gate"))

    wait_for("the ad-hoc run to start and wait for the lock", waiting)
    time.sleep(1.0)  # it is inside the flow now, blocked on the lock
    assert (lock.holder() or {}).get("pid") == holder.pid
    served.gate.touch()
    out, _ = holder.communicate(timeout=60)
    assert holder.returncode == 0, out
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, out
    assert "Completed" in out

    ledger = (study.parent / "runs" / "gate" / "results.tsv").read_text().splitlines()
    header, *rows = [line.split("\t") for line in ledger]
    numbers = [int(r[header.index("experiment")]) for r in rows]
    assert numbers == [1, 2, 3]  # two writers, one after the other, no experiment twice
    started = [r[header.index("started_at")] for r in rows]
    assert started == sorted(started)


# without a server ---------------------------------------------------------------------------

HOLD = """import sys
from core.lock import StudyLock
lock = StudyLock(sys.argv[1], "toy", what="the holder")
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def hold(state_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout and proc.stdout.readline() == "held\n"
    return proc


def test_lock_refuses_a_second_writer_then_waits_when_asked(tmp_path: Path) -> None:
    holder = hold(tmp_path)
    try:
        with pytest.raises(StudyLocked) as refused:
            StudyLock(tmp_path, "toy").acquire()
        message = str(refused.value)
        assert f"study toy is being written by pid {holder.pid} on " in message
        assert "since 20" in message and "(the holder)" in message
        assert str(tmp_path / "lock") in message

        started = time.monotonic()
        with pytest.raises(StudyLocked, match="after waiting 0.5s"):
            StudyLock(tmp_path, "toy", wait_s=0.5).acquire()
        assert time.monotonic() - started >= 0.5

        waiter = StudyLock(tmp_path, "toy", wait_s=30, what="the waiter")
        assert holder.stdin is not None
        holder.stdin.close()  # the holder ends; the waiter gets the lock
        with waiter:
            assert waiter.holder()["pid"] == os.getpid()  # type: ignore[index]
            assert waiter.holder()["what"] == "the waiter"  # type: ignore[index]
        assert waiter.holder() is None  # released: nobody is named any more
    finally:
        stop_group(holder)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = hold(tmp_path)
    os.killpg(holder.pid, 9)
    holder.wait()
    with StudyLock(tmp_path, "toy") as lock:
        assert lock.held


def test_bundled_deployments_file() -> None:
    from autoresearch.server import load_deployments, skipped

    items = load_deployments(ROOT / "deployments.yaml")
    studies = {Path(d["parameters"]["study"]).name: d for d in items}
    assert {"cooling", "forecast", "gpt-train", "cold-email"} <= set(studies)
    assert studies["cold-email"]["schedules"] == [{"interval": 14400, "timezone": "UTC"}]
    for d in items:
        assert d["entrypoint"] == "flows/campaign.py:campaign"
        assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
        assert d["work_pool"]["name"] == "autoresearch"
        assert (ROOT / d["parameters"]["study"]).is_dir()
        assert {"experiments", "minutes"} & set(d["parameters"])
        (schedule,) = d["schedules"]
        assert schedule.get("interval", 0) >= 3600 or schedule.get("cron")
    missing = [
        n
        for n, d in studies.items()
        if not (ROOT / d["parameters"]["study"] / "study.yaml").exists()
    ]
    assert skipped(ROOT / "deployments.yaml") == missing


def test_bad_deployments_and_trigger_input_are_named(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from autoresearch.cli import main
    from autoresearch.server import ServerError, free_port, load_deployments

    bad = tmp_path / "deployments.yaml"
    bad.write_text("deployments:\n  - name: x\n    work_pool: {name: p}\n")
    with pytest.raises(ServerError, match=r"deployments.yaml: deployments\[0\].entrypoint"):
        load_deployments(bad)
    runner = CliRunner()
    result = runner.invoke(main, ["trigger", "cooling", "--param", "experiments"])
    assert result.exit_code == 2 and "'experiments' is not KEY=VALUE" in result.output
    url = f"http://127.0.0.1:{free_port()}/api"
    result = runner.invoke(main, ["trigger", "cooling"], env={"PREFECT_API_URL": url})
    assert result.exit_code == 1 and f"no Prefect server answers at {url}" in result.output
