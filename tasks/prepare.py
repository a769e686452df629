"""Prepare: how this experiment's candidates run (sandboxed, or by the study's choice not)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from proposers.base import Proposer
from steps.lab import Lab


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(lab: Lab, researcher: Proposer) -> str:
    """The sandbox decision; its notice, when candidates run unsandboxed, is logged."""
    notice = lab.choose_sandbox(getattr(researcher, "writes_code", True))
    if notice:
        get_run_logger().warning(notice)
    return notice
