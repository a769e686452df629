"""The agent_cli proposer with stand-in agents: small Python scripts run as real subprocesses."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from proposers import prompt
from proposers.agent_cli import AgentCliConfig, AgentCliProposer, hypothesis_from
from proposers.base import Context, InvalidProposal, StopCampaign
from steps.plugins import load_study

MODEL_PY = "WINDOW = 12\nALPHA = 0.35\n"
EVALUATE_PY = 'print("rmse", 0.5)\n'
STUDY_YAML = """\
name: forecast
editable: [model.py]
protected: [evaluate.py]
evaluator: {kind: command, command: "python evaluate.py"}
metric: {name: rmse}
"""
TARGET = "study/model.py"

EDITS = """
import pathlib, sys
prompt_text = pathlib.Path(sys.argv[1]).read_text() if len(sys.argv) > 1 else sys.stdin.read()
assert "model.py" in prompt_text and "evaluate.py" in prompt_text, prompt_text[:200]
model = pathlib.Path("model.py")
model.write_text(model.read_text().replace("WINDOW = 12", "WINDOW = 24"))
print("looking at the window size")
print("HYPOTHESIS: a longer window smooths the noise and lowers rmse")
print("done.")
"""

EDITS_PROTECTED = """
import pathlib
pathlib.Path("model.py").write_text("WINDOW = 30\\nALPHA = 0.35\\n")
pathlib.Path("evaluate.py").write_text('print("rmse", 0.0)\\n')
print("HYPOTHESIS: make the evaluator kinder")
"""

HANGS = """
import os, subprocess, sys, time, pathlib
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
pathlib.Path(sys.argv[1]).write_text(f"{os.getpid()} {child.pid}")
pathlib.Path("model.py").write_text("WINDOW = 99\\n")
time.sleep(60)
"""

NEW_FILE = """
import pathlib
pathlib.Path("model.py").write_text("WINDOW = 13\\nALPHA = 0.35\\n")
pathlib.Path("notes").mkdir()
pathlib.Path("notes/scratch.txt").write_text("my notes")
"""

COMMITS = """
import pathlib, subprocess
pathlib.Path("model.py").write_text("WINDOW = 14\\nALPHA = 0.35\\n")
git = ["git", "-c", "user.name=a", "-c", "user.email=a@example.org"]
subprocess.run(git + ["commit", "-qam", "agent commit"], check=True)
print("HYPOTHESIS: window 14")
"""

FAILS = """
import pathlib, sys
pathlib.Path("model.py").write_text("WINDOW = 15\\n")
print("cannot reach the model server", file=sys.stderr)
sys.exit(3)
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def worktree(tmp_path: Path) -> tuple[Path, Path]:
    """A repository (with a space in its path) and a linked worktree on a campaign branch."""
    root = tmp_path / "my repo"
    study = root / "study"
    study.mkdir(parents=True)
    (study / "study.yaml").write_text(STUDY_YAML)
    (study / "model.py").write_text(MODEL_PY)
    (study / "evaluate.py").write_text(EVALUATE_PY)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baseline")
    wt = tmp_path / "work tree"
    git(root, "worktree", "add", "-q", "-b", "autoresearch/forecast", str(wt))
    return study, wt


def context(study_folder: Path, wt: Path) -> Context:
    study = load_study(study_folder)
    return Context(
        study=study,
        program="Lower rmse.",
        files={p: (wt / p).read_text() for p in study.editable},
        protected=study.protected,
        history=[],
        learnings="",
        last_crash=None,
        experiment=1,
        workdir=wt,
    )


def agent(tmp_path: Path, source: str, template: str = "{prompt_file}", timeout: float = 20):
    script = tmp_path / "agent.py"
    script.write_text(source)
    command = f"{sys.executable} {script} {template}".strip()
    return AgentCliProposer(AgentCliConfig(command=command, timeout_s=timeout))


def clean(wt: Path) -> bool:
    return git(wt, "status", "--porcelain") == ""


