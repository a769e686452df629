"""Prefect tasks, one step of an experiment each. Thin: the work is done by the core (Lab)."""

from tasks.apply import apply
from tasks.decide import decide
from tasks.evaluate import evaluate
from tasks.persist import persist, publish
from tasks.propose import propose

__all__ = ["apply", "decide", "evaluate", "persist", "propose", "publish"]
