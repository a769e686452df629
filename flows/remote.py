"""A candidate evaluated on a worker of the study's work pool (`evaluator.work_pool`).

The campaign runs this flow through its deployment `evaluate/<study>`; a process worker started
by `autoresearch worker --pool NAME`, in its own clone of the study's repository, picks it up
wherever it runs, fetches the candidate from the study's `remote`, measures it, and returns the
measurement (and leaves it as an artifact, which the campaign reads). `signature` is the
campaign's over the other parameters: a worker does nothing for a request it cannot verify.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from steps.worker import FLOW
from tasks.remote import measure_here


@flow(name=FLOW)
async def evaluate(
    study: str,
    remote: str,
    experiment: int,
    commit: str,
    champion: str,
    runs: int = 1,
    paired: bool = False,
    protected: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    signature: str = "",
) -> dict[str, Any]:
    """One candidate of `study` (its folder, relative to the repository's root)."""
    return await measure_here(
        study=study, remote=remote, experiment=experiment, commit=commit, champion=champion,
        runs=runs, paired=paired, protected=protected or {}, env=env or {}, signature=signature,
    )  # fmt: skip
