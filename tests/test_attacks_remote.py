"""Attacks on remote measurement (issue 16, holes 3, 4 and 7), against a real Prefect server:
the session's (tests/conftest.py), which the tool starts as it starts any temporary server.

(a) a stranger's forging script, without the API's credentials, gets 401;
(b) with the credentials but without the signing key, a forged measurement is a crash row that
    names why, never a keep;
(c) a deployment on a worker's pool whose pull step runs a shell script, a flow run that sets
    the command by job variables, and an unsigned request: `autoresearch worker` runs none of
    them (the marker files stay absent) and says why;
(d) the Prefect home is 0700, its database and credentials 0600.

Written as the attacker would, with raw HTTP and the file names the tool documents, so that
each test runs (and fails) on the code before the fix too.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.ledger import Status
from steps.lab import Lab
from tests.conftest import Scripted, campaign, commit_all, git
from tests.test_workers import API_AUTH, EVALUATE, authenticated, home_auth, wait_for_workers

__all__ = ["authenticated"]  # the module's client, shared with test_workers
pytestmark = pytest.mark.usefixtures("prefect_server", "authenticated")
AUTORESEARCH = str(Path(sys.executable).with_name("autoresearch"))
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
FORGED = {  # a better score than any candidate of the toy study: 4.2e-05
    "measurement": {
        "status": "ok", "metric": 4.2e-05, "secondary": {}, "reason": "", "log_tail": "",
        "duration_s": 0.1, "samples": [4.2e-05], "tags": {},
    },
    "champion_runs": None,
}  # fmt: skip


def call(path: str, body: Any = None, auth: str | None = None) -> tuple[int, Any]:
    """One raw REST call, as a 30-line script would make it: (status, JSON answer)."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(os.environ["PREFECT_API_URL"] + path, data, headers)
    for attempt in range(6):
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == 5:  # 503: SQLite busy, tried again
                return exc.code, None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def ok(path: str, body: Any = None, auth: str | None = None) -> Any:
    code, data = call(path, body, auth)
    assert code in (200, 201), f"{path}: HTTP {code}"
    return data


def artifact(run_id: str, body: Any) -> dict[str, Any]:
    text = f"```json\n{json.dumps(body)}\n```"
    return {"key": f"measurement-{run_id}", "type": "markdown", "data": text}


