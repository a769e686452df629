"""Before anything starts (a Prefect server, a flow run, a lock, a branch): what would make a
campaign fail at once, said in one message that names the file (a StudyError: exit 2).

- a study with no baseline yet whose folder is not committed (steps.lab.ensure_startable);
- a command the study runs (the evaluator's, a screening stage's, the holdout's) whose program
  is neither on PATH nor in the study folder, or that runs a Python script the folder lacks.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from core.study import STUDY_FILE, Study, StudyError
from steps.lab import ensure_startable

PYTHONS = ("python", "python3", sys.executable)


def preflight(study: Study) -> None:
    ensure_startable(study)
    problems = [
        f"{key}: {problem}"
        for key, command in commands(study)
        if (problem := missing(command, study.folder)) is not None
    ]
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise StudyError(f"{study.folder / STUDY_FILE}: {len(problems)} problem(s):\n{listed}")


def commands(study: Study) -> list[tuple[str, str]]:
    """(study.yaml key, command) of every command the study runs on its own."""
    config = study.config
    found = []
    if isinstance(command := getattr(config.evaluator, "command", None), str):
        found.append(("evaluator.command", command))
    for i, stage in enumerate(config.evaluator.stages):
        found.append((f"evaluator.stages.{i}.command", stage.command))
    if config.holdout is not None:
        found.append(("holdout.command", config.holdout.command))
    return found


def missing(command: str, folder: Path) -> str | None:
    """What is missing for `command` to start in the study folder (None: nothing we can see)."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return f"`{command}` cannot be read as a command ({exc})"
    while words and "=" in words[0] and not words[0].startswith("="):
        words.pop(0)  # VAR=value before the program
    if not words:
        return "the command is empty"
    program = words[0]
    if not _found(program, folder):
        return f"runs `{program}`, which is neither on PATH nor in {folder}"
    script = words[1] if len(words) > 1 else ""
    if program in PYTHONS and script.endswith(".py") and not (folder / script).is_file():
        return f"runs {script}, which is not in {folder}"
    return None


def _found(program: str, folder: Path) -> bool:
    if "/" in program:
        return (folder / program).exists() or Path(program).exists()
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(program, path=path) is not None
