"""A worker's side of a remote evaluation: the candidate fetched from the study's remote into
the worker's own clone, measured there in its own sandboxed worktree, the Measurement returned.
The worker decides nothing and writes no ledger: the campaign does.

Both directions are signed with the key the campaign and its workers share (core.signing):
the campaign's request (the flow run's parameters), which a worker checks before it fetches
anything, and the worker's measurement, bound to its flow run, experiment and commits, which
the campaign checks before it decides anything. Whoever else reaches the Prefect API can write
parameters, artifacts and states, but no signature that verifies.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core import signing
from core.workspace import Workspace
from evaluators.base import Measurement
from steps.lab import Lab
from steps.plugins import load_study

CLONE = "AUTORESEARCH_CLONE"  # set by `autoresearch worker`: the worker's clone
FLOW = "evaluate"  # the flow (flows/remote.py) that a worker runs for one candidate
ENTRYPOINT = "flows.remote.evaluate"  # a module path: the worker imports it from its install
SIGNATURE = "signature"  # the flow run parameter that carries the campaign's signature


class Refused(RuntimeError):
    """Work a worker will not do: not the tool's own flow, or not asked by the campaign."""


def foreign(
    entrypoint: str | None,
    flow_name: str | None,
    pull_steps: list[dict[str, Any]] | None,
    job_variables: dict[str, Any] | None,
) -> str | None:
    """Why a deployment (and its flow run's job variables) is not the tool's own `evaluate`, or
    None when it is. Pull steps run before any flow code, and job variables may set the
    command: a worker runs neither."""
    if entrypoint != ENTRYPOINT or flow_name != FLOW:
        return f"it runs {entrypoint!r} (flow {flow_name!r}), not {ENTRYPOINT}"
    if pull_steps:
        steps = ", ".join(sorted({str(next(iter(s), "?")) for s in pull_steps}))
        return f"its deployment has pull steps ({steps})"
    if job_variables:
        return f"it sets job variables ({', '.join(sorted(job_variables))})"
    return None


def sign_request(key: bytes, parameters: dict[str, Any]) -> dict[str, Any]:
    """The flow run's parameters with the campaign's signature over them."""
    return parameters | {SIGNATURE: signing.sign(key, signing.REQUEST, parameters)}


def check_request(key: bytes, parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters without their signature; Refused unless the campaign signed them."""
    rest = {k: v for k, v in parameters.items() if k != SIGNATURE}
    signature = parameters.get(SIGNATURE)
    if not signature:
        raise Refused("the request is unsigned")
    if not signing.verify(key, signing.REQUEST, rest, signature):
        raise Refused(
            "the request's signature does not verify with this worker's key "
            "(give the worker the campaign's signing key)"
        )
    return rest


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
    lab.sandboxes.choose(researcher="")  # a worker measures whatever it is sent: always sandboxed
    # the protected files as the campaign hashed them
    instrument = lab.instrument
    instrument.protected = lambda: protected
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


def _bound(flow_run: str, experiment: int, commit: str, champion: str, values: Any) -> Any:
    """What a measurement's signature covers: the values and what they are the values of."""
    return {
        "flow_run": str(flow_run),
        "experiment": experiment,
        "commit": commit,
        "champion": champion,
        "values": values,
    }


def signed(
    key: bytes, flow_run: str, experiment: int, commit: str, champion: str, values: Any
) -> dict[str, Any]:
    """A worker's result, signed for its flow run, experiment, candidate and champion."""
    bound = _bound(flow_run, experiment, commit, champion, values)
    return {"values": values, SIGNATURE: signing.sign(key, signing.MEASUREMENT, bound)}


def as_text(result: dict[str, Any]) -> str:
    """A measurement artifact: JSON in a markdown block (the UI shows it as it is)."""
    return f"```json\n{json.dumps(result)}\n```"


def read_measurement(
    texts: list[str], key: bytes, flow_run: str, experiment: int, commit: str, champion: str
) -> tuple[Measurement, list[float] | None]:
    """The one measurement among the artifacts `texts` (every one written under the run's key)
    whose signature verifies for this flow run, experiment and commits; otherwise a crash that
    says why. An artifact without a valid signature is never read, whoever added it; two
    different valid ones (which only the key's holders can write) are a crash too."""
    why: list[str] = []
    valid: dict[str, Any] = {}
    for text in texts:
        try:
            data = json.loads(text.strip().removeprefix("```json").removesuffix("```"))
        except ValueError:
            why.append("is unreadable")
            continue
        if not isinstance(data, dict) or not data.get(SIGNATURE) or "values" not in data:
            why.append("is unsigned")
            continue
        bound = _bound(flow_run, experiment, commit, champion, data["values"])
        if not signing.verify(key, signing.MEASUREMENT, bound, data[SIGNATURE]):
            why.append("has a bad signature (another key, run, experiment or commit)")
            continue
        valid[signing.canonical(data["values"]).decode()] = data["values"]
    if not texts:
        return Measurement.crash(f"the worker's flow run {flow_run} left no measurement"), None
    if len(valid) > 1:
        many = f"flow run {flow_run} has {len(valid)} different signed measurements"
        return Measurement.crash(many), None
    if not valid:
        reasons = "; ".join(sorted(set(why)))
        return Measurement.crash(f"measurement of flow run {flow_run} {reasons}"), None
    values = next(iter(valid.values()))
    try:
        return from_json(values)
    except (KeyError, TypeError, ValueError) as exc:
        return Measurement.crash(f"measurement of flow run {flow_run} is malformed: {exc}"), None
