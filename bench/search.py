"""How many experiments each offline proposer needs to find the optimum of small numeric studies.

Run: .venv/bin/python bench/search.py [--seeds 10] [--cap 100] [--jobs N] [--no-quadratic]
     .venv/bin/python bench/search.py --smoke   # 1 seed, cap 5: that it still runs

Each study is one editable file of `NAME = value` lines, scored in process by a known loss
(lower is better, 0 at the optimum). The proposers are driven as the lab drives them, without git
or Prefect: a Context over the champion's files and the ledger's typed Rows (with the
descriptions and keys the real flow writes), the study's real decision rule (`Study.rule`), a
keep changes the champion's files and a discard does not. A study with noise is decided by the
sigma rule: the baseline runs 5 times to calibrate, each candidate runs 5 times (`repeats`).

The figure is the number of experiments (after the baseline) until the champion's true loss is
within 1% of the way from the baseline's loss to the optimum's, capped; the median over seeds,
the quartiles, and how many seeds got there. Random search samples the same ranges as optuna
(the study's `knobs` ranges, or optuna's defaults where it has none). `hidden` is `bowl` without
ranges: optuna searches its default ones. tpe and gp take optuna's quadratic steps, as by
default (`--no-quadratic`: the samplers alone). Targets (issue 13): optuna with its default
sampler (`auto`: gp where torch is installed) needs at most half of mutate's experiments on the
smooth studies, and mutate at most as many as random search. `portfolio` is mutate and optuna
(its default sampler) behind one researcher; optuna reads mutate's points from the ledger too.
Target (issue 18): the portfolio within 20% of its best member.

Then the search strategies (greedy, tree, islands) on a smooth, a deceptive, a plateau and a
noisy study, with a scripted model through the Messages API emulator and its dollars: the
table of bench/strategies.py (its docstring says how).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bench package, run as a script

from bench import strategies  # noqa: E402
from bench._common import parse_args  # noqa: E402
from core.decide import calibrate  # noqa: E402
from core.ledger import Row, Status  # noqa: E402
from core.rules.base import AnyDecision, Arms  # noqa: E402
from core.study import AnyEvaluator, MetricConfig, Study, StudyConfig  # noqa: E402
from proposers.base import Context, InvalidProposal, Proposer  # noqa: E402
from proposers.mutate import MutateConfig, MutateProposer  # noqa: E402
from proposers.optuna import OptunaConfig, OptunaProposer, auto_sampler  # noqa: E402
from proposers.portfolio import PortfolioConfig, PortfolioProposer  # noqa: E402

PATH = "study/solution.py"
TARGET = 0.01  # of the way from the baseline's loss to the optimum's
SMOKE = {"seeds": 1, "cap": 5, "jobs": 2}
Knobs = dict[str, float]


class SimLab:
    """A lab in process: the champion's files, the ledger's rows and the study's decision rule.

    `measure` scores a set of files once (noise included); the first row is the baseline.
    """

    def __init__(
        self, study: Study, files: dict[str, str], measure: Callable[[dict[str, str]], float]
    ) -> None:
        self.study, self.files, self.measure = study, files, measure
        self.rule = study.rule
        self.calibration = [measure(files) for _ in range(self.rule.baseline_runs)]
        self.champion_runs = self.calibration
        self.history = [Row(1, Status.KEEP, "baseline", metric=statistics.fmean(self.calibration))]

    def context(self) -> Context:
        return Context(
            study=self.study,
            program="",
            files=dict(self.files),
            protected=[],
            history=list(self.history),
            learnings="",
            last_crash=None,
            experiment=len(self.history) + 1,
            workdir=Path("."),
            tried={r.key for r in self.history if r.key},
        )

    def step(self, proposer: Proposer) -> Row:
        """One experiment: propose, measure, decide, record (as the lab does)."""
        n = len(self.history) + 1
        try:
            proposal = proposer.propose(self.context())
        except InvalidProposal as exc:
            return self.record(Row(n, Status.INVALID, f"invalid proposal: {exc}"))
        files = self.files | proposal.files
        runs = [self.measure(files) for _ in range(self.rule.repeats)]
        noise = self.rule.calibrates and self.champion_runs is not self.calibration
        verdict = self.rule.decide(
            Arms(
                self.champion_runs,
                runs,
                noise_sigma=calibrate(self.calibration) if noise else None,
                noise_dof=len(self.calibration) - 1 if noise else None,
            )
        )
        status = Status(verdict.status)
        if status == Status.KEEP:
            self.files, self.champion_runs = files, runs
        row = Row(
            n,
            status,
            proposal.hypothesis,
            metric=statistics.fmean(runs),
            proposer=proposal.proposer,
            evidence=verdict.evidence,
            key=proposal.key,
        )
        return self.record(row)

    def record(self, row: Row) -> Row:
        self.history.append(row)
        return row


def study_of(name: str, proposer: Config, rule: AnyDecision) -> Study:
    """A study held in memory: study/solution.py, loss minimized under `rule`."""
    config = StudyConfig(
        name=name,
        editable=["solution.py"],
        evaluator=AnyEvaluator(kind="command"),
        metric=MetricConfig(name="loss", direction="minimize", decision=rule),
        proposer=proposer.model_dump(),
    )
    return Study(config, Path("/bench/study"), Path("/bench"))


def knob_values(files: dict[str, str]) -> Knobs:
    space: dict[str, float] = {}
    exec(files[PATH], space)  # the bench's own files: NAME = value lines
    return {k: v for k, v in space.items() if isinstance(v, int | float)}


@dataclass(frozen=True)
class Problem:
    name: str
    start: Knobs
    loss: Callable[[Knobs], float]  # 0 at the optimum
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # given to optuna
    noise: float = 0.0  # the measurement's standard deviation; decided by the sigma rule
    smooth: bool = True  # counts for the target "optuna at most half of mutate"

    def files(self) -> dict[str, str]:
        return {PATH: "".join(f"{k} = {v!r}\n" for k, v in self.start.items())}

    @property
    def rule(self) -> AnyDecision:
        """The study's `metric.decision` section."""
        return AnyDecision(rule="sigma") if self.noise else AnyDecision()


