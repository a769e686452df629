"""How often each decision rule keeps noise, and how often it keeps a real gain.

Run: .venv/bin/python bench/decisions.py  (about 30 s on one core; seeded, so reproducible)
     .venv/bin/python bench/decisions.py --smoke  (20 and 50 candidates: that it still runs)

The evaluator returns baseline + Gaussian noise (100, sigma 5, lower is better) whatever the
change; under (b) the candidate's true value is 2 sigma better. Every candidate is an
independent decision against a freshly measured champion, so the rates are per decision (what
`rebaseline: true` gives; with a fixed champion the same rate holds on average over campaigns).
Each rate is shown for the 200 candidates the issue asks for and, for precision, for 2,000.
The rules are the tool's own (core.rules), built from a study's decision section.

Design of `sigma` (why repeats): the rule keeps when the mean gain exceeds k standard errors of
the difference of means, sigma * sqrt(1/n_champion + 1/n_candidate), with k turned into the t
quantile of the same tail (2.3% at k = 2) because sigma is estimated from few runs. With one run
each the difference of two noisy runs has spread sqrt(2) sigma: a literal "gain > 2 sigma" keeps
~8% of A/A changes even with sigma known exactly (row 2), and the honest single-run test (row 3)
has under 20% power at 2 sigma. Repeats fix this: the champion's samples are the 5 calibration
runs and the candidate runs `repeats` = 6 times, a standard error of 0.6 sigma: ~3% false keeps
and ~85% power. (5 runs each gives ~81% power, too close to 80% to promise it.) The sigma used
pools the calibration with both arms' spread, so one lucky calibration cannot make the rule lax
for a whole campaign.

`mannwhitney` runs candidate and champion interleaved (A B, B A, ...) 12 times each: with a 2%
minimum effect on a 5% noise, the bootstrap interval of the median ratio is what needs the
repeats (10 gives ~83%, 12 ~90%).

`beta_binomial`: reply rates 3% vs 4.5% (power) and 3% vs 3% (false positives), 2,500 sends
per arm, P(better) >= 0.95 and expected loss < 0.001.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import rules  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bench package, run as a script

from bench._common import parse_args  # noqa: E402
from core.decide import Direction, calibrate  # noqa: E402
from core.rules.base import Arms, Rule  # noqa: E402

BASELINE, SIGMA, TRUE_GAIN_SIGMAS = 100.0, 5.0, 2.0
SIZES = (200, 2000)  # candidates per rate: the issue's, and for precision
SMOKE = {"sizes": "20,50"}


@dataclass
class NoisyEvaluator:
    """Baseline plus Gaussian noise, whatever the change; `gain` sigmas better when real."""

    rng: np.random.Generator
    gain: float = 0.0

    def champion(self) -> float:
        return float(self.rng.normal(BASELINE, SIGMA))

    def candidate(self) -> float:
        return float(self.rng.normal(BASELINE - self.gain * SIGMA, SIGMA))

    def interleaved(self, repeats: int) -> tuple[list[float], list[float]]:
        """A B, B A, ...: the order the flow runs them (this noise has no drift to cancel)."""
        champ, cand = [], []
        for i in range(repeats):
            if i % 2:
                champ.append(self.champion())
            cand.append(self.candidate())
            if not i % 2:
                champ.append(self.champion())
        return champ, cand


Trial = Callable[[NoisyEvaluator], bool]


def rule(direction: Direction = "minimize", min_delta: float = 0.0, **decision: Any) -> Rule:
    """The rule a study's `metric.decision` section (`decision`) makes."""
    return rules.make(rules.config(**decision), direction, min_delta)


def kept(rule: Rule, arms: Arms) -> bool:
    return rule.decide(arms).status == "keep"


def naive(ev: NoisyEvaluator) -> bool:
    return ev.candidate() < ev.champion()


