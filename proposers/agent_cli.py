"""Any coding-agent CLI as the researcher (`claude -p`, `codex exec`, `aider --message`, ...).

The agent edits the worktree itself. We take its diff from git, refuse changes outside the
editable files (protected files above all), turn the editable ones into a Proposal and put the
worktree back at HEAD: the core applies and commits proposals itself, so a change is never
half-applied by us. The agent runs in its own process group, killed whole on timeout.

`proposer.command` is a shell command template. `{prompt_file}` becomes the path of a file
holding the prompt, `{workdir}` the study folder inside the worktree and `{python}` the Python
that runs us (all shell-quoted, so do not quote them again); without `{prompt_file}` the prompt
arrives on standard input. The last stdout line `HYPOTHESIS: ...` (else the last non-empty line)
becomes the hypothesis.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Literal

import git
from pydantic import Field, field_validator

from core.processes import kill_group
from core.sandbox import HOST_IP, Sandbox, lent
from core.secrets import allowed_environ, check_passenv, known_secrets, redact
from core.study import ProposerConfig
from proposers import novelty, prompt
from proposers.base import Context, InvalidProposal, Kind, Learned, Outcome, Proposal, StopCampaign

log = logging.getLogger(__name__)

HYPOTHESIS_RE = re.compile(r"^\s*\**HYPOTHESIS\**\s*:\s*(.+?)\s*$", re.IGNORECASE)
HYPOTHESIS_CHARS = 500
TAIL_CHARS = 1500
KILL_GRACE_S = 3.0
# what agents need to reach their model: their own keys and endpoints, by name
AGENT_ENV = ("ANTHROPIC_*", "CLAUDE_*", "OPENAI_*", "CODEX_*", "GEMINI_*", "GOOGLE_API_KEY")
LOOPBACK = re.compile(r"(?<=://)(?:127\.0\.0\.1|localhost)(?=[:/]|$)")


def hypothesis_from(stdout: str, secrets: list[str]) -> str:
    """The agent's summary: its last `HYPOTHESIS:` line, else its last non-empty line."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    marked = [m.group(1) for line in lines if (m := HYPOTHESIS_RE.match(line))]
    text = marked[-1] if marked else (lines[-1] if lines else "")
    return " ".join(redact(text, secrets).split())[:HYPOTHESIS_CHARS]


class Snapshot:
    """What differs from a commit in a worktree: changed tracked files and untracked files."""

    def __init__(self, repo: git.Repo, head: str) -> None:
        diff = repo.git.diff("--name-only", "--no-renames", "-z", head)
        self.tracked = {p for p in diff.split("\0") if p}
        self.untracked = set(repo.untracked_files)


class AgentCliConfig(ProposerConfig):
    kind: Literal["agent_cli"] = "agent_cli"
    command: str | None = None  # claude -p "$(cat {prompt_file})" --permission-mode acceptEdits
    timeout_s: float = Field(900, gt=0)
    passenv: list[str] = []  # more variables of ours the agent gets (NAME or PREFIX*)

    @field_validator("passenv")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        return check_passenv(names)