def template(k: Knobs) -> float:
    """`autoresearch init`'s evaluate.py, as a loss: sum |WEIGHT x - 0.8 x| for x in 1..10."""
    return sum(abs(k["WEIGHT"] * x - 0.8 * x) for x in range(1, 11))


def bowl(k: Knobs) -> float:
    return (k["A"] - 2.5) ** 2 + (k["B"] - 0.8) ** 2 + (k["C"] - 1.5) ** 2


def rosenbrock(k: Knobs) -> float:
    return (1 - k["X"]) ** 2 + 100 * (k["Y"] - k["X"] ** 2) ** 2


BOWL = {"A": 1.0, "B": 2.0, "C": 0.5}
BOWL_RANGES = {name: (0.0, 5.0) for name in BOWL}
PROBLEMS = [
    Problem("template", {"WEIGHT": 0.5}, template, smooth=False),
    Problem("bowl", BOWL, bowl, BOWL_RANGES),
    Problem("hidden", BOWL, bowl),  # optuna's default ranges
    Problem("rosenbrock", {"X": 0.2, "Y": 0.1}, rosenbrock, {"X": (0.0, 2.0), "Y": (0.0, 2.0)}),
    Problem("noisy-bowl", BOWL, bowl, BOWL_RANGES, noise=0.02, smooth=False),
]


STRATEGY_STUDIES = [p.name for p in strategies.PROBLEMS]  # smooth, deceptive, plateau, noisy
HAS_TORCH = importlib.util.find_spec("torch") is not None  # optuna's GP sampler needs it


Config = MutateConfig | OptunaConfig | PortfolioConfig


def proposers(problem: Problem, seed: int, quadratic: bool = True) -> dict[str, Config]:
    knobs = dict(problem.ranges)
    samplers = ["tpe", "cmaes", *(["gp"] if HAS_TORCH else [])]
    optuna = OptunaConfig(seed=seed, knobs=knobs, quadratic=quadratic)  # its default sampler
    return {
        "mutate": MutateConfig(seed=seed),
        **{
            f"optuna {s}": OptunaConfig(seed=seed, knobs=knobs, sampler=s, quadratic=quadratic)
            for s in samplers
        },
        "random": OptunaConfig(seed=seed, knobs=knobs, sampler="random"),
        "portfolio": PortfolioConfig(
            seed=seed, members=[MutateConfig(seed=seed).model_dump(), optuna.model_dump()]
        ),
    }


def make(config: Config) -> Proposer:
    if isinstance(config, MutateConfig):
        return MutateProposer(config)
    if isinstance(config, PortfolioConfig):
        return PortfolioProposer(config)
    return OptunaProposer(config)


def climb(problem: Problem, config: Config, seed: int, cap: int) -> int | None:
    """Experiments until the champion is within TARGET of the optimum; None past the cap."""
    rng = np.random.default_rng(seed)

    def measure(files: dict[str, str]) -> float:
        return problem.loss(knob_values(files)) + problem.noise * float(rng.standard_normal())

    lab = SimLab(study_of(problem.name, config, problem.rule), problem.files(), measure)
    goal = TARGET * problem.loss(problem.start)
    proposer = make(config)
    for n in range(1, cap + 1):
        lab.step(proposer)
        if problem.loss(knob_values(lab.files)) <= goal:
            return n
    return None