def wait_final(run_id: str, auth: str | None, timeout_s: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = ok(f"/flow_runs/{run_id}", auth=auth)
        if run["state_type"] in FINAL:
            return run
        time.sleep(0.3)
    raise AssertionError(f"flow run {run_id} did not end in {timeout_s:g}s")


# (a) ---------------------------------------------------------------------------------------


def test_a_the_forging_script_without_credentials_gets_401(authenticated: str | None) -> None:
    flow = ok("/flows/", {"name": "victim"}, authenticated)
    run = ok("/flow_runs/", {"flow_id": flow["id"]}, authenticated)
    forged = artifact(run["id"], FORGED) | {"flow_run_id": run["id"]}
    completed = {"state": {"type": "COMPLETED", "name": "Completed"}, "force": True}
    assert call("/flow_runs/filter", {})[0] == 401
    assert call("/artifacts/", forged)[0] == 401
    assert call(f"/flow_runs/{run['id']}/set_state", completed)[0] == 401
    assert call("/deployments/", {"name": "evil", "flow_id": flow["id"]})[0] == 401
    assert call("/flow_runs/filter", {}, auth="autoresearch:guessed")[0] == 401
    key = {"artifacts": {"key": {"any_": [forged["key"]]}}}
    assert ok("/artifacts/filter", key, authenticated) == []  # nothing was written
    assert ok(f"/flow_runs/{run['id']}", auth=authenticated)["state_type"] != "COMPLETED"


def test_a_a_worker_without_the_credentials_stops_at_once(tmp_path: Path) -> None:
    from core.processes import stop_group

    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "README").write_text("a clone\n")
    commit_all(clone)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_AUTH_STRING"}
    env["PREFECT_HOME"] = str(tmp_path / "another-home")  # no api-auth there
    proc = subprocess.Popen(
        [AUTORESEARCH, "worker", "--pool", "no-credentials", "--clone", str(clone)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        stop_group(proc)
    assert proc.returncode == 1 and "401 Unauthorized" in out, out


# (b) ---------------------------------------------------------------------------------------


def forger(auth: str | None, study: str, body: Any, stop: threading.Event) -> None:
    """The attack of issue 16, with the API's credentials: no worker runs; each flow run of
    `evaluate/<study>` gets a measurement artifact and is set Completed. If the attack fails
    or takes too long, the campaign is stopped (it would wait for a worker forever)."""
    from core import interrupt

    done: set[str] = set()
    deadline = time.monotonic() + 90
    completed = {"state": {"type": "COMPLETED", "name": "Completed"}, "force": True}
    try:
        while not stop.is_set():
            assert time.monotonic() < deadline, "the campaign's flow run never came"
            code, dep = call(f"/deployments/name/evaluate/{study}", auth=auth)
            if code == 200:
                of_it = {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}}
                for run in ok("/flow_runs/filter", of_it, auth):
                    if run["id"] not in done and run["state_type"] not in FINAL:
                        forged = artifact(run["id"], body) | {"flow_run_id": run["id"]}
                        ok("/artifacts/", forged, auth)
                        ok(f"/flow_runs/{run['id']}/set_state", completed, auth)
                        done.add(run["id"])
            stop.wait(0.2)
    except BaseException:
        interrupt.stop_now.set()
        raise


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (FORGED, "unsigned"),
        ({"values": FORGED, "signature": "0" * 64}, "bad signature"),
    ],
    ids=["unsigned", "signed-without-the-key"],
)
def test_b_a_forged_measurement_is_a_crash_row_not_a_keep(
    make_study: Any, tmp_path: Path, authenticated: str | None, body: Any, named: str
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    name = f"forged-{uuid.uuid4().hex[:8]}"
    folder = make_study(EVALUATE, yaml_extra=f"remote: {remote}\n")
    spec = folder / "study.yaml"
    text = spec.read_text().replace("name: toy", f"name: {name}")
    spec.write_text(text.replace("timeout_s: 20}", "timeout_s: 20, work_pool: no-worker-here}"))
    git(folder.parent, "commit", "-qam", "measured on a pool no worker serves")
    stop = threading.Event()
    attacker = threading.Thread(target=forger, args=(authenticated, name, body, stop))
    attacker.start()
    try:
        campaign(str(folder), experiments=1, researcher=Scripted())
    finally:
        stop.set()
        attacker.join(30)
        from core import interrupt

        interrupt.clear()
    (row,) = Lab.open(folder).records.ledger.rows()
    assert row.status == Status.CRASH, row
    assert row.metric != pytest.approx(4.2e-05)
    assert "measurement of flow run" in row.evidence and named in row.evidence, row.evidence


# (c) ---------------------------------------------------------------------------------------


class Worker:
    """One `autoresearch worker` on the pool `attack`, its log, and the marker files."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, markers: Path) -> None:
        self.proc, self.log, self.markers = proc, log, markers

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def attacked_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    from core.processes import stop_group

    tmp = tmp_path_factory.mktemp("attacked")
    clone = tmp / "clone"
    clone.mkdir()
    (clone / "README").write_text("a clone of the studies' repository\n")
    commit_all(clone)
    markers = tmp / "markers"
    markers.mkdir()
    markers.chmod(0o777)  # the worker runs as root here: nothing must need more than it has
    log = tmp / "worker.log"
    env = os.environ | {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [AUTORESEARCH, "worker", "--pool", "attack", "--clone", str(clone)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(proc, log, markers)
    try:
        wait_for_workers("attack", 1)
        yield worker
    finally:
        stop_group(proc)


def submit(auth: str | None, deployment: dict[str, Any], run: dict[str, Any]) -> str:
    """A deployment on the worker's pool and a flow run of it, as a client with credentials."""
    flow = ok("/flows/", {"name": deployment.pop("flow")}, auth)
    body = {"flow_id": flow["id"], "work_pool_name": "attack"} | deployment
    dep = ok("/deployments/", body, auth)
    return str(ok(f"/deployments/{dep['id']}/create_flow_run", run, auth)["id"])


def attacks(markers: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any], str]]:
    """name -> (deployment, flow run, what the refusal names)."""
    request = {
        "study": "study", "remote": str(markers), "experiment": 1, "commit": "0" * 40,
        "champion": "0" * 40,
    }  # fmt: skip
    shell = {"prefect.deployments.steps.run_shell_script": {"script": f"touch {markers}/pull"}}
    return {
        "pull-step": (
            {"name": "evil", "flow": "evil", "entrypoint": "flows/evil.py:evil",
             "pull_steps": [shell]},
            {},
            "flows/evil.py:evil",
        ),
        "pull-step-on-evaluate": (
            {"name": "evil", "flow": "evaluate", "entrypoint": "flows.remote.evaluate",
             "pull_steps": [shell]},
            {"parameters": request},
            "pull steps (prefect.deployments.steps.run_shell_script)",
        ),
        "job-variables": (
            {"name": "evil-command", "flow": "evaluate", "entrypoint": "flows.remote.evaluate"},
            {"parameters": request,
             "job_variables": {"command": f"touch {markers}/command", "env": {"X": "1"}}},
            "job variables (command, env)",
        ),
        "unsigned-request": (
            {"name": "evil-request", "flow": "evaluate", "entrypoint": "flows.remote.evaluate"},
            {"parameters": request | {"remote": f"--upload-pack=touch {markers}/request"}},
            "the request is unsigned",
        ),
    }  # fmt: skip


