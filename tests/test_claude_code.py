"""Claude Code itself (the npm package @anthropic-ai/claude-code) as the agent_cli researcher.

The real `claude` client runs against the loopback Messages API emulator (ANTHROPIC_BASE_URL, a
dummy key): the emulator answers its streamed requests as a model would, with calls of Claude
Code's own tools (Read, then Edit, by the names and input schemas of the `tools` it sends), and a
last text once the edit's result came back. So the whole path runs with a real client: the
prompt file, the agent's own edit in its sandbox, our diff, the guards, the commit and the row.

The set-up installs the package with npm into a cache folder reused across runs
(~/.cache/autoresearch-tests/claude-code/<version>); without npm, or when the install fails
(no registry), the test is skipped with the reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.ledger import Status
from core.sandbox import HOST_IP, bwrap
from proposers import prompt
from steps.lab import Lab
from tests.conftest import experiment, git
from tests.emulators.anthropic_api import (
    AnthropicEmulator,
    Recorded,
    Reply,
    text_reply,
    tool_results,
    tool_use,
    working_directory,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

PACKAGE = "@anthropic-ai/claude-code"
VERSION = "2.1.197"  # the version tested; a new one installs beside it
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "autoresearch-tests"
    / "claude-code"
    / VERSION
)
INSTALL_TIMEOUT_S = 600
# the command lines README.md gives: the prompt as an argument, or on standard input
ARGUMENT = 'claude -p "$(cat {prompt_file})" --permission-mode acceptEdits'
STDIN = "claude -p --permission-mode acceptEdits"
HYPOTHESIS = "X = 4.0 is closer to the optimum 3"


def _version(binary: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip() if "Claude Code" in out else None


def _installed() -> Path | None:
    """The folder of a `claude` that runs: npm's link to it, or (when npm ran no install
    scripts, so that the link is a placeholder) the platform package's own binary."""
    modules = CACHE / "node_modules"
    found = [
        modules / ".bin" / "claude",
        *sorted(modules.glob("@anthropic-ai/claude-code-*/claude")),
    ]
    return next((b.parent for b in found if b.is_file() and _version(b)), None)


@pytest.fixture(scope="session")
def claude_code() -> Path:
    """The folder holding a working `claude`, installed once into the cache."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed: Claude Code ({PACKAGE}) cannot be installed")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # one install, whatever the workers
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder = _installed()
        if folder is None:
            command = [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund"]
            command += ["--loglevel=error", "--fetch-retry-mintimeout=1000"]
            command += ["--fetch-retry-maxtimeout=5000"]
            command += [f"{PACKAGE}@{VERSION}"]
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
                )
            except subprocess.TimeoutExpired:
                pytest.skip(f"`npm install {PACKAGE}` took over {INSTALL_TIMEOUT_S} s")
            folder = _installed()
            if folder is None:
                lines = (done.stderr or done.stdout).strip().splitlines()
                said = " ".join([x for x in lines if x.startswith("npm error")][:3] or lines[-3:])
                pytest.skip(f"`npm install {PACKAGE}` gave no working claude: {said}")
    return folder


class ClaudeCodeModel:
    """The emulator's answers to Claude Code's main loop (the requests whose tools hold its
    Edit tool): Read the file, Edit it once its content came back, then a last text. Other
    requests (a title, a summary) get a short text."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def __call__(self, body: dict[str, Any]) -> Reply:
        tools = {t.get("name"): t for t in body.get("tools") or []}
        if "Edit" not in tools:
            return text_reply("ok")
        schema = tools["Edit"]["input_schema"]["properties"]
        assert {"file_path", "old_string", "new_string"} <= set(schema), schema
        path = f"{working_directory(body)}/model.py"
        results = tool_results(body)
        if any(r.get("is_error") for r in results):
            return text_reply(f"a tool failed: {results}")
        if not results:
            return tool_use("Read", {"file_path": path}, text="Let me read model.py first.")
        if len(results) == 1:
            edit = {"file_path": path, "old_string": self.old, "new_string": self.new}
            return tool_use("Edit", edit)
        return text_reply(f"I moved X towards the optimum.\n\nHYPOTHESIS: {HYPOTHESIS}")


def main_loop(emulator: AnthropicEmulator) -> list[Recorded]:
    return [
        r
        for r in emulator.messages_requests
        if any(t.get("name") == "Edit" for t in r.body.get("tools") or [])
    ]


def user_text(rec: Recorded) -> str:
    content = rec.body["messages"][0]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if b.get("type") == "text")


# an agent runs sandboxed (the default) where bwrap runs and slirp4netns gives it a network
SANDBOX = bwrap() is not None and shutil.which("slirp4netns") is not None
NO_SANDBOX = pytest.mark.skipif(not SANDBOX, reason="bubblewrap and slirp4netns (make installs)")


