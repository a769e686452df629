"""Prefect tasks, one step of an experiment each. Thin: the work is done by the steps (Lab)."""

from tasks.apply import apply
from tasks.decide import decide
from tasks.evaluate import baseline, calibrate, measure
from tasks.holdout import holdout
from tasks.persist import persist, publish
from tasks.prepare import prepare
from tasks.propose import propose

__all__ = [
    "apply",
    "baseline",
    "calibrate",
    "decide",
    "holdout",
    "measure",
    "persist",
    "prepare",
    "propose",
    "publish",
]
