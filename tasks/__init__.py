"""Prefect tasks, one step of an experiment each. Thin: the work is done by the steps (Lab),
in a thread, so that the experiments of several slots run at once."""

from tasks.abtests import begin_ab_tests, collect, dashboard, launch, record, wait_until
from tasks.apply import apply, remeasure
from tasks.audit import audit
from tasks.decide import decide
from tasks.evaluate import baseline, calibrate, measure
from tasks.holdout import holdout
from tasks.persist import persist, publish
from tasks.plan import count, next_trial
from tasks.prepare import choose_researcher, claim, open_lab, prepare, reserve
from tasks.propose import propose
from tasks.tracking import finish_tracking, start_tracking

__all__ = [
    "apply",
    "audit",
    "baseline",
    "begin_ab_tests",
    "calibrate",
    "choose_researcher",
    "claim",
    "count",
    "collect",
    "dashboard",
    "decide",
    "finish_tracking",
    "holdout",
    "launch",
    "measure",
    "next_trial",
    "open_lab",
    "persist",
    "prepare",
    "propose",
    "publish",
    "record",
    "remeasure",
    "reserve",
    "start_tracking",
    "wait_until",
]
