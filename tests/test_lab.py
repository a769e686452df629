"""The core without Prefect: the ledger, repair after a kill, guards, learnings."""

from __future__ import annotations

import importlib.util
import os
import py_compile
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core import learnings
from core.ledger import Ledger, LedgerError, Row, Status
from core.lock import StudyLock
from core.workspace import GuardViolation
from proposers.base import Learned
from steps.lab import Lab
from steps.trial import Remeasure, Trial
from tests.conftest import ROOT, commit_all, git


def baseline(lab: Lab) -> None:
    trial = Trial(1)
    lab.finish(trial, *lab.measuring.baseline(trial), Learned())


def test_ledger_append_is_idempotent_per_experiment(tmp_path):
    ledger = Ledger(tmp_path / "results.tsv", "rmse")
    row = Row(1, Status.KEEP, "a\tb\nc", commit="abc", metric=1.0)
    assert ledger.append(row) is True
    assert ledger.append(row) is False
    rows = ledger.rows()
    assert len(rows) == 1 and rows[0].description == "a b c"
    ledger.append(Row(2, Status.KEEP, "zero", metric=0.0))
    assert ledger.path.read_text().splitlines()[2].split("\t")[1:3] == ["0.000000", "0.0"]
    assert ledger.path.read_text().splitlines()[0].split("\t")[:5] == [
        "commit",
        "rmse",
        "memory_gb",
        "status",
        "description",
    ]
    assert not list(tmp_path.glob(".results.tsv.*"))  # no temporary file left behind
    ledger.append(Row(3, Status.KEEP, '"Halve" the "rate'))
    ledger.append(Row(4, Status.DISCARD, "after"))
    assert [r.experiment for r in ledger.rows()] == [1, 2, 3, 4]
    frame = pd.read_csv(ledger.path, sep="\t")  # Karpathy's notebook reads it like this
    assert (
        list(frame["experiment"]) == [1, 2, 3, 4] and frame["description"][2] == "'Halve' the 'rate"
    )


def test_open_repairs_an_unrecorded_candidate(make_study):
    folder = make_study()
    lab = Lab.open(folder)
    baseline(lab)
    champion = lab.workspace.head()
    lab.workspace.apply({"study/model.py": "X = 1.0\n"}, "killed before its row")
    (lab.workspace.study_dir / "stray.tmp").write_text("left by a killed evaluator")
    assert lab.workspace.head() != champion
    repaired = Lab.open(folder)
    assert repaired.workspace.head() == champion
    assert not (repaired.workspace.study_dir / "stray.tmp").exists()
    assert repaired.records.ledger.next_experiment() == 2


def test_protected_file_changed_outside_a_commit_is_caught(make_study):
    folder = make_study()
    lab = Lab.open(folder)
    (lab.workspace.study_dir / "evaluate.py").write_text("print('score: 0')\n")
    try:
        lab.measuring.evaluate(1)
    except GuardViolation as exc:
        assert "study/evaluate.py" in str(exc)
    else:
        raise AssertionError("a changed protected file was evaluated")


def test_person_notes_survive_the_summary(make_study):
    folder = make_study()
    lab = Lab.open(folder)
    baseline(lab)
    text = lab.records.resource_path.read_text()
    lab.records.resource_path.write_text("My note: try smaller X.\n\n" + text)
    trial = Trial(2, description="X up", commit="abc", measurement=lab.measuring.evaluate(2))
    lab.finish(trial, Status.DISCARD, "", Learned())
    text = lab.records.resource_path.read_text()
    assert text.startswith("My note: try smaller X.")
    assert "#2 X up" in text and text.count(learnings.BEGIN) == 1
    assert "My note: try smaller X." in lab.briefing.context(Trial(3), lab.workspace).learnings


def test_learnings_are_redacted_and_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("SOME_TOKEN", "tok-1234567890")
    path = tmp_path / "resource.md"
    notes = "key sk-ant-abcdefghijkl and tok-1234567890\n" + "x\n" * 5000
    learnings.write(path, notes, "- #2 " + "long hypothesis " * 400, 2000)
    text = path.read_text()
    assert "sk-ant-" not in text and "tok-1234567890" not in text
    assert len(text) <= 2000 and text.count(learnings.BEGIN) == text.count(learnings.END) == 1
    learnings.write(path, text.replace(learnings.END, ""), "- #3 fine", 2000)  # a marker lost
    again = path.read_text()
    assert again.count(learnings.BEGIN) == again.count(learnings.END) == 1 and "#3 fine" in again


