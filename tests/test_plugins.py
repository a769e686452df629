"""Plugins from another distribution: a package installed apart from ours declares an evaluator
kind and a proposer kind as entry points, and a real study runs with both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import evaluators
from core import entrypoints
from core.ledger import Ledger
from core.study import StudyError
from steps.plugins import load_study
from tests.conftest import commit_all

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "tinyplug"
version = "0.1.0"

[project.entry-points."autoresearch.evaluators"]
squared = "tinyplug.squared"
broken = "tinyplug.broken"

[project.entry-points."autoresearch.proposers"]
countdown = "tinyplug.countdown"
"""

# the metric is (value - 3)^2: a number that value.txt alone does not hold
SQUARED = """\
from typing import Literal

from core.study import EvaluatorConfig
from evaluators.base import Kind, Measurement


class SquaredConfig(EvaluatorConfig):
    kind: Literal["squared"] = "squared"
    file: str = "value.txt"


class Squared:
    def __init__(self, config, metric_name):
        self.config = config

    def evaluate(self, workdir, log_path, sandbox=None, env=None):
        value = float((workdir / self.config.file).read_text())
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"value {value}\\n")
        return Measurement.of((value - 3.0) ** 2)


KIND = Kind(SquaredConfig, Squared, runs_code=False)
"""

# one step down each time, on the study's one editable file
COUNTDOWN = """\
from typing import Literal

from core.study import ProposerConfig
from proposers.base import Kind, Learned, Proposal


class CountdownConfig(ProposerConfig):
    kind: Literal["countdown"] = "countdown"


class Countdown:
    name = "countdown"

    def propose(self, context):
        (path, text), = context.files.items()
        value = float(text) - 1.0
        return Proposal(f"value {value}", {path: f"{value}\\n"}, self.name, key=str(value))

    def learn(self, context, outcome):
        return Learned()


KIND = Kind(CountdownConfig, lambda config, seed: Countdown(), writes_code=False)
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tinyplug, installed by pip (offline) into a folder of its own: put it on the path."""
    source = tmp_path_factory.mktemp("tinyplug-source")
    package = source / "tinyplug"
    package.mkdir()
    (source / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "squared.py").write_text(SQUARED)
    (package / "countdown.py").write_text(COUNTDOWN)
    (package / "broken.py").write_text("import a_package_nobody_installed\n")
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--no-index", "--target", str(target), str(source)], check=True)
    return target


@pytest.fixture
def on_path(plugin: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugin seen by this process too (the import and metadata caches invalidated)."""
    monkeypatch.syspath_prepend(str(plugin))
    return plugin


def study(tmp_path: Path, evaluator: str, proposer: str) -> Path:
    folder = tmp_path / "repo" / "study"
    folder.mkdir(parents=True)
    (folder / "value.txt").write_text("7\n")
    (folder / "study.yaml").write_text(
        f"name: plug\neditable: [value.txt]\nevaluator: {{kind: {evaluator}}}\n"
        f"proposer: {{kind: {proposer}}}\nmetric: {{name: gap, direction: minimize}}\n"
    )
    commit_all(folder.parent)
    return folder


def test_a_study_runs_with_a_plugin_evaluator_and_proposer(plugin, tmp_path, prefect_server):
    folder = study(tmp_path, "squared", "countdown")
    cli = Path(sys.executable).with_name("autoresearch")
    path = [str(plugin), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(path)}
    env.pop("ANTHROPIC_API_KEY", None)
    out = subprocess.run(
        [str(cli), "run", str(folder), "-n", "3"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = Ledger(folder.parent / "runs" / "plug" / "results.tsv", "gap").rows()
    assert [r.metric for r in rows] == [16.0, 9.0, 4.0]  # the baseline's (7-3)^2, then 6, 5
    assert [r.proposer for r in rows[1:]] == ["countdown", "countdown"]
    assert all(r.kept for r in rows)


def test_the_sendgrid_kind_comes_from_email_abs_entry_point() -> None:
    assert "sendgrid" not in evaluators.KINDS.built_in
    assert entrypoints.group("autoresearch.evaluators")["sendgrid"] == "email_ab.sendgrid"
    assert entrypoints.origin("autoresearch.evaluators", "sendgrid") == "autoresearch"
    assert evaluators.kind("sendgrid").config.__module__ == "email_ab.sendgrid"


def test_unknown_kinds_are_listed_with_the_plugins(on_path, tmp_path):
    with pytest.raises(StudyError) as raised:
        load_study(study(tmp_path, "nosuch", "nobody"))
    problems = str(raised.value)
    assert "unknown kind 'nosuch'; choose one of command, http" in problems
    assert "squared" in problems and "broken" in problems
    assert "unknown kind 'nobody'; choose one of auto" in problems and "countdown" in problems


def test_a_plugin_that_fails_to_import_is_named_with_its_distribution(on_path, tmp_path):
    with pytest.raises(StudyError) as raised:
        load_study(study(tmp_path, "broken", "countdown"))
    assert (
        "evaluator.kind: the plugin evaluator kind broken (module tinyplug.broken, from the "
        "distribution tinyplug) failed to import: ModuleNotFoundError"
    ) in str(raised.value)


def test_a_plugin_cannot_take_a_built_in_name(on_path, tmp_path, monkeypatch):
    """A distribution's metadata written by hand (as an installer would) claims `command`."""
    info = tmp_path / "clash-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clash\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[autoresearch.evaluators]\ncommand = tinyplug.squared\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match=r"command \(from clash\) is ignored"):
        assert evaluators.KINDS["command"] == "evaluators.command"
        assert "squared" in evaluators.KINDS  # the other plugins are read still