def one_thread() -> None:
    """The processes are the parallelism: torch (under optuna's GP) gets one thread in each."""
    if HAS_TORCH:
        import torch

        torch.set_num_threads(1)


def timed(
    problem: int, name: str, seed: int, cap: int, quadratic: bool = True
) -> tuple[int | None, float]:
    """One climb in a worker process, and its seconds."""
    began = time.perf_counter()
    config = proposers(PROBLEMS[problem], seed, quadratic)[name]
    return climb(PROBLEMS[problem], config, seed, cap), time.perf_counter() - began


def summary(runs: list[int | None], cap: int) -> str:
    """Median [quartiles] over seeds (a run that never got there counts as the cap), and how
    many seeds got there."""
    values = [cap if r is None else r for r in runs]
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    more = "+" if median >= cap else ""
    reached = sum(r is not None for r in runs)
    return f"{median:g}{more} [{q1:.0f}-{q3:.0f}] {reached}/{len(runs)}"


def default_sampler(problem: Problem) -> str:
    """The sampler optuna's default (`auto`) picks for this study."""
    return auto_sampler(len(problem.start))


def verdicts(problem: Problem, medians: dict[str, float]) -> str:
    """The issue's targets, met or missed, for one study (the default sampler's marked)."""
    mutate, random = medians["mutate"], medians["random"]
    out = [f"mutate <= random: {'met' if mutate <= random else 'MISSED'}"]
    best = min(medians["mutate"], medians[f"optuna {default_sampler(problem)}"])
    met = "met" if medians["portfolio"] <= 1.2 * best else "MISSED"
    out.append(f"portfolio <= 1.2 x its best member: {met}")
    if problem.smooth:
        default = f"optuna {default_sampler(problem)}"
        for name in (n for n in medians if n.startswith("optuna")):
            met = "met" if medians[name] <= mutate / 2 else "MISSED"
            out.append(f"{name}{' (default)' if name == default else ''} <= mutate/2: {met}")
    return f"{problem.name}: " + "; ".join(out)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--cap", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument(
        "--no-quadratic", dest="quadratic", action="store_false", help="the samplers alone"
    )
    return parse_args(parser, SMOKE)


def main() -> None:
    args = arguments()
    names = list(proposers(PROBLEMS[0], 0))
    jobs = {
        (i, name, seed): (i, name, seed, args.cap, args.quadratic)
        for i in range(len(PROBLEMS))
        for name in names
        for seed in range(args.seeds)
    }
    began = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=one_thread) as pool:
        done = dict(zip(jobs, pool.map(timed, *zip(*jobs.values(), strict=True)), strict=True))
    print(f"Experiments until the champion is within {TARGET:.0%} of the way from the baseline's")
    print(f"loss to the optimum's (cap {args.cap}): median [quartiles] seeds-reached, over")
    print(
        f"{args.seeds} seeds; then the mean seconds a run took. tpe and gp: "
        + ("with quadratic steps (the default)." if args.quadratic else "the samplers alone.")
    )
    defaults = ", ".join(f"{p.name} {default_sampler(p)}" for p in PROBLEMS)
    print(f"optuna's default sampler (auto): {defaults}.\n")
    print(f"{'study':12}" + "".join(f"{n:>26}" for n in names))
    lines = []
    for i, problem in enumerate(PROBLEMS):
        cells, medians = [], {}
        for name in names:
            runs = [done[i, name, seed] for seed in range(args.seeds)]
            reached = [r for r, _ in runs]
            medians[name] = float(np.median([args.cap if r is None else r for r in reached]))
            seconds = statistics.fmean(t for _, t in runs)
            cells.append(f"{summary(reached, args.cap)} {seconds:4.1f}s")
        print(f"{problem.name:12}" + "".join(f"{c:>26}" for c in cells))
        lines.append(verdicts(problem, medians))
    print("\n" + "\n".join(lines))
    print("\nSearch strategies and a scripted model (bench/strategies.py):")
    studies = ["deceptive"] if args.smoke else STRATEGY_STUDIES
    strategies.table(args.seeds, strategies.SMOKE["cap"] if args.smoke else 40, studies, args.jobs)
    print(f"\n{time.perf_counter() - began:.0f} s in all, {args.jobs} processes")


if __name__ == "__main__":
    main()
