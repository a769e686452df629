"""Prefect tasks, one step of an experiment each. Thin: the work is done by the core (Lab)."""

from tasks.apply import apply
from tasks.decide import decide
from tasks.evaluate import calibrate, evaluate, evaluate_paired
from tasks.holdout import holdout
from tasks.persist import persist, publish
from tasks.propose import propose

__all__ = [
    "apply",
    "calibrate",
    "decide",
    "evaluate",
    "evaluate_paired",
    "holdout",
    "persist",
    "propose",
    "publish",
]
