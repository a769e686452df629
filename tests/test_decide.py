"""Decision rules: edge cases of each rule, and statistical sanity checks with fixed seeds."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import integrate, stats

from core import rules
from core.decide import (
    Direction,
    Verdict,
    bootstrap_effect_interval,
    calibrate,
    critical_value,
    expected_loss,
    prob_better,
    prob_better_by,
)
from core.rules.base import Arms, DecisionConfig

THRESHOLD = rules.config()
SIGMA = rules.config(rule="sigma")
MW = rules.config(rule="mannwhitney")
BB = rules.config(rule="beta_binomial")
NAN = float("nan")


def decide(
    config: DecisionConfig,
    direction: Direction,
    champion: list,
    candidate: list,
    min_delta: float = 0.0,
    lines_added: int = 0,
    lines_removed: int = 0,
    **arms: object,
) -> Verdict:
    """The study's rule, as core.rules makes it, on these arms."""
    rule = rules.make(config, direction, min_delta)
    return rule.decide(Arms(champion, candidate, lines_added=lines_added,  # type: ignore[arg-type]
                            lines_removed=lines_removed, **arms))  # fmt: skip


def status(*args: object, **kw: object) -> str:
    return decide(*args, **kw).status  # type: ignore[arg-type]


# shared: crashed runs and empty samples --------------------------------------------------


@pytest.mark.parametrize("rule", [THRESHOLD, SIGMA, MW])
@pytest.mark.parametrize("champion", [[], [NAN, NAN], [None]])
def test_champion_without_valid_run_is_an_error(rule: DecisionConfig, champion: list) -> None:
    with pytest.raises(ValueError, match="no valid champion measurement"):
        decide(rule, "minimize", champion, [1.0, 1.0], noise_sigma=1.0)


@pytest.mark.parametrize("rule", [THRESHOLD, SIGMA, MW, BB])
def test_candidate_with_every_run_crashed_is_discarded(rule: DecisionConfig) -> None:
    champ = [1.0, 0.0, 1.0] if rule is BB else [5.0, 5.1, 4.9]
    verdict = decide(rule, "minimize", champ, [NAN, None], noise_sigma=0.1)
    assert verdict.status == "discard"
    assert "2 of 2 candidate run(s) crashed" in verdict.reason


@pytest.mark.parametrize("rule", [THRESHOLD, SIGMA, MW])
def test_empty_candidate_is_discarded(rule: DecisionConfig) -> None:
    verdict = decide(rule, "minimize", [5.0, 5.1, 4.9], [], noise_sigma=0.1)
    assert (verdict.status, verdict.reason) == ("discard", "no candidate measurement")


def test_candidate_with_one_crashed_run_is_discarded_even_when_the_rest_is_better() -> None:
    assert status(THRESHOLD, "minimize", [10.0], [1.0, NAN, 1.0]) == "discard"


def test_crashed_champion_runs_are_dropped() -> None:
    verdict = decide(THRESHOLD, "minimize", [NAN, 10.0, None], [9.0])
    assert verdict.status == "keep"
    assert "gain=1" in verdict.evidence


# threshold --------------------------------------------------------------------------------


def test_threshold_tie_goes_to_champion() -> None:
    assert status(THRESHOLD, "minimize", [1.0], [1.0]) == "discard"
    assert status(THRESHOLD, "maximize", [1.0], [1.0]) == "discard"


@pytest.mark.parametrize(
    ("direction", "candidate", "expected"),
    [
        ("minimize", 0.9, "keep"),
        ("minimize", 1.1, "discard"),
        ("maximize", 1.1, "keep"),
        ("maximize", 0.9, "discard"),
    ],
)
def test_threshold_direction(direction: str, candidate: float, expected: str) -> None:
    assert status(THRESHOLD, direction, [1.0], [candidate]) == expected


def test_threshold_absolute_min_delta_is_strict() -> None:
    assert status(THRESHOLD, "minimize", [10.0], [9.5], 0.5) == "discard"
    assert status(THRESHOLD, "minimize", [10.0], [9.4], 0.5) == "keep"


