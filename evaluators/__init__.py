"""The fixed instruments: each evaluator turns a candidate into a Measurement."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoresearch.study import Study
    from evaluators.base import Evaluator


def make_evaluator(study: Study) -> Evaluator:
    """The study's evaluator, by kind (imported lazily: each may need its own extras)."""
    config = study.config.evaluator
    metric = study.metric.name
    if config.kind == "command":
        from evaluators.command import CommandEvaluator

        return CommandEvaluator(config, metric)
    if config.kind == "http":
        from evaluators.http import HttpEvaluator

        return HttpEvaluator(config, metric)
    if config.kind == "judge":
        from evaluators.judge import JudgeEvaluator

        return JudgeEvaluator(config, metric)
    raise ValueError(f"unknown evaluator kind {config.kind!r}")