THRESHOLD = rule(min_delta=2 * SIGMA)
SIGMA_RULE = rule(rule="sigma")
SIGMA_REPEATS = rule(rule="sigma", repeats=6)
MANNWHITNEY = rule(rule="mannwhitney", repeats=12)
BETA_BINOMIAL = rule("maximize", rule="beta_binomial")


def literal_k_sigma(ev: NoisyEvaluator) -> bool:
    """gain > k * sigma with one run each and sigma known exactly: the best case of it."""
    return kept(THRESHOLD, Arms([ev.champion()], [ev.candidate()]))


def sigma_single(ev: NoisyEvaluator) -> bool:
    noise = calibrate([ev.champion() for _ in range(SIGMA_RULE.baseline_runs)])
    return kept(SIGMA_RULE, Arms([ev.champion()], [ev.candidate()], noise_sigma=noise))


def sigma_repeats(ev: NoisyEvaluator) -> bool:
    champ = [ev.champion() for _ in range(SIGMA_REPEATS.baseline_runs)]
    cand = [ev.candidate() for _ in range(SIGMA_REPEATS.repeats)]
    return kept(SIGMA_REPEATS, Arms(champ, cand))  # the calibration runs are the champion arm


def mannwhitney(ev: NoisyEvaluator) -> bool:
    champ, cand = ev.interleaved(MANNWHITNEY.repeats)
    return kept(MANNWHITNEY, Arms(champ, cand))


ROWS: list[tuple[str, str, Trial]] = [
    ("naive: better at all", "1", naive),
    ("threshold gain > 2 sigma (literal)", "1", literal_k_sigma),
    ("sigma k=2", "1 (+5 calibration)", sigma_single),
    ("sigma k=2", "5 champion, 6 candidate", sigma_repeats),
    ("mannwhitney a=0.01 min 2%", "12 interleaved", mannwhitney),
]


def rate(trial: Trial, gain: float, n: int, seed: int) -> float:
    ev = NoisyEvaluator(np.random.default_rng(seed), gain)
    return sum(trial(ev) for _ in range(n)) / n


def noise_table(sizes: tuple[int, ...]) -> pd.DataFrame:
    rows = []
    for i, (name, runs, trial) in enumerate(ROWS):
        row = {"rule": name, "runs per arm": runs}
        for label, gain in (("A/A false keeps", 0.0), ("2-sigma gain kept", TRUE_GAIN_SIGMAS)):
            for n in sizes:
                row[f"{label} ({n})"] = f"{rate(trial, gain, n, seed=1000 * i + n):.1%}"
        rows.append(row)
    return pd.DataFrame(rows)


def rates_trial(rng: np.random.Generator, p_champion: float, p_candidate: float) -> bool:
    sends = 2500
    champ = (int(rng.binomial(sends, p_champion)), sends)
    cand = (int(rng.binomial(sends, p_candidate)), sends)
    return kept(BETA_BINOMIAL, Arms([], [], champion_counts=champ, candidate_counts=cand))


def rates_table(sizes: tuple[int, ...]) -> pd.DataFrame:
    rows = []
    for name, p_cand in (("power: 3% vs 4.5%", 0.045), ("false positives: 3% vs 3%", 0.03)):
        row = {"beta_binomial, 2,500 sends per arm": name}
        for n in sizes:
            rng = np.random.default_rng(n + int(p_cand * 1000))
            row[f"keep rate ({n})"] = (
                f"{sum(rates_trial(rng, 0.03, p_cand) for _ in range(n)) / n:.1%}"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ",".join(map(str, SIZES))
    parser.add_argument("--sizes", default=default, help="candidates per rate, one column each")
    return parse_args(parser, SMOKE)


def main() -> None:
    sizes = tuple(int(n) for n in arguments().sizes.split(","))
    start = time.perf_counter()
    pd.set_option("display.width", 200)
    print(f"(a)/(b) evaluator: {BASELINE:g} + N(0, {SIGMA:g}), minimize; candidates per column")
    print(noise_table(sizes).to_string(index=False))
    print()
    print("(c) simulated reply rates")
    print(rates_table(sizes).to_string(index=False))
    print(f"\n{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
