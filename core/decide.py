"""The statistics the decision rules use (core/rules/): pure functions on runs and counts.

`gain` is always "how much better", positive when the candidate is better in the declared
direction. Ties always go to the champion. scipy is imported by the functions that use it: it
takes a second to import, at every start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Direction = Literal["minimize", "maximize"]
Samples = Sequence[float | None]
Counts = tuple[int, int]  # (successes, trials)

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Verdict:
    status: Literal["keep", "discard"]
    reason: str
    evidence: str = ""  # compact, for the ledger: rule, repeats, p-value or probability, interval


def gain(direction: Direction, candidate: float, champion: float) -> float:
    """How much better the candidate is than the champion (positive: better)."""
    return champion - candidate if direction == "minimize" else candidate - champion


# Samples -------------------------------------------------------------------------------


def calibrate(samples: Samples) -> float:
    """Noise sigma of the baseline: the sample standard deviation (ddof=1) of its valid runs.

    Needs at least two valid runs; identical runs give 0.0 (a deterministic metric).
    """
    values = np.asarray([np.nan if s is None else s for s in samples], dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        raise ValueError(f"calibration needs at least 2 valid runs, got {values.size}")
    return float(np.std(values, ddof=1))


# threshold -----------------------------------------------------------------------------


def threshold(
    direction: Direction,
    champion: float,
    candidate: float,
    min_delta: float = 0.0,
    relative: bool = False,
    required_extra: float = 0.0,
) -> Verdict:
    """Keep when better by more than min_delta (a fraction of the champion when relative)."""
    g = gain(direction, candidate, champion)
    bar = (min_delta * abs(champion) if relative else min_delta) + required_extra
    evidence = f"threshold gain={g:.6g} bar={bar:.6g}"
    if g > bar:
        return Verdict("keep", f"better by {g:.6g} (> {bar:.6g})", evidence)
    return Verdict("discard", f"not better by more than {bar:.6g} (gain {g:.6g})", evidence)


# sigma ---------------------------------------------------------------------------------


def pooled_sigma(
    champion: np.ndarray,
    candidate: np.ndarray,
    noise_sigma: float | None = None,
    noise_dof: int = 0,
) -> tuple[float, int] | None:
    """Pooled noise sigma, and its degrees of freedom, from the calibration (weight noise_dof)
    and both arms' spread.

    Pooling means one unlucky calibration cannot make every later decision lax, and a change
    in the machine's noise shows up at once. None when there is no estimate at all.
    """
    ss, dof = 0.0, 0
    if noise_sigma is not None:
        weight = max(noise_dof, 1)
        ss, dof = weight * noise_sigma**2, weight
    for arm in (champion, candidate):
        if arm.size >= 2:
            ss += float(np.sum((arm - arm.mean()) ** 2))
            dof += arm.size - 1
    return (math.sqrt(ss / dof), dof) if dof else None


def critical_value(k: float, dof: int) -> float:
    """k standard errors, widened for a sigma estimated with dof degrees of freedom.

    The Student t quantile with the same one-sided tail as k under a known sigma (k=2: 2.3%),
    so the false keep rate does not depend on how few runs calibrated sigma.
    """
    from scipy import stats

    return float(stats.t.isf(stats.norm.sf(k), dof))


def sigma_rule(
    direction: Direction,
    champion: np.ndarray,
    candidate: np.ndarray,
    k: float = 2.0,
    noise_sigma: float | None = None,
    noise_dof: int = 0,
    bar: float = 0.0,
) -> Verdict:
    """Keep when the mean gain, less bar, exceeds k standard errors of the difference of means.

    The standard error is sigma * sqrt(1/n_champion + 1/n_candidate). With one run per arm
    that is sqrt(2) * sigma, stricter than a literal "gain > k * sigma", because the difference
    of two noisy runs has that spread (the literal rule keeps ~8% of A/A changes at k=2). As
    sigma is estimated, k is converted to the t quantile with the same tail (critical_value).
    """
    pooled = pooled_sigma(champion, candidate, noise_sigma, noise_dof)
    if pooled is None:
        raise ValueError(
            "sigma rule: no noise estimate; pass noise_sigma from calibrate() or give an arm "
            "at least 2 runs"
        )
    sigma, dof = pooled
    g = float(gain(direction, candidate.mean(), champion.mean()))
    se = sigma * math.sqrt(1 / champion.size + 1 / candidate.size)
    net = g - bar
    z = net / se if se > 0 else (math.inf if net > 0 else 0.0)
    crit = critical_value(k, dof)
    evidence = (
        f"sigma n={champion.size}/{candidate.size} gain={g:.6g} sigma={sigma:.4g} dof={dof} "
        f"se={se:.4g} z={z:.3g} crit={crit:.3g} (k={k:g}) bar={bar:.6g}"
    )
    if net > 0 and z > crit:
        return Verdict("keep", f"gain {g:.6g} is {z:.3g} standard errors (> {crit:.3g})", evidence)
    return Verdict(
        "discard", f"gain {g:.6g} is {z:.3g} standard errors (<= {crit:.3g}): noise", evidence
    )


# mannwhitney ---------------------------------------------------------------------------


def _effect(
    direction: Direction, champion_median: np.ndarray, candidate_median: np.ndarray
) -> np.ndarray:
    """Relative improvement of the candidate's median (0.05: 5% better)."""
    ratio = candidate_median / champion_median
    return 1.0 - ratio if direction == "minimize" else ratio - 1.0


