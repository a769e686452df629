"""Cascade screening: evaluation time saved, and good candidates wrongly stopped, on a study
where most candidates are bad.

The study is gpt-train's shape: the full evaluation trains for the whole budget (cost 1), the
screen for a sixth of it (cost 1/6), and a short run's loss is higher than a full one's and
noisier (`--stage-noise`, relative). Of the candidates a model proposes, 80% are worse than the
champion (by 5% to 50%), 20% better (by 0.5% to 5%); the full evaluation measures to 0.2%.
A greedy campaign of `--candidates` proposals is run twice on the same candidates: every one
measured in full, and each first through the stage, passed by the tool's own rule
(steps.screening.passes), then kept by the study's threshold rule.

Figures per `within` (the stage's tolerance): the evaluation time against measuring everything
in full, the good candidates (those the full evaluation keeps) the screen stopped, and the
final champion's loss. Median over seeds.

    .venv/bin/python bench/screening.py [--seeds 20] [--candidates 200]
    .venv/bin/python bench/screening.py --smoke
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bench package, run as a script

from bench._common import parse_args  # noqa: E402
from steps.screening import passes  # noqa: E402

SMOKE = {"seeds": 2, "candidates": 30}
STAGE_COST = 1 / 6
SHORT = 1.3  # a short run's loss, against a full run's
FULL_NOISE = 0.002
WITHINS = (0.02, 0.05, 0.1, 0.25)


@dataclass
class Run:
    time: float = 0.0
    kept: int = 0
    stopped_good: int = 0  # candidates the full evaluation would keep, stopped by the screen
    champion: float = 1.0


@dataclass(frozen=True)
class Candidate:
    change: float  # its loss, as a factor of its champion's
    full: float  # the full evaluation's relative error
    stage: float  # the stage's, in units of the stage's noise


def candidates(seed: int, count: int) -> list[Candidate]:
    """The same candidates (and measurement errors) for a campaign with and without a screen."""
    rng = random.Random(seed)
    return [
        Candidate(
            1 + (rng.uniform(0.05, 0.5) if rng.random() < 0.8 else -rng.uniform(0.005, 0.05)),
            rng.gauss(0, FULL_NOISE),
            rng.gauss(0, 1),
        )
        for _ in range(count)
    ]


def campaign(found: list[Candidate], within: float | None, noise: float) -> Run:
    """A greedy climb over the candidates; `within` None: no screen."""
    run, champion_stage = Run(), SHORT
    for c in found:
        truth = run.champion * c.change
        full = truth * (1 + c.full)
        keeps = full < run.champion  # the threshold rule, min_delta 0
        stage = SHORT * truth * (1 + noise * c.stage)
        if within is not None:
            run.time += STAGE_COST
            if not passes("minimize", stage, champion_stage, within):
                run.stopped_good += keeps
                continue
        run.time += 1
        if keeps:
            run.kept += 1
            run.champion, champion_stage = full, stage
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=200)
    args = parse_args(parser, SMOKE)
    print(f"{args.candidates} candidates, 80% bad; the stage costs {STAGE_COST:.3g} of a full")
    print(f"evaluation; median over {args.seeds} seeds")
    print(f"{'stage noise':>11} {'within':>7} {'time':>7} {'good stopped':>13} {'final loss':>11}")
    for noise in (0.01, 0.03):
        for within in (None, *WITHINS):
            found = [candidates(s, args.candidates) for s in range(args.seeds)]
            runs = [campaign(f, within, noise) for f in found]
            full = [campaign(f, None, noise) for f in found]
            time = statistics.median(r.time / f.time for r, f in zip(runs, full, strict=True))
            good = statistics.median(r.stopped_good for r in runs)
            loss = statistics.median(r.champion for r in runs)
            shown = "-" if within is None else f"{within:.0%}"
            print(f"{noise:>11.0%} {shown:>7} {time:>6.0%} {good:>13g} {loss:>11.4f}")


if __name__ == "__main__":
    main()
