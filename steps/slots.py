"""Slots: where candidates are measured at the same time, each a worktree of its own.

Slot 1 is runs/<name>/worktree, slot k runs/<name>/worktree-k; beside each, the champion's
worktree (champion, champion-k) for the rules that re-measure the champion on the same slot,
so that contention for the machine hits both arms alike. Each slot may have its own environment
(`slots:` in study.yaml: a GPU, a CPU set), or with `slots: auto` a GPU of its own (core.devices).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core import devices
from core.study import STUDY_FILE, Study, StudyError
from core.workspace import StudyRepo, Workspace
from steps.champion import place

log = logging.getLogger(__name__)


def slot_path(index: int, what: str = "worktree") -> str:
    return what if index == 1 else f"{what}-{index}"


def environments(study: Study, count: int) -> tuple[list[dict[str, str]], str | None]:
    """Each of `count` slots' environment, and what a person should know of them (no GPU, a
    GPU shared). `slots: auto` gives each its GPU; a StudyError when there are too few."""
    slots = study.config.slots
    if not slots.auto:
        return [dict(slots.envs[i]) if i < len(slots.envs) else {} for i in range(count)], None
    found = devices.gpus()
    try:
        envs = devices.assign(count, found, slots.share)
    except ValueError as exc:
        raise StudyError(f"{study.folder / STUDY_FILE}: slots: {exc}") from None
    return envs, devices.note(envs, found)


@dataclass
class Slot:
    index: int
    workspace: Workspace
    champion: Workspace
    env: dict[str, str]
    experiment: int | None = None  # what it measures now

    @property
    def place(self) -> str:
        """Where it measures, as a noise calibration is kept: the machine and its GPU."""
        return place(self.env)

    @property
    def gpu(self) -> str | None:
        """The GPU its evaluations see (their CUDA_VISIBLE_DEVICES), if it names one."""
        return self.env.get(devices.VISIBLE)


class Slots:
    def __init__(self, study: Study, repo: StudyRepo, count: int) -> None:
        envs, self.note = environments(study, count)
        self.all = [
            Slot(
                i,
                Workspace(study, slot_path(i), repo),
                Workspace(study, slot_path(i, "champion"), repo),
                envs[i - 1],
            )
            for i in range(1, count + 1)
        ]
        if self.note:
            log.warning("study %s: %s", study.name, self.note)

    @property
    def count(self) -> int:
        """How many candidates may be in flight at once."""
        return len(self.all)

    @property
    def shared(self) -> bool:
        """Whether two slots hold the same GPU."""
        held = [s.gpu for s in self.all if s.gpu is not None]
        return len(held) != len(set(held))

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
