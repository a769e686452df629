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


def place(env: dict[str, str]) -> str:
    """Where a slot measures: the machine, and the GPU its environment gives it (each GPU has
    a noise of its own)."""
    gpu = env.get("CUDA_VISIBLE_DEVICES")
    return machine() + (f"/gpu {gpu}" if gpu else "")


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

    def calibrations(self) -> dict[str, dict[str, Any]]:
        """Each place's noise (a state.json of an older version: its one machine's)."""
        saved = self.state.load()
        old = saved.get("calibration")
        found = {old["machine"]: old} if old and "machine" in old else {}
        return found | saved.get("calibrations", {})

    def calibration(self, where: str | None = None) -> dict[str, Any]:
        """The noise measured where a slot measures (by default: this machine, no GPU)."""
        return self.calibrations().get(where or machine(), {})

    def calibrated(self, where: str) -> bool:
        return bool(self.calibration(where))

    def save_calibration(self, m: Measurement, where: str, arm: bool = True) -> None:
        """The champion's repeated runs are the noise of where they ran; slot 1's are its arm
        too (`arm`)."""
        cal = {"machine": where, "samples": list(m.samples), "sigma": calibrate(m.samples)}
        self.state.update(calibrations=self.calibrations() | {where: cal}, calibration=None)
        champ = self.champion()
        if champ and arm:  # the same runs are the champion's: the arm, not the noise, from now on
            self.save(champ.commit, m)
