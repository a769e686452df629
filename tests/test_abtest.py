"""When a pending A/B test is decided (core.abtest): final, early, inconclusive, and peeking."""

from __future__ import annotations

import numpy as np
import pytest

from core import rules
from core.abtest import Peeking, as_of, interim, next_look, prob_challenger_better

RULE = rules.config(rule="beta_binomial", probability=0.96)
H = 3600.0


def decide(champion, challenger, closed=False, waited_h=10.0, planned=3000, **kw):
    rule = rules.make(RULE, kw.pop("direction", "maximize"), kw.pop("min_delta", 0.0))
    return interim(
        rule,
        champion,
        challenger,
        closed=closed,
        waited_h=waited_h,
        max_wait_h=kw.pop("max_wait_h", 336.0),
        planned=planned,
        **kw,
    )


def test_counts_change_only_at_look_times_and_at_the_close() -> None:
    t0 = 1_000_000.0
    assert as_of(t0 + 5 * H, t0, 24, None) == t0
    assert as_of(t0 + 30 * H, t0, 24, None) == t0 + 24 * H
    assert as_of(t0 + 49 * H, t0, 24, t0 + 60 * H) == t0 + 48 * H
    assert as_of(t0 + 61 * H, t0, 24, t0 + 60 * H) == t0 + 60 * H  # the close: final counts
    assert next_look(t0 + 30 * H, t0, 24) == t0 + 48 * H
    assert next_look(t0 - 5, t0, 24) == t0


def test_a_closed_window_decides_with_the_studys_rule() -> None:
    keep = decide((90, 3000), (150, 3000), closed=True)
    assert keep is not None and keep.status == "keep" and keep.final
    assert keep.verdict().status == "keep" and "look=final" in keep.evidence
    same = decide((90, 3000), (92, 3000), closed=True)
    assert same is not None and same.status == "discard" and same.ledger_status == "discard"


def test_before_the_close_nothing_is_decided_on_thin_or_unclear_data() -> None:
    assert decide((0, 100), (20, 100)) is None  # under half the planned sends per arm
    assert decide((45, 1600), (55, 1600)) is None  # unclear: wait for the next look
    assert decide((45, 1600), (55, 1600), planned=0) is None  # no plan size, no early call


def test_early_calls_need_a_much_stronger_signal() -> None:
    early_keep = decide((40, 1600), (110, 1600))
    assert early_keep is not None and early_keep.status == "keep" and not early_keep.final
    futile = decide((60, 1600), (30, 1600))
    assert futile is not None and futile.status == "discard" and "early discard" in futile.reason
    # P(better) ~0.98 keeps at the close, but not at a peek
    assert decide((48, 1600), (70, 1600)) is None
    assert decide((48, 1600), (70, 1600), closed=True).status == "keep"


def test_past_max_wait_it_is_discarded_as_inconclusive_with_the_counts() -> None:
    d = decide((10, 400), (12, 400), waited_h=400)
    assert d is not None and d.status == "inconclusive" and d.ledger_status == "discard"
    assert "10/400" in d.reason and "12/400" in d.reason
    empty = decide((0, 0), (0, 0), closed=True)
    assert empty is not None and empty.status == "inconclusive"


def test_minimize_turns_the_rate_around() -> None:
    d = decide((150, 3000), (90, 3000), closed=True, direction="minimize")
    assert d is not None and d.status == "keep"


def test_only_beta_binomial_decides_an_ab_test() -> None:
    with pytest.raises(ValueError, match="beta_binomial"):
        interim(
            rules.make(rules.config(), "maximize"),
            (1, 10),
            (2, 10),
            closed=True,
            waited_h=1,
            max_wait_h=10,
        )


def first_decision(arms: np.ndarray, n: int, peeking: Peeking) -> str | None:
    """The status of the first decision over cumulative (successes, trials) looks."""
    looks = arms.shape[1]
    for k in range(looks):
        trials = (k + 1) * (n // looks)
        a, b = (int(arms[0, k]), trials), (int(arms[1, k]), trials)
        d = decide(a, b, closed=k == looks - 1, planned=n, peeking=peeking)
        if d is not None:
            return d.status
    return None


def test_peeking_daily_keeps_fewer_aa_tests_than_naive_peeking() -> None:
    """A/A at 4%, eight looks: the procedure keeps near its final 4% bar; keeping as soon as
    any look has P(better) >= 0.96 keeps far more (the bench measures it on the real plan)."""
    rng = np.random.default_rng(3)
    n, looks, reps = 1600, 8, 200
    naive_peeking = Peeking(keep_probability=0.96, futility_probability=0.0, min_fraction=0.0)
    ours = naive = 0
    for _ in range(reps):
        arms = np.cumsum(rng.binomial(n // looks, 0.04, size=(2, looks)), axis=1)
        ours += first_decision(arms, n, Peeking()) == "keep"
        naive += first_decision(arms, n, naive_peeking) == "keep"
    assert ours / reps <= 0.07
    assert naive > 2 * ours


def test_the_challenger_is_better_with_fewer_successes_when_minimizing() -> None:
    """What the dashboard shows as P(better): for a minimized rate (unsubscribes, say), fewer."""
    fewer, more = (10, 1000), (30, 1000)
    assert prob_challenger_better("minimize", more, fewer) > 0.99
    assert prob_challenger_better("maximize", more, fewer) < 0.01
