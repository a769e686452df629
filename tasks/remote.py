"""A candidate measured by a worker of the study's work pool, as a flow run of the deployment
`evaluate/<study>`. The candidate travels by git (pushed to the study's `remote`); the flow
run's id is saved in the trial's pending record before anything waits on it, so that a new
start waits for that very run instead of starting another. Both sides are here: the campaign's
(`measure_remotely`) and the worker's (`measure_here`).

Both sides sign with the key only they hold (core.credentials, steps.worker): the campaign its
request, the worker its measurement. The campaign reads every artifact written under the run's
key, not the newest: anyone with the API's credentials can add one, and a newer forgery would
otherwise hide the worker's. It takes the one whose signature verifies for this run, this
experiment and these commits; none, or two that differ, is a crash that says why."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_client, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.context import TaskRunContext
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from core import credentials
from core.interrupt import Interrupted, stop_now
from evaluators.base import Measurement
from steps import worker
from steps.lab import Lab
from steps.trial import Trial

POLL_S = 1.0


@task(name="measure-here", cache_policy=NO_CACHE)
async def measure_here(**parameters: Any) -> dict[str, Any]:
    """The worker's side: the campaign's signed request checked before anything is fetched, the
    candidate measured in this machine's clone, the result signed for this flow run and left
    as an artifact of it, for the campaign."""
    key = credentials.signing_key(create=False)  # given by `autoresearch worker`
    request = worker.check_request(key, parameters)
    ctx = TaskRunContext.get()
    run_id = ctx.task_run.flow_run_id if ctx is not None else None
    if run_id is None:
        raise worker.Refused("measure-here runs inside a flow run of evaluate only")
    clone = Path(os.environ.get(worker.CLONE) or ".").resolve()
    m, champion = await asyncio.to_thread(worker.measure_at, clone, **request)
    values = worker.as_json(m, champion)
    result = worker.signed(
        key, str(run_id), request["experiment"], request["commit"], request["champion"], values
    )
    await acreate_markdown_artifact(worker.as_text(result), key=worker.artifact_key(run_id))
    return result


async def ensure_deployment(lab: Lab) -> str:
    """The deployment `evaluate/<study>` on the study's work pool (created when missing)."""
    pool = lab.study.config.evaluator.work_pool
    name = f"{worker.FLOW}/{lab.study.name}"
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
        try:
            found = await client.read_deployment_by_name(name)
        except ObjectNotFound:
            flow_id = await client.create_flow_from_name(worker.FLOW)
            await client.create_deployment(
                flow_id=flow_id,
                name=lab.study.name,
                entrypoint=worker.ENTRYPOINT,
                work_pool_name=pool,
                description=f"evaluate candidates of study {lab.study.name} on pool {pool}",
            )
            return name
        flow = await client.read_flow(found.flow_id)
    why = worker.foreign(found.entrypoint, flow.name, found.pull_steps, found.job_variables)
    if why:  # a worker would refuse its runs: say so once, here
        raise worker.Refused(f"deployment {name} is not the tool's own: {why}; delete it")
    return name


async def measure_remotely(lab: Lab, trial: Trial) -> Measurement:
    """The trial's candidate measured on a worker; a crash when its flow run did not complete."""
    key = await asyncio.to_thread(credentials.signing_key)  # the campaign's, made once
    record = await asyncio.to_thread(lab.records.pending.read, trial.experiment)
    run_id = record.flow_run if record else ""
    if not run_id:
        await asyncio.to_thread(_send, lab, trial)
        try:
            name = await ensure_deployment(lab)
        except worker.Refused as exc:
            trial.measurement, trial.champion_runs = Measurement.crash(str(exc)), None
            return trial.measurement
        parameters = worker.sign_request(key, _parameters(lab, trial))
        run = await run_deployment(name, parameters=parameters, timeout=0)
        run_id = str(run.id)
        await asyncio.to_thread(lab.records.note, trial, flow_run=run_id)
    state = await _final_state(UUID(run_id))
    if not state.is_completed():
        why = f"the worker's flow run {run_id} ended {state.name}: {state.message}"
        m, champion = Measurement.crash(why), None
    else:
        texts = await _measurements(run_id)
        m, champion = worker.read_measurement(
            texts, key, run_id, trial.experiment, trial.commit, trial.built_on
        )
    trial.measurement, trial.champion_runs = m, champion
    return m


async def _measurements(run_id: str) -> list[str]:
    """Every artifact written under the run's measurement key, each version: which of them the
    worker wrote is for the signature to say, not for the order."""
    key = ArtifactFilter(key=ArtifactFilterKey(any_=[worker.artifact_key(run_id)]))
    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=key)
    return [a.data for a in found if isinstance(a.data, str)]


def _send(lab: Lab, trial: Trial) -> None:
    """The candidate (its parent: the champion it is built on) pushed to the study's remote,
    for a worker to fetch."""
    remote = lab.study.config.remote
    assert remote is not None
    lab.repo.hold(trial.experiment, trial.commit)
    lab.repo.push(remote, trial.experiment, trial.built_on)


def _parameters(lab: Lab, trial: Trial) -> dict[str, Any]:
    slot, rule = lab.slot(trial), lab.study.rule
    baseline = trial.description == "baseline"
    return {
        "study": lab.study.rel.as_posix(),
        "remote": lab.study.config.remote,
        "experiment": trial.experiment,
        "commit": trial.commit,
        "champion": trial.built_on,
        "runs": rule.baseline_runs if baseline else rule.repeats,
        "paired": rule.paired and not baseline,
        "protected": lab.records.protected(),
        "env": slot.env,
    }


async def _final_state(run_id: UUID) -> Any:
    """The worker's flow run once it ended. A person's stop-now leaves it to the worker: its
    run id is in the pending record, so the next start waits for it again."""
    async with get_client() as client:
        while True:
            if stop_now.is_set():
                raise Interrupted("stopped now, while a worker measured")
            run = await client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run.state
            await asyncio.sleep(POLL_S)
