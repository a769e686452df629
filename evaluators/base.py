"""The evaluator interface: a fixed instrument that turns a checked-out candidate into a number."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from core.study import EvaluatorConfig


@dataclass(frozen=True)
class Measurement:
    status: Literal["ok", "crash"]
    metric: float | None = None
    secondary: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    log_tail: str = ""
    duration_s: float = 0.0
    samples: tuple[float, ...] = ()  # one value per run, for the statistical decision rules
    tags: dict[str, str] = field(default_factory=dict)  # e.g. the data's sha256: like with like

    @classmethod
    def crash(cls, reason: str, log_tail: str = "", duration_s: float = 0.0) -> Measurement:
        return cls("crash", reason=reason, log_tail=log_tail, duration_s=duration_s)

    @classmethod
    def of(
        cls,
        metric: float,
        secondary: dict[str, float] | None = None,
        log_tail: str = "",
        duration_s: float = 0.0,
    ) -> Measurement:
        """A successful measurement, or a crash when the number is NaN or infinite."""
        if not math.isfinite(metric):
            return cls.crash(f"metric is {metric}", log_tail, duration_s)
        return cls("ok", metric, secondary or {}, "", log_tail, duration_s, (metric,))


class Evaluator(Protocol):
    def evaluate(self, workdir: Path, log_path: Path) -> Measurement:
        """Measure the candidate checked out in workdir (the study folder); write the full log."""
        ...


@dataclass(frozen=True)
class Kind:
    """An evaluator kind: its study.yaml section's model and how to build one from it
    (the section and the metric's name)."""

    config: type[EvaluatorConfig]
    create: Callable[[EvaluatorConfig, str], Evaluator]
