"""`serve` as a person uses it: started on another port and home, `trigger` and `worker` find it
without PREFECT_API_URL; one Ctrl-C stops it within seconds, even when it was started with
SIGINT ignored (a background job of a script), worker first, then the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from core.processes import stop_group
from tests.conftest import commit_all
from tests.test_serve import AUTORESEARCH, deployments_file, study_copy, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as bash starts a background job


@pytest.fixture
def serving(tmp_path: Path):
    """`autoresearch serve --port P --home H` on a copy of cooling, its default home elsewhere."""
    repo = tmp_path / "repo"
    study_copy(repo, "edge")
    commit_all(repo)
    default, home = tmp_path / "default-home", tmp_path / "serve-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST_"))}
    env |= {"PREFECT_HOME": str(default), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = tmp_path / "serve.log"
    port = free_port()
    argv = [AUTORESEARCH, "serve", "--port", str(port), "--home", str(home)]
    argv += ["--deployments", str(deployments_file(tmp_path, ["edge"]))]
    serve = subprocess.Popen(
        argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=ignore_sigint,
    )  # fmt: skip
    try:
        wait_for("serve to deploy", lambda: "worker on work pool" in log.read_text(), 180)
        yield serve, env, port, home, log
    finally:
        stop_group(serve)


def test_trigger_finds_the_server_serve_started_on_another_port_and_home(serving) -> None:
    serve, env, port, home, _ = serving
    done = subprocess.run(
        [AUTORESEARCH, "trigger", "edge"], env=env, capture_output=True, text=True, timeout=120
    )
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, said
    assert f"http://127.0.0.1:{port}/api, the server of `autoresearch serve` (home {home})" in said
    assert f"http://127.0.0.1:{port}/v2/runs/flow-run/" in said  # the UI's page that logs in
    elsewhere = env | {"PREFECT_HOME": str(home.parent / "nowhere")}
    missing = subprocess.run([AUTORESEARCH, "trigger", "edge"], env=elsewhere,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 1 and "no running `autoresearch serve`" in missing.stdout
    argv = [AUTORESEARCH, "trigger", "edge", "--home", str(home)]
    by_home = subprocess.run(argv, env=elsewhere, capture_output=True, text=True, timeout=120)
    assert by_home.returncode == 0, by_home.stdout + by_home.stderr


def test_one_ctrl_c_stops_serve_within_seconds(serving) -> None:
    serve, _, port, home, log = serving
    began = time.monotonic()
    os.killpg(serve.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
    serve.wait(20)
    assert time.monotonic() - began < 15, log.read_text()
    assert "stopping the worker, then the server" in log.read_text()
    left = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout
    assert not left.strip(), f"left running: {left}"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # the server is gone
    assert not (home / "serve.json").exists()
