"""Prepare: open the study (repairing what a killed run left), decide how candidates run
(sandboxed, or by the study's choice not), reserve an experiment's number and slot."""

from __future__ import annotations

import asyncio

from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed

from proposers import choose_kind, make_proposer
from proposers.base import Proposer
from steps.lab import Lab
from steps.trial import Trial


@task(name="open", cache_policy=NO_CACHE)
async def open_lab(study: str, parallel: int | None = None) -> Lab:
    """The study, repaired; its experiment runs that a killed campaign left Running are marked
    Crashed in the UI (the study's lock says no campaign of it runs now)."""
    lab = await asyncio.to_thread(Lab.open, study, parallel)
    async with get_client() as client:
        left = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["experiment"])),
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(like_=f"{lab.study.name}-"),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
            ),
        )
        for run in left:
            await client.set_flow_run_state(
                run.id, Crashed(message="its campaign was killed; resumed by a later one"), True
            )
    if left:
        get_run_logger().info("marked %d experiment run(s) of a killed campaign Crashed", len(left))
    return lab


@task(name="researcher", cache_policy=NO_CACHE)
async def choose_researcher(lab: Lab, proposer: str | None, seed: int | None) -> Proposer:
    """The proposer the study (or `proposer`, overriding it) asks for; why, in the log."""
    kind, why = choose_kind(lab.study, proposer)
    get_run_logger().info("study %s: %s, %d in flight at most", lab.study.name, why,
                          lab.slots.count)  # fmt: skip
    return make_proposer(lab.study, kind, seed)


@task(name="prepare", cache_policy=NO_CACHE)
async def prepare(lab: Lab, researcher: Proposer) -> str:
    """The sandbox decision; its notice, when candidates run unsandboxed, is logged, and so is
    the slots' (when two share a GPU, or none was found)."""
    notice = lab.sandboxes.choose(researcher.name)
    for said in (notice, lab.slots.note):
        if said:
            get_run_logger().warning(said)
    return notice


@task(name="reserve", cache_policy=NO_CACHE)
async def reserve(lab: Lab) -> Trial:
    """The next experiment number and a free slot, recorded as in flight."""
    return lab.reserve()


@task(name="resume", cache_policy=NO_CACHE)
async def claim(lab: Lab, trial: Trial) -> Trial:
    """A trial a killed run left in flight, given a slot again, under its own number."""
    lab.claim(trial)
    get_run_logger().info("resuming experiment %d (%s)", trial.experiment, trial.description)
    return trial
