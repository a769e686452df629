"""A worker's side of a remote evaluation: the candidate fetched from the study's remote into
the worker's own clone, measured there in its own sandboxed worktree, the Measurement returned.
The worker decides nothing and writes no ledger: the campaign does.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.workspace import Workspace
from evaluators.base import Measurement
from steps.instrument import Instrument
from steps.lab import Lab
from steps.plugins import load_study

CLONE = "AUTORESEARCH_CLONE"  # set by `autoresearch worker`: the worker's clone
FLOW = "evaluate"  # the flow (flows/remote.py) that a worker runs for one candidate
ENTRYPOINT = "flows.remote.evaluate"  # a module path: the worker imports it from its install


def artifact_key(flow_run_id: object) -> str:
    """Where a worker's flow run leaves its measurement for the campaign (results stay on the
    worker's disk; artifacts live in the server's database)."""
    return f"measurement-{flow_run_id}"


def measure_at(
    clone: Path,
    study: str,
    remote: str,
    experiment: int,
    commit: str,
    champion: str,
    runs: int,
    paired: bool,
    protected: dict[str, str],
    env: dict[str, str],
) -> tuple[Measurement, list[float] | None]:
    """The candidate `commit` (and, for a paired rule, the champion beside it) measured in the
    clone at `clone`, whose study folder is `study` (relative to the clone's root)."""
    spec = load_study(clone / study)
    lab = Lab(spec)  # the worker's own: its state and .git hidden from the sandbox, and watched
    repo = lab.repo
    ref = repo.candidate_ref(experiment)
    repo.origin.git.fetch(remote, f"+{ref}:{ref}")  # the champion is the candidate's parent
    lab.choose_sandbox(researcher="")  # a worker measures whatever it is sent: always sandboxed
    # the protected files as the campaign hashed them
    instrument = Instrument(spec, lab.evaluator, lambda: protected, lab.own_files, lab.sandbox)
    workspace = Workspace(spec, f"remote-{experiment}", repo).open_at(commit)
    beside = Workspace(spec, f"remote-{experiment}-champion", repo) if paired else None
    try:
        if beside is not None:
            return instrument.paired(workspace, beside.open_at(champion), experiment, runs, env)
        return instrument.repeat(workspace, experiment, runs, env), None
    finally:
        for ws in (workspace, beside):
            if ws is not None and ws.exists():
                repo.origin.git.worktree("remove", "--force", str(ws.path))


def as_json(m: Measurement, champion: list[float] | None) -> dict[str, Any]:
    return {"measurement": asdict(m), "champion_runs": champion}


def from_json(data: dict[str, Any]) -> tuple[Measurement, list[float] | None]:
    raw = dict(data["measurement"])
    raw["samples"] = tuple(raw.get("samples") or ())
    return Measurement(**raw), data.get("champion_runs")