class AgentCliProposer:
    """Runs a coding-agent CLI on the worktree and turns its diff into a Proposal."""

    name = "agent_cli"

    def __init__(self, config: AgentCliConfig) -> None:
        if not config.command or not config.command.strip():
            raise StopCampaign(
                "proposer.command is required for kind agent_cli, for example "
                "'claude -p \"$(cat {prompt_file})\" --permission-mode acceptEdits'"
            )
        self.config = config
        self.secrets = known_secrets()

    def command_line(self, prompt_file: Path, workdir: Path) -> str:
        return (
            self.config.command.replace(  # type: ignore[union-attr]
                "{prompt_file}", shlex.quote(str(prompt_file))
            )
            .replace("{workdir}", shlex.quote(str(workdir)))
            .replace("{python}", shlex.quote(sys.executable))
        )

    def propose(self, context: Context) -> Proposal:
        repo = git.Repo(context.workdir)
        head = repo.head.commit.hexsha
        before = Snapshot(repo, head)
        if before.tracked:
            raise InvalidProposal(
                f"the worktree {context.workdir} has uncommitted changes before the agent ran "
                f"({', '.join(sorted(before.tracked))}); it must start at the champion"
            )
        try:
            stdout = self._run(context)
            files = self._collect(context, repo, head, before)
        finally:
            self._restore(context, repo, head, before)
        hypothesis = hypothesis_from(stdout, self.secrets) or "change made by the agent CLI"
        key = prompt.files_key({**context.files, **files})
        found = novelty.match(context.files, files, context.tried_changes, near=0.0)
        if found is not None:  # an agent run is not continued: no second chance to give it
            context.saved.exact += 1
            raise InvalidProposal(novelty.refusal(found, context.study.metric.name))
        if key in context.tried:
            raise InvalidProposal("the agent repeated a change that was already tried")
        return Proposal(hypothesis=hypothesis, files=files, proposer=self.name, key=key)

    def learn(self, context: Context, outcome: Outcome) -> Learned:
        """The core keeps the learnings for agent CLIs (they read resource.md in the prompt)."""
        return Learned()

    # -- running the agent

    def _run(self, context: Context) -> str:
        """Run the command in the study folder; its stdout, or InvalidProposal on failure."""
        cwd = context.workdir / context.study.rel
        timeout = self.config.timeout_s
        with tempfile.TemporaryDirectory(prefix="autoresearch-agent-") as tmp:
            prompt_file = Path(tmp) / "prompt.md"
            prompt_file.write_text(prompt.agent_prompt(context, self.config.history_rows))
            out_path, err_path = Path(tmp) / "stdout.txt", Path(tmp) / "stderr.txt"
            stdin_path = prompt_file if "{prompt_file}" not in self.config.command else os.devnull
            command = self.command_line(prompt_file, cwd)
            argv, env = self._sandboxed(["/bin/sh", "-c", command], cwd, context.sandbox, tmp)
            with (
                lent(context.sandbox and context.sandbox.worktree),  # as root: nobody's a while
                lent(context.sandbox and Path(tmp)),  # the prompt, for nobody to read
                open(out_path, "wb") as out,
                open(err_path, "wb") as err,
                open(stdin_path, "rb") as stdin,
            ):
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=stdin,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
                try:
                    code = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    kill_group(proc, KILL_GRACE_S)
                    raise InvalidProposal(
                        f"the agent command timed out after {timeout:g} s; its process group "
                        "was killed"
                    ) from None
                finally:  # leftover children must not edit the worktree later
                    kill_group(proc, KILL_GRACE_S)
            stdout = out_path.read_text(errors="replace")
            if code != 0:
                tail = redact(err_path.read_text(errors="replace")[-TAIL_CHARS:], self.secrets)
                raise InvalidProposal(f"the agent command exited with code {code}: {tail.strip()}")
        return stdout

    def _sandboxed(
        self, argv: list[str], cwd: Path, sandbox: Sandbox | None, prompt_dir: str
    ) -> tuple[list[str], dict[str, str]]:
        """The agent's command line and environment: by allowlist, plus what it needs to reach
        its model; in the sandbox when there is one, with the network, the worktree writable
        and the prompt readable. A model server on this machine's loopback is reached through
        the sandbox's gateway (HOST_IP), and only then is the host's loopback open to it."""
        env = allowed_environ(os.environ, [*AGENT_ENV, *self.config.passenv])
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        if sandbox is None:
            return argv, env
        local = {k: LOOPBACK.sub(HOST_IP, v) for k, v in env.items() if k.endswith("_BASE_URL")}
        local = {k: v for k, v in local.items() if v != env[k]}
        env.update(local)
        agent = replace(
            sandbox,
            network=True,
            host_loopback=bool(local),
            readable=(*sandbox.readable, Path(prompt_dir)),
            writable=(*sandbox.writable, sandbox.worktree),
        )
        return agent.wrap(argv, cwd), env

    # -- reading its change

    def _collect(
        self, context: Context, repo: git.Repo, head: str, before: Snapshot
    ) -> dict[str, str]:
        """The new text of each changed editable file; InvalidProposal for any other change."""
        after = Snapshot(repo, head)
        changed = sorted(after.tracked | (after.untracked - before.untracked))
        protected = [p for p in changed if context.is_protected(p)]
        outside = [p for p in changed if p not in context.files and p not in protected]
        problems = []
        if protected:
            problems.append(f"changed protected files: {', '.join(protected)}")
        if outside:
            problems.append(f"changed files that are not editable: {', '.join(outside)}")
        deleted = [p for p in changed if p in context.files and not (context.workdir / p).exists()]
        if deleted:
            problems.append(f"deleted editable files: {', '.join(deleted)}")
        links = [p for p in changed if (context.workdir / p).is_symlink()]
        if links:  # read as text, a link would put any file of this machine into the candidate
            problems.append(f"made symbolic links: {', '.join(links)}")
        if problems:
            raise InvalidProposal("the agent " + "; ".join(problems))
        files = {}
        for path in changed:
            text = (context.workdir / path).read_text()
            if text != context.files[path]:
                files[path] = text
        if not files:
            raise InvalidProposal("the agent made no change to the editable files")
        return files

    def _restore(self, context: Context, repo: git.Repo, head: str, before: Snapshot) -> None:
        """Put the worktree back at the champion: the core applies the proposal itself."""
        if repo.head.commit.hexsha != head:
            log.warning("the agent moved HEAD; resetting the worktree to %s", head[:7])
        repo.git.reset("--hard", head)
        for path in Snapshot(repo, head).untracked - before.untracked:
            full = context.workdir / path
            full.unlink(missing_ok=True)
            parent = full.parent
            while parent != context.workdir and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


KIND = Kind(AgentCliConfig, lambda config, seed: AgentCliProposer(config))