def test_an_agent_that_edits_a_file_gives_a_proposal(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    head = git(wt, "rev-parse", "HEAD")
    ctx = context(study, wt)
    result = agent(tmp_path, EDITS).propose(ctx)
    assert result.files == {TARGET: "WINDOW = 24\nALPHA = 0.35\n"}
    assert result.hypothesis == "a longer window smooths the noise and lowers rmse"
    assert result.proposer == "agent_cli"
    assert result.key == prompt.files_key({TARGET: result.files[TARGET]})
    assert clean(wt) and git(wt, "rev-parse", "HEAD") == head  # restored: the core applies it
    assert (wt / TARGET).read_text() == MODEL_PY


def test_the_prompt_can_arrive_on_stdin(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    result = agent(tmp_path, EDITS, template="").propose(context(study, wt))
    assert result.files[TARGET].startswith("WINDOW = 24")


def test_the_workdir_placeholder_is_the_study_folder(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    source = "import pathlib, sys\np = pathlib.Path(sys.argv[1]) / 'model.py'\n"
    source += "p.write_text(p.read_text().replace('0.35', '0.3'))\n"
    result = agent(tmp_path, source, template="{workdir}").propose(context(study, wt))
    assert result.files[TARGET] == "WINDOW = 12\nALPHA = 0.3\n"
    assert result.hypothesis == "change made by the agent CLI"


def test_a_change_to_a_protected_file_is_rejected(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    with pytest.raises(InvalidProposal, match="protected files: study/evaluate.py"):
        agent(tmp_path, EDITS_PROTECTED).propose(context(study, wt))
    assert clean(wt)
    assert (wt / "study/evaluate.py").read_text() == EVALUATE_PY


def test_a_new_file_outside_the_editable_ones_is_rejected_and_removed(
    tmp_path: Path, worktree
) -> None:
    study, wt = worktree
    (wt / "study" / "cache.tmp").write_text("left by the evaluator")  # there before: kept
    with pytest.raises(InvalidProposal, match="not editable: study/notes/scratch.txt"):
        agent(tmp_path, NEW_FILE).propose(context(study, wt))
    assert not (wt / "study" / "notes").exists()
    assert (wt / "study" / "cache.tmp").exists()
    assert (wt / TARGET).read_text() == MODEL_PY


def test_a_symbolic_link_is_rejected_not_read(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY\n")
    source = f"import os\nos.remove({str(wt / TARGET)!r})\nos.symlink({str(secret)!r}, "
    source += f"{str(wt / TARGET)!r})\n"
    with pytest.raises(InvalidProposal, match=f"made symbolic links: {TARGET}"):
        agent(tmp_path, source).propose(context(study, wt))
    assert clean(wt) and (wt / TARGET).read_text() == MODEL_PY


def test_an_agent_that_commits_is_undone(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    head = git(wt, "rev-parse", "HEAD")
    result = agent(tmp_path, COMMITS).propose(context(study, wt))
    assert result.files[TARGET].startswith("WINDOW = 14")
    assert git(wt, "rev-parse", "HEAD") == head and clean(wt)


def test_a_failing_agent_gives_an_invalid_proposal(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    with pytest.raises(InvalidProposal, match="code 3: cannot reach the model server"):
        agent(tmp_path, FAILS).propose(context(study, wt))
    assert clean(wt)


def test_no_change_is_an_invalid_proposal(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    with pytest.raises(InvalidProposal, match="no change"):
        agent(tmp_path, "print('HYPOTHESIS: nothing to do')\n").propose(context(study, wt))


def test_a_change_already_tried_is_refused(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    ctx = context(study, wt)
    ctx.tried.add(prompt.files_key({TARGET: "WINDOW = 24\nALPHA = 0.35\n"}))
    with pytest.raises(InvalidProposal, match="already tried"):
        agent(tmp_path, EDITS).propose(ctx)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_hanging_agent_is_killed_with_its_whole_group(tmp_path: Path, worktree) -> None:
    study, wt = worktree
    pids_file = tmp_path / "pids"
    proposer = agent(tmp_path, HANGS, template=str(pids_file), timeout=1.5)
    start = time.monotonic()
    with pytest.raises(InvalidProposal, match="timed out after 1.5 s"):
        proposer.propose(context(study, wt))
    assert time.monotonic() - start < 10
    pids = [int(p) for p in pids_file.read_text().split()]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]
    assert clean(wt) and (wt / TARGET).read_text() == MODEL_PY


def test_a_missing_command_stops_with_a_clear_message() -> None:
    with pytest.raises(StopCampaign, match="proposer.command"):
        AgentCliProposer(AgentCliConfig())


def test_the_hypothesis_is_the_marked_line_else_the_last_line_without_secrets() -> None:
    assert hypothesis_from("a\nHYPOTHESIS: first\nb\n**Hypothesis**: second\nc\n", []) == "second"
    assert hypothesis_from("working\n\nchanged the window\n\n", []) == "changed the window"
    leaked = hypothesis_from("HYPOTHESIS: used sk-ant-api03-abcdefghijkl to call", [])
    assert "sk-ant" not in leaked and "[redacted]" in leaked


def test_the_agent_prompt_names_paths_from_its_working_directory(worktree) -> None:
    study, wt = worktree
    text = prompt.agent_prompt(context(study, wt), rows=5)
    assert '<file path="model.py">\nWINDOW = 12' in text
    assert "- evaluate.py" in text and "HYPOTHESIS:" in text
    assert "Do not run git" in text
