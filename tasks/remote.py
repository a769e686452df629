"""A candidate measured by a worker of the study's work pool, as a flow run of the deployment
`evaluate/<study>`. The candidate travels by git (pushed to the study's `remote`); the flow
run's id is saved in the trial's pending record before anything waits on it, so that a new
start waits for that very run instead of starting another. Both sides are here: the campaign's
(`measure_remotely`) and the worker's (`measure_here`)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_client, task
from prefect.artifacts import Artifact, acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.context import TaskRunContext
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from core.interrupt import Interrupted, stop_now
from evaluators.base import Measurement
from steps import worker
from steps.lab import Lab
from steps.trial import Trial

POLL_S = 1.0


@task(name="measure-here", cache_policy=NO_CACHE)
async def measure_here(**parameters: Any) -> dict[str, Any]:
    """The worker's side: measured in this machine's clone; the result left as an artifact of
    this flow run, for the campaign."""
    clone = Path(os.environ.get(worker.CLONE) or ".").resolve()
    m, champion = await asyncio.to_thread(worker.measure_at, clone, **parameters)
    result = worker.as_json(m, champion)
    ctx = TaskRunContext.get()
    if ctx is not None and ctx.task_run.flow_run_id is not None:
        text = f"```json\n{json.dumps(result)}\n```"
        await acreate_markdown_artifact(text, key=worker.artifact_key(ctx.task_run.flow_run_id))
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
            await client.read_deployment_by_name(name)
            return name
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


async def measure_remotely(lab: Lab, trial: Trial) -> Measurement:
    """The trial's candidate measured on a worker; a crash when its flow run did not complete."""
    record = await asyncio.to_thread(lab.pending.read, trial.experiment)
    run_id = record.get("flow_run")
    if not run_id:
        await asyncio.to_thread(lab.send, trial)
        name = await ensure_deployment(lab)
        run = await run_deployment(name, parameters=_parameters(lab, trial), timeout=0)
        run_id = str(run.id)
        await asyncio.to_thread(lab.note, trial, flow_run=run_id)
    state = await _final_state(UUID(run_id))
    if not state.is_completed():
        why = f"the worker's flow run {run_id} ended {state.name}: {state.message}"
        return Measurement.crash(why)
    artifact = await Artifact.aget(worker.artifact_key(run_id))
    if artifact is None or not isinstance(artifact.data, str):
        return Measurement.crash(f"the worker's flow run {run_id} left no measurement")
    body = artifact.data.strip().removeprefix("```json").removesuffix("```")
    m, champion = worker.from_json(json.loads(body))
    trial.measurement, trial.champion_runs = m, champion
    return m


def _parameters(lab: Lab, trial: Trial) -> dict[str, Any]:
    slot = lab.slot(trial)
    return {
        "study": lab.study.rel.as_posix(),
        "remote": lab.study.config.remote,
        "experiment": trial.experiment,
        "commit": trial.commit,
        "champion": trial.built_on,
        "runs": lab.repeats if trial.description != "baseline" else lab.baseline_runs,
        "paired": lab.paired and trial.description != "baseline",
        "protected": lab.protected(),
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
