"""Where a campaign's runs are recorded too, beside results.tsv: experiment trackers.

The registry: one line per tracker, naming the module whose `TRACKER` builds it. A study names
its trackers in study.yaml (`trackers: [mlflow]`; `core.study.StudyConfig.trackers` lists the
same names, so that an unknown one is an error of the study file). A module is imported only
when a study names it, and its own package (mlflow: seconds to import) only when a campaign
starts it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trackers.base import Tracker

TRACKERS = {
    "mlflow": "trackers.mlflow",  # MLflow: MLFLOW_TRACKING_URI, else sqlite in runs/<name>/mlflow
}


def make(name: str) -> Tracker:
    """A new tracker of the kind `name`, not started."""
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; choose one of {', '.join(TRACKERS)}")
    return importlib.import_module(TRACKERS[name]).TRACKER()