@pytest.mark.parametrize(
    "attack", ["pull-step", "pull-step-on-evaluate", "job-variables", "unsigned-request"]
)
def test_c_the_worker_runs_nothing_but_the_tools_evaluate_flow(
    attacked_worker: Worker, authenticated: str | None, attack: str
) -> None:
    deployment, run, named = attacks(attacked_worker.markers)[attack]
    run_id = submit(authenticated, deployment, run)
    final = wait_final(run_id, authenticated)
    assert list(attacked_worker.markers.iterdir()) == []  # nothing ran
    assert final["state_type"] != "COMPLETED"
    deadline = time.monotonic() + 10
    while f"refused flow run {run_id}" not in attacked_worker.output():
        assert time.monotonic() < deadline, attacked_worker.output()[-3000:]
        time.sleep(0.2)
    said = [
        line
        for line in attacked_worker.output().splitlines()
        if f"refused flow run {run_id}" in line
    ]
    assert named in said[0], said
    assert named in (final["state"]["message"] or ""), final["state"]


def test_c_the_job_template_cannot_set_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """A work pool's template (anyone with credentials may edit it) sets command, folder and
    environment; the worker keeps its own."""
    from prefect.client.schemas.objects import Flow, FlowRun
    from prefect.client.schemas.responses import DeploymentResponse

    from autoresearch.worker import COMMAND, EvaluateJobConfiguration
    from steps.worker import ENTRYPOINT, FLOW, sign_request

    monkeypatch.setenv("AUTORESEARCH_SIGNING_KEY", "k" * 40)
    flow = Flow(name=FLOW)
    parameters = sign_request(b"k" * 40, {"study": "s", "experiment": 1})
    run = FlowRun(flow_id=flow.id, parameters=parameters)
    deployment = DeploymentResponse(name="s", flow_id=flow.id, entrypoint=ENTRYPOINT)
    config = EvaluateJobConfiguration(
        command="sh -c 'touch /tmp/owned'", env={"LD_PRELOAD": "/tmp/evil.so"}, working_dir="/"
    )
    config.prepare_for_flow_run(run, deployment, flow)
    assert config.command == COMMAND and "autoresearch.worker execute" in COMMAND
    assert config.env == {} and config.working_dir is None


# (d) ---------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_d_the_prefect_home_is_private(prefect_server: Any, tmp_path: Path) -> None:
    from autoresearch.server import temporary_server

    home = Path(os.environ["PREFECT_HOME"])
    assert mode(home) == 0o700
    assert mode(home / "prefect.db") == 0o600
    assert home_auth() is not None and mode(home / API_AUTH) == 0o600
    for other in home.glob("prefect.db-*"):
        assert mode(other) == 0o600, other
    if (home / "signing.key").exists():
        assert mode(home / "signing.key") == 0o600

    opened = tmp_path / "home"  # a home left open by an older version: closed at the start
    opened.mkdir()
    opened.chmod(0o755)
    (opened / "prefect.db").write_bytes(b"")
    (opened / "prefect.db").chmod(0o644)
    (opened / "server.log").write_text("old logs\n")
    (opened / "server.log").chmod(0o644)
    server = temporary_server(opened)
    try:
        assert mode(opened) == 0o700
        assert mode(opened / "prefect.db") == 0o600
        assert mode(opened / "server.log") == 0o600
        assert mode(opened / API_AUTH) == 0o600
    finally:
        server.stop()


# the signatures, without a server ------------------------------------------------------------


def test_a_measurement_verifies_for_its_own_run_and_commits_only() -> None:
    from evaluators.base import Measurement
    from steps.worker import as_json, as_text, read_measurement, signed

    key, other = b"k" * 40, b"o" * 40
    values = as_json(Measurement.of(1.5), None)
    good = as_text(signed(key, "run-a", 3, "c" * 40, "p" * 40, values))

    def read(texts: list[str], run: str = "run-a", commit: str = "c" * 40) -> Measurement:
        return read_measurement(texts, key, run, 3, commit, "p" * 40)[0]

    assert read([good]).metric == 1.5
    forged = as_text(FORGED)
    assert read([forged, good]).metric == 1.5  # a forgery beside it hides nothing
    assert read([good, forged]).metric == 1.5
    assert "unsigned" in read([forged]).reason
    assert "bad signature" in read([good], run="run-b").reason  # replayed for another run
    assert "bad signature" in read([good], commit="d" * 40).reason  # or another candidate
    elsewhere = as_text(signed(other, "run-a", 3, "c" * 40, "p" * 40, values))
    assert "bad signature" in read([elsewhere]).reason
    better = as_text(
        signed(key, "run-a", 3, "c" * 40, "p" * 40, as_json(Measurement.of(1.0), None))
    )
    assert "2 different signed measurements" in read([good, better]).reason
    assert "left no measurement" in read([]).reason