@pytest.mark.parametrize(
    ("command", "sandboxed", "x", "status"),
    [
        pytest.param(ARGUMENT, True, "4.0", Status.KEEP, id="argument-sandboxed", marks=NO_SANDBOX),
        pytest.param(STDIN, True, "20.0", Status.DISCARD, id="stdin-sandboxed", marks=NO_SANDBOX),
        # as root (CI) unsandboxed: no --dangerously-skip-permissions, so no IS_SANDBOX needed
        pytest.param(ARGUMENT, False, "4.0", Status.KEEP, id="argument-unsandboxed"),
    ],
)
def test_claude_code_edits_the_study_through_its_own_tools(
    claude_code: Path,
    make_study,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    sandboxed: bool,
    x: str,
    status: Status,
) -> None:
    """Baseline X = 10 (score 7), then Claude Code's Edit to X = 4 (score 1: kept) or X = 20
    (score 17: discarded)."""
    sandbox = f"{{readable: ['{CACHE}']}}" if sandboxed else "false"  # claude, read-only
    yaml = (
        f"proposer: {{kind: agent_cli, command: '{command}', timeout_s: 120}}\nsandbox: {sandbox}\n"
    )
    folder = make_study(yaml_extra=yaml, **{"program.md": "Bring the score down.\n"})
    repo = folder.parent
    start = git(repo, "rev-parse", "HEAD").strip()

    emulator = AnthropicEmulator(responder=ClaudeCodeModel("X = 10.0", f"X = {x}")).start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-dummy-for-the-emulator")
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")  # no telemetry, updater
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))  # not ~/.claude
    monkeypatch.setenv("PATH", f"{claude_code}{os.pathsep}{os.environ['PATH']}")
    prompts: list[str] = []
    agent_prompt = prompt.agent_prompt

    def recorded(*args: Any, **kwargs: Any) -> str:
        prompts.append(agent_prompt(*args, **kwargs))
        return prompts[-1]

    monkeypatch.setattr(prompt, "agent_prompt", recorded)
    try:
        baseline = experiment(str(folder))
        row = experiment(str(folder))
    finally:
        emulator.stop()

    calls = main_loop(emulator)
    assert baseline.status == Status.KEEP and baseline.description == "baseline"
    assert row.status == status, (row, [r.body["messages"][-1] for r in calls])
    assert row.proposer == "agent_cli" and row.description == HYPOTHESIS
    assert row.metric == pytest.approx(abs(float(x) - 3.0))  # the evaluator's score

    # Claude Code's own requests: streamed, our prompt as its user turn, its tools called
    assert len(prompts) == 1 and len(calls) == 3, [r.path for r in emulator.requests]
    assert all(r.body.get("stream") is True for r in calls)
    assert all(r.headers.get("user-agent", "").startswith("claude-cli/") for r in calls)
    assert all(r.headers.get("x-api-key") == os.environ["ANTHROPIC_API_KEY"] for r in calls)
    gateway = f"{HOST_IP}:" if sandboxed else "127.0.0.1:"  # the sandbox's way to our loopback
    assert all(r.headers.get("host", "").startswith(gateway) for r in calls)
    assert prompts[0].strip() in user_text(calls[0])
    assert "Do not run git" in prompts[0] and '<file path="model.py">' in prompts[0]
    read_result, edit_result = tool_results(calls[-1].body)
    assert "X = 10.0" in str(read_result["content"]) and not edit_result.get("is_error")
    cwd = working_directory(calls[0].body)
    assert cwd is not None and Path(cwd).name == "study" and Path(cwd) != folder  # a worktree

    # the candidate's commit, on the baseline, holds exactly the scripted edit and nothing else
    commit = git(repo, "rev-parse", f"{row.commit}^{{commit}}").strip()
    assert git(repo, "rev-parse", f"{commit}~1").startswith(baseline.commit)
    assert git(repo, "diff", "--name-only", f"{commit}~1", commit).split() == ["study/model.py"]
    diff = git(repo, "diff", "-U0", f"{commit}~1", commit, "--", "study/model.py")
    changed = [d for d in diff.splitlines() if d[:1] in "+-" and d[:3] not in ("+++", "---")]
    assert changed == ["-X = 10.0", f"+X = {x}"]
    lab = Lab.open(folder)
    kept = status == Status.KEEP
    assert lab.records.champion_commit().startswith(row.commit if kept else baseline.commit)
    champion_x = x if kept else "10.0"
    assert (lab.workspace.study_dir / "model.py").read_text() == f"X = {champion_x}\n"
    # the person's checkout untouched
    assert git(repo, "rev-parse", "HEAD").strip() == start
    changes = git(repo, "status", "--porcelain", "--untracked-files=all", "--", "study")
    assert changes == "", changes
    assert (folder / "model.py").read_text() == "X = 10.0\n"