def bootstrap_effect_interval(
    direction: Direction,
    champion: np.ndarray,
    candidate: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile 95% interval of the relative median improvement; seeded, vectorised."""
    rng = np.random.default_rng(seed)
    champ = np.median(champion[rng.integers(0, champion.size, (resamples, champion.size))], 1)
    cand = np.median(candidate[rng.integers(0, candidate.size, (resamples, candidate.size))], 1)
    lo, hi = np.percentile(_effect(direction, champ, cand), [2.5, 97.5])
    return float(lo), float(hi)


def mann_whitney(
    direction: Direction,
    champion: np.ndarray,
    candidate: np.ndarray,
    alpha: float = 0.01,
    min_effect: float = 0.02,
    bar: float = 0.0,
    seed: int = 0,
) -> Verdict:
    """Keep when one-sided Mann-Whitney p < alpha and the whole 95% bootstrap interval of the
    median improvement lies beyond min_effect (plus bar, as a fraction of the champion median).

    For timings and other positive measurements: the median ratio needs them positive.
    """
    from scipy import stats

    if np.any(champion <= 0) or np.any(candidate <= 0):
        raise ValueError("mannwhitney compares median ratios and needs positive measurements")
    champ_med, cand_med = float(np.median(champion)), float(np.median(candidate))
    needed = min_effect + bar / champ_med
    point = float(_effect(direction, np.float64(champ_med), np.float64(cand_med)))
    head = f"mannwhitney n={champion.size}/{candidate.size}"
    if np.ptp(np.concatenate([champion, candidate])) == 0:
        return Verdict("discard", "identical measurements", f"{head} p=1 effect=0")
    side = "less" if direction == "minimize" else "greater"
    p = float(stats.mannwhitneyu(candidate, champion, alternative=side).pvalue)
    lo, hi = bootstrap_effect_interval(direction, champion, candidate, seed=seed)
    evidence = (
        f"{head} p={p:.3g} effect={point:.2%} ci95=[{lo:.2%},{hi:.2%}] min_effect={needed:.2%}"
    )
    if p < alpha and lo > needed:
        return Verdict("keep", f"median {point:.2%} better, p={p:.3g}", evidence)
    why = f"p={p:.3g} >= {alpha:g}" if p >= alpha else f"interval low {lo:.2%} <= {needed:.2%}"
    return Verdict("discard", f"not reliably better ({why})", evidence)


# beta_binomial -------------------------------------------------------------------------


def _prob_b_beats_a_sum(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """Exact P(X_B > X_A), X ~ Beta(a, b), integer a_b: a finite sum of a_b positive terms."""
    from scipy import special

    i = np.arange(a_b, dtype=float)
    log_terms = (
        special.betaln(a_a + i, b_a + b_b)
        - np.log(b_b + i)
        - special.betaln(1 + i, b_b)
        - special.betaln(a_a, b_a)
    )
    return float(np.exp(special.logsumexp(log_terms)))


def prob_better(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """Exact P(X_B > X_A) for independent Beta(a_a, b_a), Beta(a_b, b_b) with integer shapes.

    Uses whichever of four equivalent sums is shortest (symmetries X -> 1-X and A <-> B).
    """
    shortest = min(a_b, b_a, a_a, b_b)
    if shortest == a_b:
        p = _prob_b_beats_a_sum(a_a, b_a, a_b, b_b)
    elif shortest == b_a:  # P(B > A) = P(1-A > 1-B)
        p = _prob_b_beats_a_sum(b_b, a_b, b_a, a_a)
    elif shortest == a_a:  # P(B > A) = 1 - P(A > B)
        p = 1.0 - _prob_b_beats_a_sum(a_b, b_b, a_a, b_a)
    else:
        p = 1.0 - _prob_b_beats_a_sum(b_a, a_a, b_b, a_b)
    return min(1.0, max(0.0, p))


def prob_better_by(a_a: int, b_a: int, a_b: int, b_b: int, margin: float) -> float:
    """P(X_B > X_A + margin) by numerical integration over X_A's bulk (margin > 0)."""
    from scipy import integrate, stats

    if margin <= 0:
        return prob_better(a_a, b_a, a_b, b_b)
    lo, hi = stats.beta.ppf(1e-14, a_a, b_a), stats.beta.isf(1e-14, a_a, b_a)
    hi = min(hi, 1.0 - margin)
    if hi <= lo:
        return 0.0
    value, _ = integrate.quad(
        lambda x: stats.beta.pdf(x, a_a, b_a) * stats.beta.sf(x + margin, a_b, b_b),
        lo,
        hi,
        limit=200,
    )
    return min(1.0, max(0.0, value))


def expected_loss(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """Exact E[max(X_A - X_B, 0)]: what choosing B costs when A is in fact better.

    E[X_A 1{X_A > X_B}] = E[X_A] P(X_A' > X_B) with X_A' ~ Beta(a_a + 1, b_a), and likewise for
    X_B, so the loss is a difference of two exact probabilities.
    """
    mean_a, mean_b = a_a / (a_a + b_a), a_b / (a_b + b_b)
    first = mean_a * (1.0 - prob_better(a_a + 1, b_a, a_b, b_b))
    second = mean_b * (1.0 - prob_better(a_a, b_a, a_b + 1, b_b))
    return max(0.0, first - second)


def _check_counts(name: str, counts: Counts) -> Counts:
    s, n = counts
    if int(s) != s or int(n) != n or not 0 <= s <= n:
        raise ValueError(f"{name} counts must be integers with 0 <= successes <= trials: {counts}")
    return int(s), int(n)


def beta_binomial(
    direction: Direction,
    champion: Counts,
    candidate: Counts,
    probability: float = 0.95,
    max_expected_loss: float = 0.001,
    bar: float = 0.0,
) -> Verdict:
    """Keep when P(candidate's rate better by more than bar) >= probability and the expected
    loss E[max(champion - candidate, 0)] < max_expected_loss, under Beta(1+s, 1+f) posteriors.

    With direction minimize (an error rate) failures and successes swap roles.
    """
    (s_h, n_h), (s_c, n_c) = (
        _check_counts("champion", champion),
        _check_counts("candidate", candidate),
    )
    if n_h == 0:
        raise ValueError("no valid champion measurement (0 trials)")
    if n_c == 0:
        return Verdict("discard", "no candidate trials", "beta_binomial cand=0/0")
    if direction == "minimize":
        s_h, s_c = n_h - s_h, n_c - s_c
    a_h, b_h, a_c, b_c = 1 + s_h, 1 + n_h - s_h, 1 + s_c, 1 + n_c - s_c
    prob = prob_better_by(a_h, b_h, a_c, b_c, bar)
    loss = expected_loss(a_h, b_h, a_c, b_c)  # A = champion, B = candidate
    evidence = (
        f"beta_binomial champ={champion[0]}/{n_h} cand={candidate[0]}/{n_c} "
        f"P(better)={prob:.4f} loss={loss:.3g} bar={bar:.3g}"
    )
    if prob >= probability and loss < max_expected_loss:
        return Verdict("keep", f"P(better)={prob:.4f}, expected loss {loss:.3g}", evidence)
    why = f"P(better)={prob:.4f} < {probability:g}" if prob < probability else f"loss {loss:.3g}"
    return Verdict("discard", f"not reliably better ({why})", evidence)
