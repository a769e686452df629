"""The experiment and campaign flows under a real (test) Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest

from proposers.base import InvalidProposal
from steps.judge import Judge
from steps.lab import Lab
from tests.conftest import campaign, experiment, git

pytestmark = pytest.mark.usefixtures("prefect_server")

EVALUATE = """import os, model
open(os.environ["MARKS"], "a").write(f"{model.X}\\n")
print(f"score: {abs(model.X - 3.0):.6f}")
"""


def marking_study(make_study, tmp_path: Path, sandbox: str) -> tuple[Path, Path]:
    """A study whose evaluator appends each X it measures to a file outside the study."""
    marks = tmp_path / "marks" / "marks.txt"
    marks.parent.mkdir()
    folder = make_study(EVALUATE, yaml_extra=f"sandbox: {sandbox.format(marks=marks.parent)}\n")
    text = (
        (folder / "study.yaml")
        .read_text()
        .replace("timeout_s: 20}", "timeout_s: 20, env: {MARKS: '" + str(marks) + "'}}")
    )
    (folder / "study.yaml").write_text(text)
    git(folder.parent, "commit", "-qam", "marks")
    return folder, marks


@pytest.fixture
def scripted_study(make_study, tmp_path, scripted):
    folder, marks = marking_study(make_study, tmp_path, "{{writable: ['{marks}']}}")
    return folder, scripted, marks


def lab_ledger_line(folder: Path, index: int) -> str:
    """One line of results.tsv as written (index 0: the first row)."""
    return Lab.open(folder).records.ledger.path.read_text().splitlines()[index + 1]


def head_text(folder: Path) -> str:
    lab = Lab.open(folder)
    return (lab.workspace.study_dir / "model.py").read_text()


@pytest.mark.parametrize("sandbox", ["{{writable: ['{marks}']}}", "false"])
def test_keep_discard_crash_and_rejections(make_study, tmp_path, scripted, sandbox):
    folder, marks = marking_study(make_study, tmp_path, sandbox)
    changes = scripted
    changes += [
        {"study/model.py": "X = 5.0\n"},  # better: keep
        {"study/model.py": "X = 20.0\n"},  # worse: discard
        {"study/model.py": "raise RuntimeError('boom')\n"},  # crash
        {"study/evaluate.py": "print('score: 0')\n"},  # protected: rejected
        {
            "study/model.py": "X = 4.0\nopen('evaluate.py', 'a').write('#')\n"
        },  # rewrites it at run time
        {"study/model.py": "X = 4.5\n"},  # still better than 5: keep
    ]
    rows = [experiment(str(folder), researcher=changes) for _ in range(7)]
    sandboxed = sandbox != "false"
    assert [r.status for r in rows] == [
        "keep",
        "keep",
        "discard",
        "crash",
        "rejected",
        "crash" if sandboxed else "rejected",  # the sandbox shows it evaluate.py read-only
        "keep",
    ]
    assert rows[0].description == "baseline"
    assert rows[3].metric == 0.0 and rows[3].memory_gb == 0.0
    line = lab_ledger_line(folder, 3).split("\t")
    assert line[1:3] == ["0.000000", "0.0"]
    assert "exit code 1" in rows[3].evidence
    assert "non-editable" in rows[4].evidence
    if sandboxed:  # the worktree is read-only, and as root the evaluation is not its owner
        log = (folder.parent / "runs/toy/logs/6.log").read_text()
        assert "Read-only file system" in log or "Permission denied: 'evaluate.py'" in log, log
    else:
        assert "voided at run time" in rows[5].evidence
    # the protected-touching candidate was never evaluated; the run-time rewrite was, once,
    # unless the sandbox stopped it at the write, before it marked
    marked = ["10.0", "5.0", "20.0", *([] if sandboxed else ["4.0"]), "4.5"]
    assert marks.read_text().split() == marked
    lab = Lab.open(folder)
    assert lab.records.champion().metric == 1.5
    assert lab.workspace.head().startswith(rows[-1].commit)
    assert not lab.workspace.repo.is_dirty(untracked_files=True)
    assert (lab.workspace.study_dir / "evaluate.py").read_text() == EVALUATE
    assert len(lab.records.ledger.rows()) == 7
    assert "### What crashed, and why" in lab.records.resource_path.read_text()


def test_discard_leaves_the_champion_checked_out(scripted_study):
    folder, changes, _ = scripted_study
    changes += [{"study/model.py": "X = 4.0\n"}, {"study/model.py": "X = 99.0\n"}]
    experiment(str(folder), researcher=changes)
    experiment(str(folder), researcher=changes)
    assert head_text(folder) == "X = 4.0\n"
    assert experiment(str(folder), researcher=changes).status == "discard"
    assert head_text(folder) == "X = 4.0\n"


def test_exception_after_apply_rolls_back(scripted_study, monkeypatch):
    folder, changes, _ = scripted_study
    experiment(str(folder), researcher=changes)  # baseline
    changes.append({"study/model.py": "X = 3.5\n"})

    def broken(self, *args):
        raise RuntimeError("decide failed")

    monkeypatch.setattr(Judge, "judge", broken)
    with pytest.raises(RuntimeError, match="decide failed"):
        experiment(str(folder), researcher=changes)
    monkeypatch.undo()
    assert head_text(folder) == "X = 10.0\n"
    assert len(Lab.open(folder).records.ledger.rows()) == 1


def test_campaign_hill_climbs_and_continues(cooling):
    first = campaign(str(cooling), experiments=8, proposer="mutate", seed=0)
    lab = Lab.open(cooling)
    rows = lab.records.ledger.rows()
    assert first.ran == 8 and len(rows) == 8
    assert [r.description for r in rows].count("baseline") == 1
    assert first.best < first.baseline
    assert lab.workspace.head().startswith(first.champion)
    again = campaign(str(cooling), experiments=3, proposer="mutate", seed=0)
    rows = Lab.open(cooling).records.ledger.rows()
    assert len(rows) == 11 and [r.description for r in rows].count("baseline") == 1
    assert again.best <= first.best
    # the user's own checkout is untouched
    assert git(cooling.parent, "status", "--porcelain") == ""
    assert git(cooling.parent, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_cli_run_prints_each_experiment_and_the_summary(cooling):
    from click.testing import CliRunner

    from autoresearch.cli import main

    result = CliRunner().invoke(main, ["run", str(cooling), "-n", "3", "--proposer", "mutate"])
    assert result.exit_code == 0, result.output
    assert "proposer mutate (asked for)" in result.output
    assert "#  1 keep" in result.output and "baseline" in result.output
    assert "#  3 " in result.output and "cooling: rmse (minimize)" in result.output
    status = CliRunner().invoke(main, ["status", str(cooling)])
    assert status.exit_code == 0 and "recent experiments" in status.output


class Flaky:
    """A researcher whose first call fails the way a network does, then proposes; or whose
    every call is a proposal it cannot make."""

    name = "flaky"

    def __init__(self, first: Exception) -> None:
        self.first, self.calls = first, 0

    def propose(self, context):  # noqa: ANN001, ANN201
        from proposers.base import Proposal

        self.calls += 1
        if self.calls == 1 or isinstance(self.first, InvalidProposal):
            raise self.first
        return Proposal("X down", {"study/model.py": "X = 4.0\n"}, self.name, "x4")

    def learn(self, context, outcome):  # noqa: ANN001, ANN201
        from proposers.base import Learned

        return Learned()


def test_a_failed_proposal_is_retried_one_that_cannot_be_made_is_not(make_study):
    folder = make_study()
    assert experiment(str(folder), researcher=Flaky(ConnectionError())).description == "baseline"
    flaky = Flaky(ConnectionError("reset by peer"))
    assert experiment(str(folder), researcher=flaky).status == "keep" and flaky.calls == 2
    invalid = Flaky(InvalidProposal("no idea left"))
    assert experiment(str(folder), researcher=invalid).status == "invalid" and invalid.calls == 1
