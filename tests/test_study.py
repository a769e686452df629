"""study.yaml validation: every problem named by file and key, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core.study import StudyError
from steps.plugins import load_study
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
    assert "evaluator.timeout_s: Input should be greater than 0" in text
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


def test_each_kind_checks_its_own_section(make_study):
    folder = make_study()
    write_yaml(
        folder,
        "name: toy\neditable: [model.py]\n"
        "evaluator: {kind: command, command: python evaluate.py, json_path: a.b}\n"
        "metric: {name: score}\nproposer: {kind: mutate, step: 0.1, model: claude-x}\n",
    )
    with pytest.raises(StudyError) as err:
        load_study(folder)
    text = str(err.value)
    assert "evaluator.json_path: Extra inputs are not permitted" in text
    assert "proposer.model: Extra inputs are not permitted" in text
    write_yaml(
        folder,
        "name: toy\neditable: [model.py]\nevaluator: {kind: telepathy}\n"
        "metric: {name: score}\nproposer: {kind: oracle}\n",
    )
    with pytest.raises(StudyError) as err:
        load_study(folder)
    text = str(err.value)
    assert "evaluator.kind: unknown kind 'telepathy'; choose one of command, http" in text
    assert "proposer.kind: unknown kind 'oracle'; choose one of auto, mutate" in text


def test_two_problems_of_different_kinds_are_named_at_once(make_study):
    folder = make_study()
    write_yaml(
        folder,
        "name: toy\neditable: [model.py, ghost.py]\ncolour: blue\n"
        "evaluator: {command: python evaluate.py, max_log_mb: .inf}\nmetric: {name: duration_s}\n",
    )
    with pytest.raises(StudyError) as err:
        load_study(folder)
    text = str(err.value)
    assert "colour: Extra inputs are not permitted" in text
    assert "editable.1: 'ghost.py' does not exist" in text
    assert "evaluator.max_log_mb: Input should be a finite number" in text
    assert "metric.name: Value error, 'duration_s' is a column of results.tsv already" in text


def test_a_study_file_that_is_not_utf8_is_named(make_study):
    folder = make_study()
    (folder / "study.yaml").write_bytes(b"name: caf\xe9\neditable: [model.py]\n")
    with pytest.raises(StudyError, match=r"study.yaml: not UTF-8 text \(byte 0xe9 at offset 9\)"):
        load_study(folder)
    result = CliRunner().invoke(main, ["status", str(folder)])
    assert result.exit_code == 2 and "not UTF-8" in result.output


def test_a_missing_optional_package_is_a_study_problem_naming_its_extra(make_study, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "proposers.optuna", raising=False)
    folder = make_study(yaml_extra="proposer: {kind: optuna}\n")
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 2, result.output
    assert "proposer.kind: proposer optuna needs the package optuna" in result.output
    assert "pip install -e '.[search]'" in result.output  # printed as written, not as markup


def test_check_prints_a_crashed_evaluator_s_output_as_written(make_study):
    folder = make_study("print('[/red] [bold]loud[/bold] [link=x]')\nraise SystemExit(3)\n")
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 1, result.output
    assert "[/red] [bold]loud[/bold] [link=x]" in result.output
