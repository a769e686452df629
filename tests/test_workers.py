"""Workers on other machines: two `autoresearch worker` processes, each with its own clone,
evaluate the candidates of a campaign that pushes them to a bare git remote, through a real
Prefect server and its work pool; only the campaign decides and writes the ledger.

The server requires its credentials (the home's api-auth): this process's client is given them
(`authenticated`), the workers read them from the home, as `autoresearch` does."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.ledger import Status
from core.processes import group_members, stop_group
from steps.lab import Lab
from tests.conftest import Scripted, campaign, git

pytestmark = pytest.mark.usefixtures("prefect_server", "authenticated")
EVALUATE = "import model\nprint(f'score: {abs(model.X - 3.0):.6f}')\n"
API_AUTH = "api-auth"  # the server's credentials, in its Prefect home (core.credentials)


def home_auth() -> str | None:
    """The credentials of the session's server, as every client of the tool reads them."""
    path = Path(os.environ["PREFECT_HOME"]) / API_AUTH
    return path.read_text().strip() if path.exists() else None


def headers(auth: str | None) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    if auth:
        out["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return out


@pytest.fixture(scope="module")
def authenticated(prefect_server: Any) -> Iterator[str | None]:
    """This process's Prefect client, with the session server's credentials."""
    from prefect.settings import temporary_settings

    auth = home_auth()
    settings = {"PREFECT_API_URL": prefect_server.api_url}
    with temporary_settings(settings | ({"PREFECT_API_AUTH_STRING": auth} if auth else {})):
        yield auth


def pool_workers(pool: str) -> int:
    """How many workers have sent the server a heartbeat on `pool`."""
    url = f"{os.environ['PREFECT_API_URL']}/work_pools/{pool}/workers/filter"
    req = urllib.request.Request(url, data=b"{}", headers=headers(home_auth()))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return len(json.load(resp))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # the first worker has not created the pool yet
            return 0
        raise


def wait_for_workers(pool: str, count: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while pool_workers(pool) < count:
        assert time.monotonic() < deadline, f"{count} workers did not reach pool {pool}"
        time.sleep(0.3)


def test_two_workers_with_their_own_clones_evaluate_the_candidates(make_study, tmp_path):
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    folder = make_study(EVALUATE, yaml_extra=f"parallel: 2\nremote: {remote}\n")
    spec = folder / "study.yaml"
    spec.write_text(spec.read_text().replace("timeout_s: 20}", "timeout_s: 60, work_pool: pool}"))
    git(folder.parent, "commit", "-qam", "evaluated by workers")
    cli = str(Path(sys.executable).with_name("autoresearch"))
    env = os.environ | {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    workers, clones = [], []
    for name in ("a", "b"):
        clone = tmp_path / f"clone-{name}"
        subprocess.run(["git", "clone", "-q", str(folder.parent), str(clone)], check=True)
        log = (tmp_path / f"worker-{name}.log").open("w")
        workers.append(
            subprocess.Popen(
                [cli, "worker", "--pool", "pool", "--clone", str(clone)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        )
        clones.append(clone)
    try:  # each worker measures one candidate at a time: both start before the campaign
        wait_for_workers("pool", 2)
        changes = Scripted({"study/model.py": f"X = {x}\n"} for x in (5.0, 20.0, 4.0))
        result = campaign(str(folder), experiments=4, researcher=changes)
    finally:
        for proc in workers:
            stop_group(proc)
    for proc in workers:
        assert group_members(proc.pid) == []
    assert result.ran == 4, result
    rows = Lab.open(folder).records.ledger.rows()
    assert sorted(r.experiment for r in rows) == [1, 2, 3, 4]
    by_x = {r.description: r for r in rows}
    assert by_x["baseline"].metric == pytest.approx(7.0)
    assert [r.status for r in rows].count(Status.CRASH) == 0
    logs = {p.name for c in clones for p in (c / "runs" / "toy" / "logs").glob("*.log")}
    assert {"1.log", "2.log", "3.log", "4.log"} <= logs  # measured on the workers
    assert not list((folder.parent / "runs" / "toy" / "logs").glob("*.log"))  # not here
    for clone in clones:  # the workers decide nothing, record nothing
        assert not (clone / "runs" / "toy" / "results.tsv").exists()
    assert all(list((c / "runs" / "toy" / "logs").glob("*.log")) for c in clones), "one idle"


def test_a_stop_now_ends_the_wait_for_a_worker():
    """A second Ctrl-C does not wait for a worker that may never come: the run id stays in the
    pending record, and the next start waits for it again."""
    import asyncio
    import uuid

    from core import interrupt
    from tasks.remote import _final_state

    interrupt.stop_now.set()
    try:
        with pytest.raises(interrupt.Interrupted, match="while a worker measured"):
            asyncio.run(asyncio.wait_for(_final_state(uuid.uuid4()), timeout=30))
    finally:
        interrupt.clear()
