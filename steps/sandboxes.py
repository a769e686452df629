"""The sandbox each evaluation and agent run gets: whether candidates run in one (decided once
per campaign: model-written code that the evaluator runs needs it), and the one for a worktree."""

from __future__ import annotations

from core import sandbox
from core.ledger import Row
from core.sandbox import Sandbox
from core.study import Study
from core.workspace import StudyRepo, Workspace
from evaluators import kind as evaluator_kind
from proposers import writes_code
from steps.records import Records


def runs_model_code(study: Study, rows: list[Row], researcher: str) -> bool:
    """Whether the evaluator would run code a model wrote: the researcher's candidates, or a
    champion kept from one that writes code (a campaign of claude, then of mutate)."""
    if not evaluator_kind(study.config.evaluator.kind).runs_code:
        return False
    kept = {r.proposer for r in rows if r.kept and r.description != "baseline"}
    return any(writes_code(name) for name in (researcher, *kept))


class Sandboxes:
    def __init__(self, study: Study, repo: StudyRepo, records: Records) -> None:
        self.study = study
        self.repo = repo
        self.records = records
        self.enabled = study.config.sandbox.enabled

    def choose(self, researcher: str) -> str:
        """Whether candidates run sandboxed, for this campaign; a notice when not (see
        core.sandbox). Unsandboxed, resource.md is watched around each evaluation too."""
        untrusted = runs_model_code(self.study, self.records.ledger.rows(), researcher)
        self.enabled, notice = sandbox.choose(self.study.config.sandbox.enabled, untrusted)
        self.records.watch_learnings(not self.enabled)
        return notice

    def of(self, workspace: Workspace) -> Sandbox | None:
        """The sandbox one evaluation of this workspace runs in (None: unsandboxed)."""
        if not self.enabled:
            return None
        cfg, study = self.study.config.sandbox, self.study
        return Sandbox(
            worktree=workspace.path,
            hidden=(study.state_dir, self.repo.git_dir),
            checkout=study.repo_root,
            network=study.config.evaluator.wants_network(),
            readable=tuple(study.path_option(p) for p in cfg.readable),
            writable=tuple(study.path_option(p) for p in cfg.writable),
            limits=study.config.limits,
        )
