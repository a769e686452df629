"""The holdout: the champion scored on data the researcher never sees, at the study's start,
every few keeps and at a campaign's end; a regression beyond `tolerance` is overfitting."""

from __future__ import annotations

from core.decide import gain
from core.ledger import Row, Status
from core.pending import Stage
from core.study import HoldoutConfig, Study
from core.workspace import StudyRepo, Workspace
from evaluators.command import CommandConfig, CommandEvaluator
from steps.instrument import Instrument
from steps.records import Records
from steps.trial import Trial


class Holdout:
    def __init__(
        self, study: Study, records: Records, repo: StudyRepo, instrument: Instrument
    ) -> None:
        self.study = study
        self.records = records
        self.repo = repo
        self.instrument = instrument

    @property
    def config(self) -> HoldoutConfig | None:
        return self.study.config.holdout

    def due(self, at_end: bool = False) -> bool:
        """At the study's start, every `holdout.every` keeps, and at a campaign's end."""
        champ = self.records.champion()
        if self.config is None or champ is None:
            return False
        rows = self.records.ledger.rows()
        last = next((r for r in reversed(rows) if r.status == Status.HOLDOUT), None)
        if last is None or self._left():
            return True
        if last.commit == champ.commit:
            return False
        kept_since = sum(r.kept for r in rows[rows.index(last) + 1 :])
        return at_end or kept_since >= self.config.every

    def run(self) -> tuple[Row, bool]:
        """Score the champion on the holdout (its first score is the holdout's baseline), in a
        worktree of its own: the holdout row, and whether the champion overfits."""
        cfg = self.config
        assert cfg is not None
        records = self.records
        with records.numbering:
            number = self._left() or records.next_number()
            records.hold(number, Stage.HOLDOUT)
        commit = records.champion_commit()
        trial = Trial(number, commit=commit)
        workspace = Workspace(self.study, "holdout", self.repo).open_at(commit)
        env, passenv = self.study.config.evaluator.environment()
        config = CommandConfig(
            command=cfg.command, timeout_s=cfg.timeout_s, env=env, passenv=passenv
        )
        evaluator = CommandEvaluator(config, cfg.metric)  # a holdout is a command, by its schema
        m = self.instrument.run_once(workspace, records.log_path(number), evaluator=evaluator)
        overfitting = False
        if m.metric is None:
            text = f"holdout crashed: {m.reason}"
        else:
            base = records.state.load().get("holdout_baseline")
            if base is None:
                with records.own_files.writing():
                    base = records.state.update(holdout_baseline=m.metric)["holdout_baseline"]
            overfitting = -gain(self.study.metric.direction, m.metric, base) > cfg.tolerance
            verdict = "OVERFITTING" if overfitting else "ok"
            text = f"holdout {cfg.metric} {m.metric:.6g} (at baseline {base:.6g}): {verdict}"
        trial.description = text
        return trial.row(Status.HOLDOUT, text), overfitting

    def _left(self) -> int | None:
        """The number of a holdout check a killed run left unrecorded: it is done under it."""
        return next((r.experiment for r in self.records.pending.at(Stage.HOLDOUT)), None)

    def overfitting_since(self, experiment: int) -> bool:
        """Did a holdout check from this experiment on find the champion worse than at the start?"""
        return any(
            r.status == Status.HOLDOUT and "OVERFITTING" in r.description
            for r in self.records.ledger.rows()
            if r.experiment >= experiment
        )
