"""Shared fixtures: real git repositories holding studies, and one Prefect test server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def experiment(*args: Any, **kwargs: Any) -> Any:
    """The experiment flow, run to its end from synchronous test code."""
    from flows.experiment import experiment as flow

    return asyncio.run(flow(*args, **kwargs))


def campaign(*args: Any, **kwargs: Any) -> Any:
    """The campaign flow, run to its end from synchronous test code."""
    from flows.campaign import campaign as flow

    return asyncio.run(flow(*args, **kwargs))


COOLING = ROOT / "artifacts" / "cooling"

os.environ.update(
    GIT_AUTHOR_NAME="test",
    GIT_AUTHOR_EMAIL="test@localhost",
    GIT_COMMITTER_NAME="test",
    GIT_COMMITTER_EMAIL="test@localhost",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def commit_all(repo: Path, message: str = "init") -> None:
    if not (repo / ".git").exists():
        git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def cooling(tmp_path: Path) -> Path:
    """The bundled example study, copied into a fresh git repository."""
    repo = tmp_path / "repo"
    shutil.copytree(COOLING, repo / "cooling", ignore=shutil.ignore_patterns("runs", "__pycache__"))
    commit_all(repo)
    return repo / "cooling"


StudyFactory = Callable[..., Path]


@pytest.fixture
def make_study(tmp_path: Path) -> StudyFactory:
    """A small study whose evaluator is any Python script: model.py holds X, lower score wins.

    `decision` is the metric's decision rule as YAML flow text; `protected` the protected list.
    """

    def make(
        evaluate: str = "",
        yaml_extra: str = "",
        model: str = "X = 10.0\n",
        decision: str = "",
        protected: str = "evaluate.py",
        **files: str,
    ) -> Path:
        repo = tmp_path / "repo"
        folder = repo / "study"
        folder.mkdir(parents=True)
        (folder / "model.py").write_text(model)
        (folder / "evaluate.py").write_text(
            evaluate or "import model\nprint(f'score: {abs(model.X - 3.0):.6f}')\n"
        )
        for name, text in files.items():
            (folder / name).write_text(text)
        rule = f", decision: {decision}" if decision else ""
        (folder / "study.yaml").write_text(
            f"name: toy\neditable: [model.py]\nprotected: [{protected}]\n"
            "evaluator: {kind: command, command: python evaluate.py, timeout_s: 20}\n"
            f"metric: {{name: score, direction: minimize{rule}}}\n" + yaml_extra
        )
        commit_all(repo)
        return folder

    return make


class Scripted(list):
    """A proposer that returns prepared changes, one per experiment, in order: a list of
    {path: new text} (and optionally "hypothesis"), passed to the flows as `researcher`."""

    name = "scripted"

    def propose(self, context):  # noqa: ANN001, ANN201
        from proposers.base import Proposal

        files = dict(self.pop(0))
        hypothesis = files.pop("hypothesis", f"scripted {sorted(files)}")
        return Proposal(hypothesis, files, self.name)

    def learn(self, context, outcome):  # noqa: ANN001, ANN201
        from proposers.base import Learned

        return Learned()


@pytest.fixture
def scripted() -> Scripted:
    """A Scripted proposer to fill with changes and pass to a flow as `researcher=`."""
    return Scripted()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """One Prefect server for the flow-level tests (the one `autoresearch run` starts), with a
    temporary PREFECT_HOME; PREFECT_API_URL points this process and its children at it."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    from prefect.settings import temporary_settings

    from autoresearch.server import temporary_server

    server = temporary_server(home).wait_healthy()
    os.environ.update(server.client_settings())  # its URL and login, for children too
    try:
        with temporary_settings(server.client_settings()):
            yield server
            from prefect.logging.handlers import APILogHandler

            APILogHandler().flush()  # the last logs reach the server before it stops
    finally:
        for name in server.client_settings():
            os.environ.pop(name, None)
        server.stop()
