"""When to decide an A/B test whose results arrive over days: pure functions, no I/O.

A pending test is looked at again and again (every scheduled run), and each look is a chance to
keep noise: keeping whenever P(better) >= 0.95 at any of ten looks keeps far more than 5% of
A/A tests. Two rules control that here:

- Counts only change at fixed look times (`as_of`): the launch plus whole multiples of
  `look_every_h`, and the window's close. However often the campaign collects, the rule sees
  the same few snapshots, so the number of looks is a property of the study, not of the
  schedule.
- Before the window closes, a keep needs a much stricter bar (`Peeking.keep_probability`) and a
  discard needs the challenger to be clearly worse (`Peeking.futility_probability`), both only
  once each arm has a fair share of its planned sends (`Peeking.min_fraction`). At the close
  the study's own rule decides (its `probability` and `max_expected_loss`).

A test that has not closed when `max_wait_h` has passed is discarded as inconclusive, with its
counts as evidence. `bench/email_ab.py` measures the false keeps, the power and the days this
procedure takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from core.decide import Counts, Direction, Verdict, prob_better
from core.rules.base import Rule
from core.rules.beta_binomial import BetaBinomial

Status = Literal["keep", "discard", "inconclusive"]


@dataclass(frozen=True)
class Peeking:
    """How strict a decision before the window's close must be."""

    keep_probability: float = 0.999  # an early keep: P(challenger better) at least this
    futility_probability: float = 0.10  # an early discard: P(challenger better) below this
    min_fraction: float = 0.5  # of the planned sends per arm delivered before any early call


PEEKING = Peeking()


@dataclass(frozen=True)
class Decision:
    """The outcome of a look: keep, discard, or discard as inconclusive (max_wait_h passed)."""

    status: Status
    reason: str
    evidence: str
    final: bool  # made at the window's close (False: early, or given up)

    @property
    def ledger_status(self) -> Literal["keep", "discard"]:
        return "keep" if self.status == "keep" else "discard"

    def verdict(self) -> Verdict:
        """The same decision as core.decide's Verdict, for the ledger."""
        return Verdict(self.ledger_status, self.reason, self.evidence)


def as_of(now: float, launched_at: float, look_every_h: float, close_at: float | None) -> float:
    """The time a look at `now` sees the counts at: the last look time (launch + k *
    look_every_h) not after now, or the window's close once it has passed (all in seconds)."""
    if close_at is not None and now >= close_at:
        return close_at
    if now <= launched_at:
        return launched_at
    step = look_every_h * 3600.0
    return launched_at + math.floor((now - launched_at) / step) * step


def next_look(now: float, launched_at: float, look_every_h: float) -> float:
    """The first look time after `now` (seconds)."""
    step = look_every_h * 3600.0
    done = max(0, math.floor((now - launched_at) / step) + 1)
    return launched_at + done * step


def prob_challenger_better(direction: Direction, champion: Counts, challenger: Counts) -> float:
    """P(challenger's rate better than the champion's) under Beta(1+s, 1+f) posteriors."""
    (s_h, n_h), (s_c, n_c) = champion, challenger
    if direction == "minimize":
        s_h, s_c = n_h - s_h, n_c - s_c
    return prob_better(1 + s_h, 1 + n_h - s_h, 1 + s_c, 1 + n_c - s_c)


def _counts_text(champion: Counts, challenger: Counts) -> str:
    return f"champion {champion[0]}/{champion[1]}, challenger {challenger[0]}/{challenger[1]}"


def interim(
    rule: Rule,
    champion: Counts,
    challenger: Counts,
    *,
    closed: bool,
    waited_h: float,
    max_wait_h: float,
    planned: int = 0,
    peeking: Peeking = PEEKING,
) -> Decision | None:
    """Decide a pending A/B test now, or None to wait for the next look.

    champion, challenger: (successes, trials) as of the look (replies, delivered). planned: the
    sends planned per arm (0: no early decision). The rule must be beta_binomial.
    """
    if not isinstance(rule, BetaBinomial):
        raise ValueError(f"an A/B test is decided by rule beta_binomial, not {rule.name!r}")
    counts = _counts_text(champion, challenger)
    if closed:
        return _final(rule, champion, challenger)
    if waited_h >= max_wait_h:
        return Decision(
            "inconclusive",
            f"no decision after {waited_h:.0f} h (max_wait_h {max_wait_h:g}): {counts}",
            f"abtest inconclusive waited_h={waited_h:.1f} {counts}",
            final=False,
        )
    needed = peeking.min_fraction * planned
    if planned <= 0 or min(champion[1], challenger[1]) < max(needed, 1):
        return None
    return _early(rule, champion, challenger, peeking)


def _final(rule: BetaBinomial, champion: Counts, challenger: Counts) -> Decision:
    """The window has closed: the study's rule decides on the final counts."""
    if champion[1] == 0 or challenger[1] == 0:
        counts = _counts_text(champion, challenger)
        return Decision(
            "inconclusive",
            f"window closed with an empty arm: {counts}",
            f"abtest empty {counts}",
            final=True,
        )
    v = rule.on_counts(champion, challenger)
    return Decision(v.status, v.reason, f"{v.evidence} look=final", final=True)


def _early(
    rule: BetaBinomial, champion: Counts, challenger: Counts, peeking: Peeking
) -> Decision | None:
    """Before the close: keep only past the strict bar, discard only when clearly worse."""
    v = rule.on_counts(champion, challenger, peeking.keep_probability)
    if v.status == "keep":
        return Decision("keep", f"early keep: {v.reason}", f"{v.evidence} look=early", False)
    prob = prob_challenger_better(rule.direction, champion, challenger)
    if prob < peeking.futility_probability:
        counts = _counts_text(champion, challenger)
        return Decision(
            "discard",
            f"early discard: P(better)={prob:.4f} < {peeking.futility_probability:g} ({counts})",
            f"{v.evidence} look=early futility={peeking.futility_probability:g}",
            final=False,
        )
    return None
