"""`autoresearch export`: a branch from the study's base to its champion, one commit per kept
change that survives, the undone ones folded away, and the pull request's summary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core.ledger import Ledger, Row, Status
from steps.export import ExportError, export, plan_file
from steps.plugins import load_study
from tests.conftest import commit_all, experiment, git

EVALUATE = """import model
score = abs(model.X - 3) + abs(model.Y) + abs(model.Z) + abs(model.W)
print(f"score: {score:.6f}")
"""
KNOBS = {"X": "10.0", "Y": "5.0", "Z": "20.0", "W": "2.0"}


def model(**changes: str) -> str:
    """model.py: four knobs, a comment line between each, so that each is a hunk of its own."""
    values = KNOBS | changes
    return "# ---\n".join(f"{name} = {value}\n" for name, value in values.items())


def tree_files(repo: Path, commit: str, path: str) -> str:
    """`ls-tree -r` of a path at a commit: each file's mode, blob and path."""
    return git(repo, "ls-tree", "-r", commit, "--", path)


def replays_cleanly(repo: Path, base: str, tip: str, tmp: Path) -> str:
    """The branch's commits as patches, applied (`git am`) on the base in a fresh clone; the
    tree that results."""
    clone = tmp / "clone"
    git(tmp, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", "-b", "replay", base)
    patches = git(repo, "format-patch", "--stdout", f"{base}..{tip}")
    subprocess.run(["git", "-C", str(clone), "am", "-q"], input=patches, text=True, check=True)
    return git(clone, "rev-parse", "HEAD^{tree}").strip()


def changed(repo: Path, commit: str) -> dict[str, str]:
    """What a commit changed: path -> A, M or D."""
    lines = git(repo, "show", "--name-status", "--format=", commit).splitlines()
    return {path: what for what, path in (line.split("\t") for line in lines if line)}


def refs(repo: Path) -> tuple[str, str, str]:
    """What export must leave alone: the user's branch, the study's branch, the user's checkout."""
    return (
        git(repo, "rev-parse", "main"),
        git(repo, "rev-parse", "autoresearch/toy"),
        git(repo, "status", "--porcelain"),
    )


@pytest.mark.usefixtures("prefect_server")
def test_export_of_real_experiments(make_study, scripted, tmp_path):
    """keeps, a discard, a keep undone by a later one, a keep rewritten by a later one and a
    suspect keep: the branch holds the surviving three, and its tip is the champion."""
    folder = make_study(EVALUATE, model=model())
    scripted += [
        {"hypothesis": "X closer to 3", "study/model.py": model(X="4.0")},  # 2: rewritten by 6
        {"hypothesis": "Y far up", "study/model.py": model(X="4.0", Y="50.0")},  # 3: discard
        {"hypothesis": "Y down", "study/model.py": model(X="4.0", Y="1.0")},  # 4: undone by 5
        {"hypothesis": "Z to 0, Y back", "study/model.py": model(X="4.0", Z="0.0")},  # 5
        {"hypothesis": "X to 3 exactly", "study/model.py": model(X="3.0", Z="0.0")},  # 6
        {"hypothesis": "W to 0", "study/model.py": model(X="3.0", Z="0.0", W="0.0  # seed")},
    ]
    statuses = [experiment(str(folder), researcher=scripted).status for _ in range(7)]
    assert statuses == ["keep", "keep", "discard", "keep", "keep", "keep", "keep"]
    repo, study = folder.parent, load_study(folder)
    rows = Ledger(study.state_dir / "results.tsv", "score").rows()
    assert rows[-1].suspect  # a changed line that mentions a seed: audited, and held
    before = refs(repo)

    done = export(study)

    assert done.branch == "autoresearch/toy-export" and refs(repo) == before
    tip = git(repo, "rev-parse", done.branch).strip()
    champion = git(repo, "rev-parse", "autoresearch/toy").strip()
    assert tree_files(repo, tip, "study/model.py") == tree_files(repo, champion, "study/model.py")
    assert git(repo, "diff", "--stat", champion, tip) == ""  # only editable files ever change
    assert [k.row.experiment for k, _ in done.commits] == [5, 6, 7]
    assert {k.row.experiment: why for k, why in done.folded} == {
        2: "rewritten by #6, whose commit holds what is left",
        4: "nothing of it is in the champion: undone or rewritten by #5",
    }
    log = git(repo, "log", "--format=%H%x00%B%x01", f"{done.base}..{tip}").split("\x01")
    messages = [m.strip().split("\x00") for m in log if m.strip()][::-1]
    assert [sha for sha, _ in messages] == [sha for _, sha in done.commits]
    for (keep, _), (_, text) in zip(done.commits, messages, strict=True):
        assert text.startswith(keep.row.description + "\n")
        assert f"Experiment: {keep.row.experiment} of study toy" in text
        assert f"Evidence: {keep.row.evidence}" in text and keep.row.evidence
    assert "score: 8.000000 -> 7.000000" in messages[1][1]  # the metric before and after
    assert "Also holds what is left of: #2 (X closer to 3)" in messages[1][1]
    assert "Suspect: " in messages[2][1]
    assert git(repo, "show", f"{done.commits[0][1]}:study/model.py") == model(X="10.0", Z="0.0")
    assert (
        replays_cleanly(repo, done.base, tip, tmp_path)
        == git(repo, "rev-parse", f"{tip}^{{tree}}").strip()
    )

    summary = done.summary.read_text()
    assert done.summary == study.state_dir / "export.md"
    assert "from 34 to 5" in summary and "## Suspect keeps (1)" in summary
    for n, text in [
        (2, "folded away: rewritten by #6"),
        (4, "folded away: nothing of it"),
        (3, None),
    ]:
        line = next((x for x in summary.splitlines() if x.startswith(f"| {n} |")), None)
        assert (line is None) if text is None else (text in line)
    with pytest.raises(ExportError, match="exists"):
        export(study)
    assert refs(repo) == before


# a history written by hand: a tree search's keeps, new and removed files, git's refusals -----


def hand_study(make_study) -> Path:
    """A study whose editable files are model.py and a folder, with its branch at the base."""
    folder = make_study(knobs="A = 1\n")
    (folder / "extra").mkdir()
    (folder / "extra" / "old.py").write_text("OLD = 1\n")
    text = (folder / "study.yaml").read_text().replace("[model.py]", "[model.py, extra]")
    (folder / "study.yaml").write_text(text)
    commit_all(folder.parent, "the extra folder")
    git(folder.parent, "branch", "autoresearch/toy")
    return folder


def keep(repo: Path, parent: str, files: dict[str, str | None], script: str = "") -> str:
    """A commit on `parent` (not necessarily the last keep: a tree search's node) that writes or
    removes files; the user's checkout is back at main afterwards."""
    git(repo, "checkout", "-q", "--detach", parent)
    for path, text in files.items():
        if text is None:
            git(repo, "rm", "-q", path)
        else:
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(text)
            git(repo, "add", path)
    git(repo, "commit", "-q", "-m", script or "candidate")
    sha = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    return sha


def record(folder: Path, commits: list[str], metrics: list[float]) -> None:
    ledger = Ledger(load_study(folder).state_dir / "results.tsv", "score")
    for n, (sha, value) in enumerate(zip(commits, metrics, strict=True), 1):
        text = "baseline" if n == 1 else f"change {n}"
        ledger.append(Row(n, Status.KEEP, text, sha[:7], value, evidence=f"threshold {n}"))
    git(folder.parent, "update-ref", "refs/heads/autoresearch/toy", commits[-1])


def hand_history(make_study) -> tuple[Path, list[str]]:
    folder = hand_study(make_study)
    repo = folder.parent
    base = git(repo, "rev-parse", "HEAD").strip()
    first = keep(repo, base, {"study/model.py": "X = 5.0\n", "study/extra/new.py": "NEW = 1\n"})
    # built on the base, not on the first keep: it holds none of the first's change
    second = keep(repo, base, {"study/model.py": "X = 4.0\n", "study/extra/old.py": None})
    third = keep(repo, second, {"study/extra/new.py": "NEW = 2\n"})
    record(folder, [base, first, second, third], [7.0, 2.0, 1.0, 0.5])
    return folder, [base, first, second, third]


def test_a_tree_searchs_keeps_new_and_removed_files(make_study, tmp_path):
    folder, (base, _, second, third) = hand_history(make_study)
    repo = folder.parent
    before = refs(repo)
    done = export(load_study(folder), branch="review/toy")
    assert refs(repo) == before
    tip = git(repo, "rev-parse", "review/toy").strip()
    assert tree_files(repo, tip, "study") == tree_files(repo, third, "study")
    # the first keep's line is rewritten and its file made anew by a later keep: folded away
    assert [k.row.experiment for k, _ in done.commits] == [3, 4]
    assert changed(repo, done.commits[0][1]) == {"study/model.py": "M", "study/extra/old.py": "D"}
    assert changed(repo, tip) == {"study/extra/new.py": "A"}
    assert (
        replays_cleanly(repo, base, tip, tmp_path)
        == git(repo, "rev-parse", f"{tip}^{{tree}}").strip()
    )
    assert git(repo, "rev-parse", f"{tip}^{{tree}}") != git(repo, "rev-parse", f"{second}^{{tree}}")


def test_git_refusals_and_the_cli(make_study):
    folder, _ = hand_history(make_study)
    repo = folder.parent
    before = refs(repo)
    runner = CliRunner()
    first = runner.invoke(main, ["export", str(folder)])
    assert first.exit_code == 0, first.output
    assert "branch  autoresearch/toy-export (2 commits on" in first.output
    assert "folded  #2" in first.output and "export.md" in first.output
    tip = git(repo, "rev-parse", "autoresearch/toy-export")
    again = runner.invoke(main, ["export", str(folder)])
    assert again.exit_code == 1 and "exists: pass --force" in again.output
    assert runner.invoke(main, ["export", str(folder), "--force"]).exit_code == 0
    assert git(repo, "rev-parse", "autoresearch/toy-export^{tree}") == git(
        repo, "rev-parse", f"{tip.strip()}^{{tree}}"
    )
    for name, said in [
        ("main", "checked out"),
        ("autoresearch/toy", "study's own"),
        ("a..b", "not a valid"),
    ]:
        out = runner.invoke(main, ["export", str(folder), "--branch", name, "--force"])
        assert out.exit_code == 1 and said in out.output, out.output
    assert refs(repo) == before


def test_nothing_to_export(make_study):
    folder = hand_study(make_study)
    repo = folder.parent
    base = git(repo, "rev-parse", "HEAD").strip()
    record(folder, [base], [7.0])
    with pytest.raises(ExportError, match="no change was kept"):
        export(load_study(folder))
    undo = keep(
        repo, keep(repo, base, {"study/model.py": "X = 5.0\n"}), {"study/model.py": "X = 10.0\n"}
    )
    Ledger(load_study(folder).state_dir / "results.tsv", "score").append(
        Row(2, Status.KEEP, "undone", undo[:7], 1.0)
    )
    with pytest.raises(ExportError, match="editable files are the base's"):
        export(load_study(folder))
    assert git(repo, "branch", "--list", "autoresearch/toy-export") == ""


def test_attribution_by_line():
    """Adjacent changes of several keeps stay apart when each one's lines are one run; a line
    rewritten by a later keep is the later one's; a mode change is a change of its own."""

    def v(*lines: str, mode: str = "100644") -> tuple[str, bytes]:
        return mode, "".join(f"{line}\n" for line in lines).encode()

    versions = [v("a", "b"), v("a", "b", "c"), v("a", "b", "c", "d"), v("a", "B", "c", "d")]
    plan = plan_file("f", versions)
    assert plan is not None and plan.owners() == {1, 2, 3}
    assert [plan.at(k) for k in range(4)] == versions
    plan = plan_file("f", [v("a", "X=10"), v("a", "X=5"), v("a", "X=4")])
    assert plan is not None and plan.owners() == {2} and plan.folded == {1: 2}
    plan = plan_file("f", [v("a", "X=10"), v("a", "X=5", "L"), v("a", "X=4", "L")])
    assert plan is not None and plan.owners() == {1, 2} and plan.at(1) == v("a", "X=10", "L")
    plan = plan_file(
        "f", [v("a", "b"), v("a", "c1", "b"), v("a", "c1", "c2", "b"), v("a", "c2", "b")]
    )
    assert plan is not None and plan.owners() == {2}  # 1's line undone
    plan = plan_file("f", [v("a"), v("a", mode="100755"), v("a", "b", mode="100755")])
    assert plan is not None and plan.owners() == {1, 2} and plan.at(1) == v("a", mode="100755")
    assert plan_file("f", [v("a"), v("b"), v("a")]) is None