def test_cli_init_check_and_status(tmp_path):
    repo = tmp_path / "repo"
    result = CliRunner().invoke(main, ["init", str(repo / "mine"), "--name", "mine"])
    assert result.exit_code == 0, result.output
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    result = CliRunner().invoke(main, ["check", str(repo / "mine")])
    assert result.exit_code == 0, result.output
    assert "score: -16.5" in result.output
    result = CliRunner().invoke(main, ["status", str(repo / "mine")])
    assert result.exit_code == 0 and "No baseline yet" in result.output
    with StudyLock(repo / "runs" / "mine", "mine", what="a campaign"):
        busy = CliRunner().invoke(main, ["check", str(repo / "mine")])
    assert busy.exit_code == 3 and "a campaign" in busy.output
    again = CliRunner().invoke(main, ["init", str(repo / "mine")])
    assert again.exit_code != 0 and "already exists" in again.output


def test_ledger_from_an_older_version_gains_the_new_columns(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text(
        "commit\trmse\tmemory_gb\tstatus\tdescription\texperiment\nabc\t1.5\t0.0\tkeep\tbaseline\t1\n"
    )
    ledger = Ledger(path, "rmse")
    ledger.append(Row(2, Status.KEEP, "x", commit="def", metric=1.2, key="k"))
    rows = ledger.rows()
    assert path.read_text().splitlines()[0].split("\t") == ledger.columns
    assert [(r.commit, r.metric, r.key) for r in rows] == [("abc", 1.5, ""), ("def", 1.2, "k")]


def test_small_metrics_keep_six_significant_digits(tmp_path):
    ledger = Ledger(tmp_path / "results.tsv", "seconds_per_call")
    for n, value in enumerate([4.0e-07, 0.0123456789, 1.5, 123456.5, -2.5e-9], 1):
        ledger.append(Row(n, Status.KEEP, "t", metric=value))
    texts = [line.split("\t")[1] for line in ledger.path.read_text().splitlines()[1:]]
    assert texts == ["4e-07", "0.0123457", "1.500000", "123456.500000", "-2.5e-09"]
    assert [r.metric for r in Ledger(ledger.path, "seconds_per_call").rows()][0] == 4e-07


def test_a_torn_last_line_is_cut_and_a_bad_row_is_named(tmp_path):
    ledger = Ledger(tmp_path / "results.tsv", "rmse")
    ledger.append(Row(1, Status.KEEP, "baseline", metric=2.0))
    with open(ledger.path, "a") as f:
        f.write("abc1234\t1.9\t0.0\tkeep\thalf a li")  # a kill mid-append
    assert [r.experiment for r in ledger.rows()] == [1]  # readers skip it
    assert ledger.repair() is True and ledger.path.read_text().endswith("\n")
    ledger.append(Row(2, Status.DISCARD, "whole", metric=2.5))
    assert [r.experiment for r in Ledger(ledger.path, "rmse").rows()] == [1, 2]
    with open(ledger.path, "a") as f:
        f.write("abc\t1.0\t0.0\tkept-ish\tx\t3\n")
    with pytest.raises(LedgerError, match=r"results.tsv:4: .*kept-ish"):
        Ledger(ledger.path, "rmse").rows()


def test_a_same_size_edit_is_measured_not_its_stale_bytecode(make_study):
    folder = make_study(model="X = 4.0\n")
    lab = Lab.open(folder)
    baseline(lab)
    source = lab.workspace.study_dir / "model.py"
    stale = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(source), cfile=str(stale))  # what `import model` leaves behind
    lab.workspace.apply({"study/model.py": "X = 5.0\n"}, "same size, same second")
    assert lab.measuring.evaluate(2).metric == 2.0
    assert not stale.exists()


