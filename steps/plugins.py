"""The two registries, evaluators and proposers, as the study loader sees them: a study loaded
here has its evaluator and proposer sections checked and typed by their kinds' own models."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

import evaluators
import proposers
from core import study


class Registries:
    """core.study.Kinds over evaluators.KINDS and proposers.KINDS."""

    def names(self, section: str) -> list[str]:
        return list(evaluators.KINDS if section == "evaluator" else proposers.KINDS)

    def model(self, section: str, kind: str) -> type[BaseModel]:
        registry = evaluators.kind if section == "evaluator" else proposers.kind
        return registry(kind).config


def load_study(path: str | Path) -> study.Study:
    """Load and validate a study, every section checked by its kind (see core.study)."""
    return study.load_study(path, Registries())
