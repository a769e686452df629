"""Slots: where candidates are measured at the same time, each a worktree of its own.

Slot 1 is runs/<name>/worktree, slot k runs/<name>/worktree-k; beside each, the champion's
worktree (champion, champion-k) for the rules that re-measure the champion on the same slot,
so that contention for the machine hits both arms alike. Each slot may have its own environment
(`slots:` in study.yaml: a GPU, a CPU set).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.study import Study
from core.workspace import StudyRepo, Workspace


def slot_path(index: int, what: str = "worktree") -> str:
    return what if index == 1 else f"{what}-{index}"


@dataclass
class Slot:
    index: int
    workspace: Workspace
    champion: Workspace
    env: dict[str, str]
    experiment: int | None = None  # what it measures now


class Slots:
    def __init__(self, study: Study, repo: StudyRepo, count: int) -> None:
        envs = study.config.slots
        self.all = [
            Slot(
                i,
                Workspace(study, slot_path(i), repo),
                Workspace(study, slot_path(i, "champion"), repo),
                dict(envs[i - 1]) if i <= len(envs) else {},
            )
            for i in range(1, count + 1)
        ]

    @property
    def count(self) -> int:
        """How many candidates may be in flight at once."""
        return len(self.all)

    def __getitem__(self, index: int) -> Slot:
        return self.all[index - 1]

    def free(self) -> Slot | None:
        return next((s for s in self.all if s.experiment is None), None)

    def claim(self, experiment: int, index: int | None = None) -> Slot:
        """A free slot (that one, if given and free) for this experiment."""
        wanted = self[index] if index and index <= len(self.all) else None
        slot = wanted if wanted and wanted.experiment is None else self.free()
        if slot is None:
            raise RuntimeError("every slot is busy")
        slot.experiment = experiment
        return slot

    def release(self, experiment: int) -> None:
        for slot in self.all:
            if slot.experiment == experiment:
                slot.experiment = None
