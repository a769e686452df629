"""The evaluator interface: a fixed instrument that turns a checked-out candidate into a number."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from core.sandbox import Sandbox
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
    def evaluate(
        self,
        workdir: Path,
        log_path: Path,
        sandbox: Sandbox | None = None,
        env: dict[str, str] | None = None,
    ) -> Measurement:
        """Measure the candidate checked out in workdir (the study folder); write the full log.
        Any candidate code it runs, it runs in `sandbox` (None: unsandboxed, by the study's
        explicit choice), with `env` (a slot's environment) added to its own."""
        ...


# Results that arrive later --------------------------------------------------------------


def iso(t: float) -> str:
    """A time of the contract (`due_at`, `wait_until`): ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def from_iso(text: str) -> float:
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class Launch:
    """What an asynchronous evaluator needs to measure one candidate against the champion, both
    in the same window (an A/B test: time of day, weekday, list quality hit both arms alike)."""

    study: str
    experiment: int
    champion: Path  # the study folder checked out at the champion
    challenger: Path  # the study folder checked out at the candidate
    state_dir: Path  # the study's state folder: the evaluator keeps its own records there


@dataclass(frozen=True)
class Collected:
    """What an asynchronous measurement has observed so far."""

    arms: dict[str, tuple[int, int]]  # "champion", "challenger" -> (successes, trials)
    closed: bool  # the observation window has closed: nothing more will count
    due_at: str | None = None  # ISO 8601 (UTC): when collecting again is worth it
    detail: dict[str, dict[str, float]] = field(default_factory=dict)  # per arm: sent, bounced..
    log: str = ""
    at: str | None = None  # ISO 8601 (UTC): the time of this look, on the evaluator's clock


class BadCandidate(ValueError):
    """launch(): the candidate cannot be measured (its copy does not render, say): a crash of
    that experiment, with this reason."""


class NotNow(RuntimeError):
    """launch(): nothing can be launched now (no one left to mail today); `retry_at` (ISO 8601)
    says when trying again is worth it."""

    def __init__(self, message: str, retry_at: str) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class Unavailable(RuntimeError):
    """launch() or start(): the instrument cannot work (no API key, a refused key, a broken
    prospects list): the campaign stops, saying why; nothing is lost."""


class AsyncEvaluator(Protocol):
    """An evaluator whose number arrives hours or days later (reply rates, conversions).

    The campaign calls launch() (a plan, JSON, no side effects), saves the handle atomically in
    the study's state, then start() (the irreversible part); it collects later, across runs,
    restarts and machines that share the state folder.
    """

    @property
    def max_pending(self) -> int:
        """How many measurements may be in flight at once."""
        ...

    @property
    def max_wait_h(self) -> float:
        """After how many hours an undecided measurement is given up as inconclusive."""
        ...

    def launch(self, launch: Launch) -> dict[str, Any]:
        """Plan one measurement: which arm gets what, when. No side effects. Raises BadCandidate,
        NotNow or Unavailable."""
        ...

    def start(self, handle: dict[str, Any], state_dir: Path) -> None:
        """Do what the plan says (send). Idempotent: after a kill, a second call does only what
        the first did not."""
        ...

    def collect(self, handle: dict[str, Any], state_dir: Path) -> Collected: ...

    def wait_until(self, when: str, state_dir: Path) -> bool:
        """Let time pass until `when`: True on a simulated clock (it moved), False on the real
        one (the campaign ends its run and a later, scheduled run collects)."""
        ...

    def waited_h(self, handle: dict[str, Any], state_dir: Path) -> float:
        """Hours since the measurement was planned, on its own clock."""
        ...

    def finish(self, handle: dict[str, Any], state_dir: Path, status: str) -> int:
        """The decision is made: stop what the plan had not done yet."""
        ...


@dataclass(frozen=True)
class Kind:
    """An evaluator kind: its study.yaml section's model, how to build one from it (the
    section and the metric's name), and whether it runs the candidate's code (then only in a
    sandbox) or only reads it (an HTTP API, a prompt, an email's copy)."""

    config: type[EvaluatorConfig]
    create: Callable[[EvaluatorConfig, str], Any]
    runs_code: bool = True
    asynchronous: bool = False  # an AsyncEvaluator: results come days later (launch, collect)
