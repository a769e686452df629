"""Prefect's server on PostgreSQL, for real: a throwaway cluster of scripts/postgres.sh,
`autoresearch serve --database URL` on it, a short campaign, and its flow runs read back from
PostgreSQL itself. Skipped, with the script's reason, where there is no PostgreSQL and no way to
install it (root with apt-get).

The bench (bench/postgres.py) runs several workers against it; here, the command and the
database, in well under a minute."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch import server as srv
from bench.postgres import FOREIGN, SCRIPT, UNAVAILABLE, Unavailable, throwaway_postgres
from steps.lab import Lab

CLI = str(Path(sys.executable).with_name("autoresearch"))
DEPLOYMENTS = """\
name: pg
build: null
push: null
deployments:
  - name: toy
    entrypoint: flows/campaign.py:campaign
    parameters: {{study: {study}}}
    work_pool: {{name: campaigns}}
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL (a password inside), deleted after the module."""
    try:
        with throwaway_postgres() as url:
            yield url
    except Unavailable as exc:
        pytest.skip(f"no PostgreSQL here: {exc}")


def env_for(home: Path) -> dict[str, str]:
    """A child's environment: no server or database of the test session's, `home` its own."""
    return {k: v for k, v in os.environ.items() if k not in FOREIGN} | {"PREFECT_HOME": str(home)}


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    """Rows of `sql` on the database itself (asyncpg, which Prefect's server uses too)."""
    import asyncpg

    async def rows() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(rows())


def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert proc.poll() is None, f"serve exited {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} in {timeout_s:g} s:\n{log.read_text()}"
        time.sleep(0.2)


def test_serve_on_postgresql_keeps_the_campaigns_runs_there(postgres, make_study, tmp_path):
    folder = make_study(yaml_extra="proposer: {kind: mutate}\n")
    deployments = tmp_path / "deployments.yaml"
    deployments.write_text(DEPLOYMENTS.format(study=folder))
    home, log = tmp_path / "home", tmp_path / "serve.log"
    env = env_for(home)
    serve = [CLI, "serve", "--database", postgres, "--port", str(srv.free_port()),
             "--home", str(home), "--deployments", str(deployments), "--no-worker"]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(serve, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(log, "deployed from", proc, timeout_s=120)
        said = log.read_text()
        password = postgres.split("@")[0].rsplit(":", 1)[1]
        assert "database: postgresql+asyncpg://prefect:***@127.0.0.1:" in said
        assert password not in said + (home / "server.log").read_text()  # never printed
        run = subprocess.run([CLI, "run", str(folder), "-n", "3"], env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Prefect server of `autoresearch serve`" in run.stdout  # found by its home
    finally:
        proc.send_signal(signal.SIGTERM)  # serve stops its server
        assert proc.wait(60) == 0, log.read_text()
    assert not list(home.glob("prefect.db*")), "the server wrote SQLite, not PostgreSQL"
    rows = Lab.open(folder).records.ledger.rows()
    assert [r.experiment for r in rows] == [1, 2, 3]
    assert query(postgres, "select name from deployment") == [("toy",)]
    runs = dict(
        query(
            postgres,
            "select f.name, count(*) from flow_run r join flow f on f.id = r.flow_id "
            "where r.state_type = 'COMPLETED' group by f.name",
        )
    )
    assert runs.get("campaign") == 1, runs
    assert runs.get("experiment", 0) >= 2, runs  # each experiment a flow run of its own


def test_a_database_url_prefect_cannot_take_is_refused_without_its_password(tmp_path):
    env = env_for(tmp_path / "home")
    out = subprocess.run([CLI, "serve", "--database", "mysql://me:hunter2secret@db/prefect"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode != 0
    assert "not a database URL Prefect's server takes" in out.stdout + out.stderr
    assert "mysql://me:***@db/prefect" in out.stdout + out.stderr
    assert "hunter2secret" not in out.stdout + out.stderr
    assert not (tmp_path / "home").exists()  # refused before anything started


def test_a_database_is_for_a_server_started_here_not_for_a_running_one(tmp_path):
    env = env_for(tmp_path / "home") | {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
    out = subprocess.run([CLI, "serve", "--database", "postgresql://u@127.0.0.1/p"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode != 0
    assert "unset PREFECT_API_URL" in out.stdout + out.stderr


def test_database_urls_are_given_prefects_drivers_and_printed_without_passwords():
    assert srv.database_url("postgresql://u:p@h:5/d") == "postgresql+asyncpg://u:p@h:5/d"
    assert srv.database_url("postgres://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert srv.database_url("sqlite:////tmp/x.db") == "sqlite+aiosqlite:////tmp/x.db"
    assert srv.redact("postgresql+asyncpg://u:p@h:5/d") == "postgresql+asyncpg://u:***@h:5/d"
    assert srv.redact("postgresql+asyncpg://u@h/d") == "postgresql+asyncpg://u@h/d"
    with pytest.raises(srv.ServerError, match="not a database URL"):
        srv.database_url("h:5/d")


def test_the_script_says_what_to_install_where_it_cannot(tmp_path):
    env = env_for(tmp_path) | {"PG_BINDIR": str(tmp_path / "none"), "TMPDIR": str(tmp_path)}
    out = subprocess.run(["bash", str(SCRIPT), "hold"], env=env, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
    assert out.returncode == UNAVAILABLE, out.stderr
    assert f"PG_BINDIR={tmp_path / 'none'} has no initdb" in out.stderr
    assert out.stdout == ""  # no URL
    assert not list(tmp_path.glob("autoresearch-pg.*"))  # nothing made, nothing left
