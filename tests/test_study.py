"""study.yaml validation: every problem named by file and key, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from autoresearch.study import StudyError, load_study
from tests.conftest import git


def write_yaml(folder: Path, text: str) -> None:
    (folder / "study.yaml").write_text(text)


def test_valid_study_resolves_paths(make_study):
    folder = make_study()
    study = load_study(folder)
    assert study.name == "toy"
    assert study.editable == ["study/model.py"]
    assert study.protected == ["study/evaluate.py"]
    assert study.state_dir == folder.parent / "runs" / "toy"


def test_every_problem_is_named(make_study):
    folder = make_study()
    write_yaml(
        folder,
        "name: toy\neditable: [model.py, missing.py, ../../outside.py]\n"
        "protected: [model.py]\nprogram: nowhere.md\n"
        "evaluator: {kind: command, command: python evaluate.py}\n"
        "metric: {name: score, direction: minimize}\n",
    )
    with pytest.raises(StudyError) as err:
        load_study(folder)
    text = str(err.value)
    assert str(folder / "study.yaml") in text
    assert "editable.1: 'missing.py' does not exist" in text
    assert "editable.2: '../../outside.py' is outside the repository" in text
    assert "'model.py' overlaps protected 'model.py'" in text
    assert "program: 'nowhere.md' does not exist" in text


def test_schema_errors_name_their_keys(make_study):
    folder = make_study()
    write_yaml(
        folder,
        "name: toy\neditable: [model.py]\ncolour: blue\n"
        "evaluator: {kind: command, command: python evaluate.py, timeout_s: -1}\n"
        "metric: {name: score, direction: sideways}\n",
    )
    with pytest.raises(StudyError) as err:
        load_study(folder)
    text = str(err.value)
    assert "colour: Extra inputs are not permitted" in text
    assert "evaluator.command.timeout_s" in text
    assert "metric.direction" in text


def test_not_yaml_and_no_file(tmp_path, make_study):
    folder = make_study()
    write_yaml(folder, "name: [unclosed\n")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_study(folder)
    with pytest.raises(StudyError, match="no study file"):
        load_study(tmp_path)


def test_cli_exits_2_and_writes_nothing(make_study):
    folder = make_study()
    write_yaml(
        folder, "name: toy\neditable: [nope.py]\nevaluator: {command: x}\nmetric: {name: s}\n"
    )
    git(folder.parent, "commit", "-qam", "broken study")
    before = sorted(p for p in folder.parent.rglob("*") if ".git" not in p.parts)
    for command in ("run", "status", "check"):
        result = CliRunner().invoke(main, [command, str(folder)])
        assert result.exit_code == 2, result.output
        assert "nope.py" in result.output
    after = sorted(p for p in folder.parent.rglob("*") if ".git" not in p.parts)
    assert before == after
    assert "autoresearch/toy" not in git(folder.parent, "branch", "--list")
