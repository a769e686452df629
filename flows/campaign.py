"""A campaign: K experiments or M minutes on one study, each experiment a subflow of its own."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from autoresearch.lab import Lab
from flows.experiment import experiment
from proposers import choose_kind
from tasks import holdout, publish


@flow(name="campaign")
def campaign(
    study: str,
    experiments: int | None = None,
    minutes: float | None = None,
    proposer: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    log = get_run_logger()
    lab = Lab.open(study)
    first = lab.ledger.next_experiment()
    budget = lab.study.config.budget
    experiments = experiments or budget.experiments or (None if minutes else 10)
    minutes = minutes or budget.minutes
    deadline = time.monotonic() + minutes * 60 if minutes else None
    log.info("study %s: %s", lab.study.name, choose_kind(lab.study, proposer)[1])

    stop = ""
    spent = 0.0
    done = 0
    while experiments is None or done < experiments:
        if deadline and time.monotonic() >= deadline:
            stop = f"time budget of {minutes:g} min reached"
            break
        if budget.usd is not None and spent >= budget.usd:
            stop = f"USD budget of {budget.usd:g} reached (spent {spent:.4f})"
            break
        number = lab.ledger.next_experiment()
        row = experiment.with_options(flow_run_name=f"{lab.study.name}-{number}")(
            study, proposer, seed
        )
        done += 1
        if row.get("status") == "stopped":
            stop = f"stopped: {row['reason']}"
            break
        spent += float(row.get("cost_usd", 0) or 0)
        if row.get("description") == "baseline" and row["status"] == "crash":
            stop = f"the baseline crashed ({row['evidence']}): see logs/{number}.log"
            break
    if stop:
        log.warning(stop)
    if lab.holdout_due(at_end=True):
        holdout(lab)
    overfitting = lab.overfitting_since(first)
    summary = publish(lab)
    return summary | {"ran": done, "stop": stop, "overfitting": overfitting}