def test_an_evaluator_left_running_by_a_killed_run_is_stopped(make_study, tmp_path):
    folder = make_study("import time\ntime.sleep(300)\n")
    lab = Lab.open(folder)
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from steps.lab import Lab
Lab.open({str(folder)!r}).measuring.evaluate(1)
"""
    orchestrator = subprocess.Popen([sys.executable, "-c", code])
    pid_file = lab.records.log_path(1).with_suffix(".pgid")
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pgid = int(pid_file.read_text().split()[0])
    orchestrator.kill()  # SIGKILL: no finally block runs, the evaluator's group lives on
    orchestrator.wait()
    os.killpg(pgid, 0)  # still there
    Lab.open(folder)  # the next run repairs
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the evaluator's process group outlived the repair")
    assert not pid_file.exists()


def test_a_proposal_is_built_on_the_champion_it_was_made_for(make_study, scripted):
    """Two proposals from the baseline; the first is kept while the second is being written:
    the second's commit is built on the baseline (its files are the baseline's), so it cannot
    undo the first's change, and it is re-measured on the new champion before it is kept."""
    model = "X = {x}\n\n# two knobs, apart\n\nY = {y}\n"
    score = "import model\nprint(f'score: {abs(model.X - 3) + 10 * abs(model.Y - 1):.6f}')\n"
    folder = make_study(score, model=model.format(x=10.0, y=0.0), yaml_extra="parallel: 2\n")
    lab = Lab.open(folder)
    baseline(lab)
    start = lab.records.champion_commit()
    scripted += [
        {"study/model.py": model.format(x=5.0, y=0.0)},
        {"study/model.py": model.format(x=10.0, y=1.0)},
    ]
    first, second = lab.reserve(), lab.reserve()
    lab.propose(scripted, first)
    lab.propose(scripted, second)
    lab.apply(first)
    lab.measuring.candidate(first)  # 12, against the baseline's 17
    lab.finish(first, Status.KEEP, "kept", Learned())
    assert lab.records.champion_commit() != start
    lab.apply(second)
    assert second.built_on == start
    proposed_on = lab.repo.show(f"{second.commit}^", "study/model.py")
    assert proposed_on.strip() == model.format(x=10.0, y=0.0).strip()
    lab.measuring.candidate(second)  # 7 against the new champion's 12: better, on the old one
    decision = lab.judge.decide(second)
    assert isinstance(decision, Remeasure) and decision.onto == lab.records.champion_commit()
    lab.remeasure(second, decision.onto)
    both = model.format(x=5.0, y=1.0)
    assert lab.repo.show(second.commit, "study/model.py").strip() == both.strip()


@pytest.mark.parametrize("change", ["symlink", "rename"])
def test_a_commit_with_a_link_or_a_renamed_fixed_file_is_rejected(make_study, tmp_path, change):
    """A link in an editable path would have the tool read any file of the machine (the email
    evaluators read the copy themselves); a rename of a fixed file counts as its old path."""
    folder = make_study(**{"data.txt": "fixed\n"})
    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_text("a\n")
    spec = folder / "study.yaml"
    spec.write_text(spec.read_text().replace("[model.py]", "[model.py, notes]"))
    commit_all(folder.parent, "notes editable")
    lab = Lab.open(folder)
    ws = lab.workspace.open_at(lab.repo.branch_head())
    base, study = ws.head(), ws.path / "study"
    if change == "symlink":
        (tmp_path / "secret").write_text("KEY=value\n")
        (study / "model.py").unlink()
        (study / "model.py").symlink_to(tmp_path / "secret")
    else:  # git would show it as notes/data.txt alone
        (study / "data.txt").rename(study / "notes" / "data.txt")
    git(ws.path, "add", "-A")
    git(ws.path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", change)
    why = "adds symbolic links: study/model.py" if change == "symlink" else "study/data.txt"
    with pytest.raises(GuardViolation, match=why):
        ws.check_commit(base, ws.head(), lab.records.protected())


def test_the_tools_own_writes_during_a_watch_are_not_tampering(tmp_path):
    """A parallel slot's row lands while another evaluation is watched (also a write that fails
    half-way); a write from outside `writing()` is tampering, and is put back."""
    from core.tamper import Tampered, Watched

    ledger = tmp_path / "results.tsv"
    ledger.write_text("row 1\n")
    watched = Watched([ledger], [])
    with watched.watch():
        with watched.writing():
            ledger.write_text("row 1\nrow 2\n")
        with pytest.raises(OSError), watched.writing():
            ledger.write_text("row 1\nrow 2\nrow 3\n")
            raise OSError("disk full")
    assert ledger.read_text() == "row 1\nrow 2\nrow 3\n"
    with pytest.raises(Tampered, match="results.tsv"), watched.watch():
        ledger.write_text("forged\n")
    assert ledger.read_text() == "row 1\nrow 2\nrow 3\n"
