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
    loaded = study.load_study(path, Registries())
    strategy = loaded.config.search.strategy
    if strategy != "greedy" and evaluators.kind(loaded.config.evaluator.kind).asynchronous:
        raise study.StudyError(
            f"{loaded.folder / study.STUDY_FILE}: search.strategy: an A/B test measures the "
            f"candidate beside the champion; a {strategy} search builds on other nodes: use greedy"
        )
    return loaded
