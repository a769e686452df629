"""What the ledger cannot say about the champion: its runs, tags and counts, and the noise
calibration of a sigma study. Kept in state.json, keyed by the champion's commit."""

from __future__ import annotations

import os
import platform
from typing import Any

from core.decide import calibrate
from core.ledger import Champion, Ledger
from core.state import State
from evaluators.base import Measurement


def machine() -> str:
    """Where a noise calibration holds: the host, its processor and its core count."""
    return f"{platform.node()}/{platform.machine()}/{os.cpu_count()}"


def counts(m: Measurement) -> tuple[int, int] | None:
    """(successes, trials) for the beta-binomial rule, when the evaluator reports them."""
    s, n = m.secondary.get("successes"), m.secondary.get("trials")
    return (int(s), int(n)) if s is not None and n is not None else None


class ChampionRecord:
    def __init__(self, ledger: Ledger, state: State) -> None:
        self.ledger = ledger
        self.state = state

    def champion(self) -> Champion | None:
        return self.ledger.champion()

    def save(self, commit: str, m: Measurement) -> None:
        """The runs, tags and counts behind a champion, keyed by its commit."""
        saved = {"commit": commit, "samples": list(m.samples), "tags": m.tags, "counts": counts(m)}
        self.state.update(champion=saved)

    def saved(self) -> dict[str, Any]:
        """What state.json holds for the ledger's champion; nothing when it is another's.

        A run killed between writing state.json and appending its row leaves state for a
        commit the ledger never kept: it is ignored.
        """
        champ = self.champion()
        saved = self.state.load().get("champion", {})
        return saved if champ and saved.get("commit") == champ.commit else {}

    def samples(self) -> list[float]:
        """The champion's runs when state.json has them for this very commit, else its mean."""
        champ = self.champion()
        assert champ is not None, "no champion: run the baseline first"
        return list(self.saved().get("samples") or [champ.metric])

    # the noise ---------------------------------------------------------------------------

    def calibration(self) -> dict[str, Any]:
        return self.state.load().get("calibration", {})

    def calibrated_here(self) -> bool:
        return self.calibration().get("machine") == machine()

    def save_calibration(self, m: Measurement) -> None:
        """The champion's repeated runs are the study's noise; they are its arm too."""
        cal = {"machine": machine(), "samples": list(m.samples), "sigma": calibrate(m.samples)}
        self.state.update(calibration=cal)
        champ = self.champion()
        if champ:  # the same runs are the champion's: the arm, not the noise, from now on
            self.save(champ.commit, m)
