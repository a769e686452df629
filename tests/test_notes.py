"""Steering without stopping: a person's notes reach every proposal until removed; and a study
that cannot start is refused before a Prefect server or a flow run starts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core.notes import NOTES, Notes, NotesError
from proposers.base import Context, Learned, Proposal
from proposers.prompt import task_text
from steps.plugins import load_study
from tests.conftest import campaign, commit_all, experiment

pytestmark = pytest.mark.usefixtures("prefect_server")
CLI = str(Path(sys.executable).with_name("autoresearch"))


class Listening:
    """Proposes X = 3.5, 3.4, ... and keeps what each context's notes were."""

    name = "listening"

    def __init__(self) -> None:
        self.heard: list[list[str]] = []
        self.prompts: list[str] = []

    def propose(self, context: Context) -> Proposal:
        self.heard.append(list(context.notes))
        self.prompts.append(task_text(context, 5))
        x = 3.5 - len(self.heard) / 10
        return Proposal(f"X = {x}", {"study/model.py": f"X = {x}\n"}, self.name)

    def learn(self, context: Context, outcome: object) -> Learned:
        return Learned()


def test_notes_are_taken_listed_and_removed(make_study):
    folder = make_study()
    runner = CliRunner()
    took = runner.invoke(main, ["note", str(folder), "try a cosine   schedule\n please"])
    assert took.exit_code == 0 and "note 1 taken" in took.output, took.output
    runner.invoke(main, ["note", str(folder), "keep the model small"])
    listed = runner.invoke(main, ["note", str(folder)])
    assert (
        "try a cosine schedule please" in listed.output and "keep the model small" in listed.output
    )
    assert "notes for the researcher (2)" in runner.invoke(main, ["status", str(folder)]).output
    gone = runner.invoke(main, ["note", str(folder), "--remove", "1"])
    assert gone.exit_code == 0 and "note 1 removed" in gone.output
    missing = runner.invoke(main, ["note", str(folder), "--remove", "7"])
    assert missing.exit_code == 2 and "no note 7 (notes: 2)" in missing.output
    assert runner.invoke(main, ["note", str(folder), "   "]).exit_code == 2  # an empty note
    notes = load_study(folder).state_dir / NOTES
    notes.write_text("{not json")
    broken = runner.invoke(main, ["note", str(folder), "x"])
    assert broken.exit_code == 2 and f"{notes}: cannot read the notes" in broken.output
    with pytest.raises(NotesError):
        Notes(notes).all()
    assert notes.read_text() == "{not json"  # nothing lost


def test_every_proposal_reads_the_notes_until_they_are_removed(make_study):
    folder = make_study()
    listening = Listening()
    experiment(str(folder), researcher=listening)  # the baseline
    # the campaign's `note` parameter (the Prefect UI's) and one taken on the command line
    CliRunner().invoke(main, ["note", str(folder), "keep X above 3"])
    campaign(str(folder), experiments=1, researcher=listening, note="try X near 3.4")
    assert listening.heard[-1] == ["keep X above 3", "try X near 3.4"]
    assert (
        "## Notes from the person running this study (follow them)\n- keep X above 3\n"
        in (listening.prompts[-1])
    )
    CliRunner().invoke(main, ["note", str(folder), "--remove", "1"])
    experiment(str(folder), researcher=listening)
    assert listening.heard[-1] == ["try X near 3.4"]


def _run(folder: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [CLI, "run", str(folder), "-n", "1"], capture_output=True, text=True, timeout=120
    )
    return done, time.monotonic() - began


def test_a_study_that_cannot_start_is_refused_before_any_server(make_study):
    folder = make_study()
    (folder / "model.py").write_text("X = 4.0\n")  # not committed
    done, seconds = _run(folder)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, said
    assert "commit the study folder first: uncommitted changes in study/model.py" in said
    assert "Prefect" not in said and "Traceback" not in said and seconds < 30
    assert not (folder.parent / "runs").exists()
    commit_all(folder.parent, "X = 4")
    study = folder / "study.yaml"
    study.write_text(
        study.read_text().replace("command: python evaluate.py", "command: python evaluat.py")
    )
    study.write_text(study.read_text() + "holdout: {command: 'nosuch --x', metric: h}\n")
    commit_all(folder.parent, "typos")
    done, _ = _run(folder)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2 and "study.yaml: 2 problem(s)" in said, said
    assert f"evaluator.command: runs evaluat.py, which is not in {folder}" in said
    assert f"holdout.command: runs `nosuch`, which is neither on PATH nor in {folder}" in said
    assert "Prefect" not in said and "Traceback" not in said
