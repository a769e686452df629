"""The fixed instruments: each evaluator kind turns a candidate into a Measurement.

The registry: one line per built-in kind, naming the module whose `KIND` gives the kind's
study.yaml model and its factory; other distributions add kinds through the entry-point group
`autoresearch.evaluators` (name: the kind, value: its module). A module is imported only when
its kind is used (each may need extras).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.entrypoints import Registry

if TYPE_CHECKING:
    from core.study import Study
    from evaluators.base import Evaluator, Kind

KINDS = Registry(
    "evaluator kind",
    "autoresearch.evaluators",
    {
        "command": "evaluators.command",
        "http": "evaluators.http",
        "http_ab": "evaluators.http_ab",
        "judge": "evaluators.judge",
    },
)


def kind(name: str) -> Kind:
    return KINDS.load(name).KIND


def make_evaluator(study: Study) -> Evaluator:
    """The study's evaluator, from its (typed) evaluator section."""
    config = study.config.evaluator
    return kind(config.kind).create(config, study.metric.name)
