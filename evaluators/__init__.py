"""The fixed instruments: each evaluator kind turns a candidate into a Measurement.

The registry: one line per kind, naming the module whose `KIND` gives the kind's study.yaml
model and its factory. A module is imported only when its kind is used (each may need extras).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.study import Study
    from evaluators.base import Evaluator, Kind

KINDS: dict[str, str] = {
    "command": "evaluators.command",
    "http": "evaluators.http",
    "http_ab": "evaluators.http_ab",
    "judge": "evaluators.judge",
    "sendgrid": "evaluators.sendgrid",
}


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"unknown evaluator kind {name!r}; choose one of {', '.join(KINDS)}")
    return importlib.import_module(KINDS[name]).KIND


def make_evaluator(study: Study) -> Evaluator:
    """The study's evaluator, from its (typed) evaluator section."""
    config = study.config.evaluator
    return kind(config.kind).create(config, study.metric.name)
