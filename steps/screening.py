"""Cascade screening (study.yaml `evaluator.stages`): cheap commands run before the full
evaluation, so that a candidate that is clearly worse never pays for it.

Each stage prints a number (the study's metric, or its own); a candidate passes a stage when
its value is within `within` (a fraction) of the champion's value at that stage, or better. The
baseline runs every stage too, and each row keeps its stages' values (`screen.<stage>` in the
ledger's secondary column), so the champion's are the last kept row's. A stage the champion
has no value for (added later) passes, and its value is recorded. Stages run here, in the
candidate's sandbox, also for a study measured on a work pool.
"""

from __future__ import annotations

from core.decide import Direction, gain
from core.study import StageConfig
from core.workspace import Workspace
from evaluators.command import CommandConfig, CommandEvaluator
from steps.instrument import Instrument, log_path
from steps.records import Records
from steps.trial import Trial


def passes(direction: Direction, value: float, champion: float, within: float) -> bool:
    """Within `within` (a fraction of the champion's value at the stage) of it, or better."""
    return -gain(direction, value, champion) <= within * abs(champion)


class Screened(Exception):
    """The candidate failed a stage: its row is `screened`, it is not measured in full."""


class Screening:
    def __init__(self, instrument: Instrument, records: Records) -> None:
        self.instrument = instrument
        self.records = records
        self.study = records.study

    def run(self, trial: Trial, workspace: Workspace, env: dict[str, str] | None) -> None:
        """Every stage on what the workspace has checked out, its values kept in the trial;
        raises Screened at the first stage failed (the baseline fails none but a crash)."""
        metric = self.study.metric
        champion = self._champion()
        for stage in self.study.config.evaluator.stages:
            log = log_path(self.study, trial.experiment, arm=f"screen-{stage.name}")
            m = self.instrument.run_once(workspace, log, env, evaluator=self._evaluator(stage))
            if m.metric is None:
                raise Screened(f"stage {stage.name} crashed: {m.reason}")
            trial.screens[stage.name] = m.metric
            theirs = champion.get(f"screen.{stage.name}")
            if theirs is not None and not passes(metric.direction, m.metric, theirs, stage.within):
                raise Screened(
                    f"stage {stage.name}: {m.metric:.6g}, more than {stage.within:.0%} worse "
                    f"than the champion's {theirs:.6g}; not measured in full"
                )

    def _champion(self) -> dict[str, float]:
        rows = self.records.ledger.rows()
        champion = next((r for r in reversed(rows) if r.kept), None)
        return champion.secondary if champion else {}

    def _evaluator(self, stage: StageConfig) -> CommandEvaluator:
        env, passenv = self.study.config.evaluator.environment()
        config = CommandConfig(
            command=stage.command, timeout_s=stage.timeout_s, env=env, passenv=passenv
        )
        return CommandEvaluator(config, stage.metric or self.study.metric.name)