def test_threshold_relative_min_delta_scales_with_the_champion() -> None:
    rule = rules.config(relative=True)
    assert status(rule, "minimize", [100.0], [99.0], 0.01) == "discard"  # exactly 1%
    assert status(rule, "minimize", [100.0], [98.9], 0.01) == "keep"
    assert status(rule, "maximize", [-200.0], [-198.5], 0.01) == "discard"  # bar 2
    assert status(rule, "maximize", [-200.0], [-197.9], 0.01) == "keep"


def test_threshold_compares_means_of_several_runs() -> None:
    verdict = decide(THRESHOLD, "minimize", [10.0, 12.0], [10.5, 10.5])
    assert verdict.status == "keep"
    assert "gain=0.5" in verdict.evidence


# sigma ------------------------------------------------------------------------------------


def test_calibrate_is_the_sample_standard_deviation() -> None:
    assert calibrate([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert calibrate([4.0, 4.0, 4.0]) == 0.0
    assert calibrate([1.0, NAN, 3.0]) == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError, match="at least 2 valid runs"):
        calibrate([1.0, NAN])


def test_critical_value_is_k_for_a_known_sigma_and_wider_for_few_runs() -> None:
    assert critical_value(2.0, 10**7) == pytest.approx(2.0, abs=1e-4)
    assert critical_value(2.0, 4) == pytest.approx(2.869, abs=1e-3)


def test_sigma_identical_samples_discard_without_division_by_zero() -> None:
    verdict = decide(SIGMA, "minimize", [3.0] * 5, [3.0] * 5, noise_sigma=0.0)
    assert verdict.status == "discard"


def test_sigma_zero_noise_keeps_any_real_gain() -> None:
    assert status(SIGMA, "minimize", [3.0] * 5, [2.999] * 5, noise_sigma=0.0) == "keep"
    assert status(SIGMA, "maximize", [3.0] * 5, [2.999] * 5, noise_sigma=0.0) == "discard"


def test_sigma_needs_a_noise_estimate() -> None:
    with pytest.raises(ValueError, match="no noise estimate"):
        decide(SIGMA, "minimize", [3.0], [2.0])


def test_sigma_single_runs_use_the_spread_of_a_difference() -> None:
    # gain 2.5 sigma: a literal "gain > 2 sigma" would keep; the difference of two runs has
    # spread sqrt(2) sigma, so it is 1.77 standard errors: noise.
    precise = {"noise_sigma": 1.0, "noise_dof": 10**6}
    assert status(SIGMA, "minimize", [10.0], [7.5], **precise) == "discard"
    assert status(SIGMA, "minimize", [10.0], [7.0], **precise) == "keep"  # 2.12 > 2
    # the same gain with sigma from only 5 calibration runs is not enough (t quantile 2.87)
    assert status(SIGMA, "minimize", [10.0], [7.0], noise_sigma=1.0) == "discard"


def test_sigma_standard_error_shrinks_with_repeats() -> None:
    champ = [10.0, 11.0, 9.0, 10.0, 10.0]  # sd 0.707
    cand = [x - 1.2 for x in champ]  # gain 1.2, se 0.447, z 2.68 > crit(dof 12) 2.23
    assert status(SIGMA, "minimize", champ, cand, noise_sigma=0.707) == "keep"
    assert status(SIGMA, "maximize", champ, cand, noise_sigma=0.707) == "discard"
    assert status(SIGMA, "minimize", champ, cand[:1], noise_sigma=0.707) == "discard"


def test_sigma_pools_calibration_with_the_arms() -> None:
    # a tiny calibrated sigma does not make the rule lax when the arms themselves are noisy
    rng = np.random.default_rng(3)
    champ, cand = rng.normal(10, 1, 6), rng.normal(9.6, 1, 6)
    verdict = decide(SIGMA, "minimize", list(champ), list(cand), noise_sigma=1e-6)
    assert verdict.status == "discard"
    sigma = float(verdict.evidence.split("sigma=")[1].split()[0])
    assert 0.5 < sigma < 1.5


def _sigma_rates(n: int, seed: int) -> tuple[float, float]:
    """(A/A false keep rate, keep rate for a 2-sigma gain) with 5 champion and 6 candidate runs."""
    rng = np.random.default_rng(seed)
    rates = []
    for shift in (0.0, 2.0):
        keeps = 0
        for _ in range(n):
            champ = rng.normal(100, 5, 5)
            cand = rng.normal(100 - 5 * shift, 5, 6)
            verdict = decide(
                SIGMA, "minimize", list(champ), list(cand), noise_sigma=calibrate(champ)
            )
            keeps += verdict.status == "keep"
        rates.append(keeps / n)
    return rates[0], rates[1]


def test_sigma_statistics_false_keeps_and_power() -> None:
    false_keeps, power = _sigma_rates(1000, seed=11)
    assert false_keeps <= 0.05
    assert power >= 0.8


# mannwhitney ------------------------------------------------------------------------------


def test_mannwhitney_identical_samples_discard() -> None:
    verdict = decide(MW, "minimize", [5.0] * 6, [5.0] * 6)
    assert verdict.status == "discard"
    assert verdict.evidence.startswith("mannwhitney n=6/6")


def test_mannwhitney_constant_but_different_arms_keep_in_the_better_direction() -> None:
    verdict = decide(MW, "minimize", [10.0] * 5, [9.0] * 5)
    assert verdict.status == "keep"
    assert "ci95=[10.00%,10.00%]" in verdict.evidence
    assert status(MW, "maximize", [10.0] * 5, [9.0] * 5) == "discard"
    assert status(MW, "maximize", [10.0] * 5, [11.0] * 5) == "keep"


def test_mannwhitney_significant_but_smaller_than_min_effect_is_discarded() -> None:
    rng = np.random.default_rng(0)
    champ = rng.normal(100, 0.1, 20)
    cand = champ * 0.99  # 1% faster, every time
    verdict = decide(MW, "minimize", list(champ), list(cand))
    assert verdict.status == "discard"
    assert "interval low" in verdict.reason
    loose = rules.config(rule="mannwhitney", min_effect=0.005)
    assert status(loose, "minimize", list(champ), list(cand)) == "keep"


def test_mannwhitney_needs_positive_measurements() -> None:
    with pytest.raises(ValueError, match="positive"):
        decide(MW, "minimize", [1.0, 0.0], [1.0, 2.0])


def test_mannwhitney_one_run_each_cannot_reach_significance() -> None:
    verdict = decide(MW, "minimize", [10.0], [1.0])
    assert verdict.status == "discard"
    assert "p=0.5" in verdict.evidence


def test_bootstrap_is_deterministic_and_fast() -> None:
    rng = np.random.default_rng(1)
    champ, cand = rng.normal(100, 5, 12), rng.normal(90, 5, 12)
    start = time.perf_counter()
    first = bootstrap_effect_interval("minimize", champ, cand)
    assert time.perf_counter() - start < 0.2
    assert bootstrap_effect_interval("minimize", champ, cand) == first
    assert bootstrap_effect_interval("minimize", champ, cand, seed=1) != first
    assert first[0] < 0.10 < first[1]
    assert decide(MW, "minimize", list(champ), list(cand)) == decide(
        MW, "minimize", list(champ), list(cand)
    )


def test_mannwhitney_statistics_false_keeps_and_power() -> None:
    rule = rules.config(rule="mannwhitney", repeats=12)
    rng = np.random.default_rng(21)
    aa = [
        status(rule, "minimize", list(rng.normal(100, 5, 12)), list(rng.normal(100, 5, 12)))
        for _ in range(200)
    ]
    real = [
        status(rule, "minimize", list(rng.normal(100, 5, 12)), list(rng.normal(90, 5, 12)))
        for _ in range(200)
    ]
    assert aa.count("keep") / 200 <= 0.05
    assert real.count("keep") / 200 >= 0.8


# beta_binomial ----------------------------------------------------------------------------


def _quad_prob(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    def integrand(x: float) -> float:
        return stats.beta.pdf(x, a_a, b_a) * stats.beta.sf(x, a_b, b_b)

    return integrate.quad(integrand, 0, 1, points=[a_a / (a_a + b_a)], limit=500)[0]


@pytest.mark.parametrize(
    "shapes",
    [(76, 2426, 113, 2389), (3, 5, 2, 7), (10, 1, 1, 10), (2, 30, 40, 3), (50, 4, 3, 60)],
)
def test_prob_better_is_exact_on_every_branch(shapes: tuple[int, int, int, int]) -> None:
    assert prob_better(*shapes) == pytest.approx(_quad_prob(*shapes), abs=1e-9)
    assert prob_better_by(*shapes, 1e-12) == pytest.approx(prob_better(*shapes), abs=1e-7)


def test_prob_better_and_loss_for_uniform_priors() -> None:
    assert prob_better(1, 1, 1, 1) == pytest.approx(0.5)
    assert expected_loss(1, 1, 1, 1) == pytest.approx(1 / 6)  # E[max(U1 - U2, 0)]


def test_expected_loss_and_margin_match_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.beta(31, 971, 10**6), rng.beta(41, 961, 10**6)
    assert expected_loss(31, 971, 41, 961) == pytest.approx(np.maximum(a - b, 0).mean(), rel=0.02)
    assert prob_better_by(31, 971, 41, 961, 0.005) == pytest.approx((b > a + 0.005).mean(), 0.01)


def test_beta_binomial_equal_rates_discard() -> None:
    verdict = decide(
        BB, "maximize", [], [], champion_counts=(75, 2500), candidate_counts=(75, 2500)
    )
    assert verdict.status == "discard"
    assert "P(better)=0.5000" in verdict.evidence


def test_beta_binomial_direction() -> None:
    counts = {"champion_counts": (75, 2500), "candidate_counts": (125, 2500)}
    assert status(BB, "maximize", [], [], **counts) == "keep"
    assert status(BB, "minimize", [], [], **counts) == "discard"
    swapped = {"champion_counts": (125, 2500), "candidate_counts": (75, 2500)}
    assert status(BB, "minimize", [], [], **swapped) == "keep"


def test_beta_binomial_expected_loss_bound_blocks() -> None:
    strict = rules.config(rule="beta_binomial", max_expected_loss=1e-9)
    counts = {"champion_counts": (75, 2500), "candidate_counts": (100, 2500)}
    assert status(BB, "maximize", [], [], **counts) == "keep"
    verdict = decide(strict, "maximize", [], [], **counts)
    assert verdict.status == "discard"
    assert "loss" in verdict.reason


def test_beta_binomial_from_single_trial_outcomes() -> None:
    champ, cand = [0] * 90 + [1] * 10, [0] * 60 + [1] * 40
    verdict = decide(BB, "maximize", champ, cand)
    assert verdict.status == "keep"
    assert "champ=10/100 cand=40/100" in verdict.evidence
    with pytest.raises(ValueError, match="0/1 outcomes"):
        decide(BB, "maximize", [0.03], [0.05])


def test_beta_binomial_bad_or_empty_counts() -> None:
    with pytest.raises(ValueError, match="0 trials"):
        decide(BB, "maximize", [], [], champion_counts=(0, 0), candidate_counts=(5, 10))
    with pytest.raises(ValueError, match="successes <= trials"):
        decide(BB, "maximize", [], [], champion_counts=(11, 10), candidate_counts=(5, 10))
    assert status(BB, "maximize", [], [], champion_counts=(5, 10), candidate_counts=(0, 0)) == (
        "discard"
    )


def _reply_rate_keeps(rng: np.random.Generator, p_candidate: float, n: int = 300) -> float:
    """Share of kept candidates: reply rate 3% against p_candidate, 2,500 sends per arm."""
    keeps = 0
    for _ in range(n):
        champ = (int(rng.binomial(2500, 0.03)), 2500)
        cand = (int(rng.binomial(2500, p_candidate)), 2500)
        keeps += status(BB, "maximize", [], [], champion_counts=champ, candidate_counts=cand) == (
            "keep"
        )
    return keeps / n


def test_beta_binomial_statistics_reply_rates() -> None:
    rng = np.random.default_rng(7)
    assert _reply_rate_keeps(rng, 0.045) >= 0.8
    assert _reply_rate_keeps(rng, 0.03) <= 0.09


# complexity_cost --------------------------------------------------------------------------


def test_complexity_cost_raises_the_bar_per_net_line_added() -> None:
    rule = rules.config(complexity_cost=0.1)
    assert status(rule, "minimize", [10.0], [9.5], 0.0, 10, 0) == "discard"  # needs > 1.0
    assert status(rule, "minimize", [10.0], [8.9], 0.0, 10, 0) == "keep"
    assert status(rule, "minimize", [10.0], [9.5], 0.0, 10, 8) == "keep"  # net 2 lines: > 0.2


def test_equal_result_that_deletes_code_is_kept() -> None:
    rule = rules.config(complexity_cost=0.1)
    verdict = decide(rule, "minimize", [10.0], [10.0], 0.0, 2, 12)
    assert verdict.status == "keep"
    assert "10 line(s) fewer" in verdict.reason
    assert "simpler=10" in verdict.evidence
    assert status(rule, "minimize", [10.0], [10.01], 0.0, 2, 12) == "discard"  # worse
    assert status(rule, "minimize", [10.0], [10.0], 0.0, 5, 5) == "discard"  # no deletion
    assert status(THRESHOLD, "minimize", [10.0], [10.0], 0.0, 2, 12) == "discard"  # no cost set


def test_deletion_rule_applies_to_noisy_rules() -> None:
    sigma = rules.config(rule="sigma", complexity_cost=0.01)
    champ = [10.0, 10.5, 9.5]
    assert status(sigma, "minimize", champ, champ, 0.0, 0, 30, noise_sigma=0.5) == "keep"
    assert status(sigma, "minimize", champ, [10.2] * 3, 0.0, 0, 30, noise_sigma=0.5) == "discard"
    mw = rules.config(rule="mannwhitney", complexity_cost=0.01)
    assert status(mw, "minimize", champ, champ, 0.0, 0, 30) == "keep"
    bb = rules.config(rule="beta_binomial", complexity_cost=0.001)
    counts = {"champion_counts": (75, 2500), "candidate_counts": (75, 2500)}
    assert status(bb, "maximize", [], [], 0.0, 0, 3, **counts) == "keep"
    assert status(bb, "maximize", [], [], 0.0, 3, 0, **counts) == "discard"


def test_complexity_cost_for_rates_is_a_margin_on_the_rate() -> None:
    bb = rules.config(rule="beta_binomial", complexity_cost=0.001)
    counts = {"champion_counts": (75, 2500), "candidate_counts": (125, 2500)}  # +2 points
    assert status(bb, "maximize", [], [], 0.0, 5, 0, **counts) == "keep"  # margin 0.5 points
    assert status(bb, "maximize", [], [], 0.0, 30, 0, **counts) == "discard"  # margin 3 points


def test_evidence_names_the_rule() -> None:
    rng = np.random.default_rng(2)
    champ, cand = list(rng.normal(10, 1, 5)), list(rng.normal(9, 1, 5))
    assert decide(THRESHOLD, "minimize", champ, cand).evidence.startswith("threshold n=5/5")
    assert decide(SIGMA, "minimize", champ, cand).evidence.startswith("sigma n=5/5")
    assert "p=" in decide(MW, "minimize", champ, cand).evidence
    assert "ci95=" in decide(MW, "minimize", champ, cand).evidence
