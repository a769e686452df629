"""Search strategies compared: greedy, tree and islands, on a smooth, a deceptive, a plateau and a
noisy study, each proposer and seed in an in-process lab that keeps every node's files.

Figures: experiments to reach the optimum (within 1% of the way from the start), median and
range over seeds, capped (`cap+`: never). The `step` proposer stands in for a model that edits
locally (one step from the files it is shown, never a value tried); `mutate` is ours. A row is
kept as the study's threshold rule says; the next candidate's parent is core.search's choice.

    .venv/bin/python bench/strategies.py            # 10 seeds, 40 experiments at most
    .venv/bin/python bench/strategies.py --smoke    # 2 seeds, 25 at most
"""

from __future__ import annotations

import argparse
import math
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bench package, run as a script

from bench._common import parse_args  # noqa: E402
from core.ledger import Champion, Row, Status  # noqa: E402
from core.rules.base import AnyDecision, Arms  # noqa: E402
from core.search import Search  # noqa: E402
from core.study import AnyEvaluator, MetricConfig, SearchConfig, Study, StudyConfig  # noqa: E402
from proposers.base import Context, InvalidProposal, Learned, Proposal, Proposer  # noqa: E402
from proposers.mutate import MutateConfig, MutateProposer  # noqa: E402

PATH = "study/solution.py"
SMOKE = {"seeds": 2, "cap": 25}
STRATEGIES = {
    "greedy": SearchConfig(),
    "tree": SearchConfig(strategy="tree", exploration=1.0),
    "islands": SearchConfig(strategy="islands", islands=3, migrate_every=6),
}


@dataclass(frozen=True)
class Problem:
    name: str
    loss: Callable[[float], float]  # of X; 0 at the optimum
    start: float
    noise: float = 0.0


def deceptive(x: float) -> float:
    """A local optimum at 2 (loss 1); past a ridge a little worse (3, 4), the global one at 8."""
    near = {0: 3.0, 1: 2.0, 2: 1.0, 3: 1.04, 4: 1.08, 5: 0.5, 6: 0.3, 7: 0.1, 8: 0.0}
    return near.get(round(x), 0.2 + abs(x - 8) / 10) + abs(x - round(x))


def plateau(x: float) -> float:
    """Flat from 2 to 4: a step of no gain is needed before the gain."""
    levels = {0: 3.0, 1: 2.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 0.5, 6: 0.0}
    return levels.get(round(x), 0.2 * abs(x - 6)) + abs(x - round(x))


PROBLEMS = [
    Problem("smooth", lambda x: abs(x - 6.0), 0.0),
    Problem("deceptive", deceptive, 0.0),
    Problem("plateau", plateau, 0.0),
    Problem("noisy", lambda x: abs(x - 6.0), 0.0, noise=0.05),
]


class Step:
    """One step from the files it is shown: X + 1, else X - 1; never a value tried."""

    name = "step"

    def propose(self, context: Context) -> Proposal:
        x = int(float(re.search(r"X = (\S+)", context.files[PATH]).group(1)))  # type: ignore[union-attr]
        for new in (x + 1, x - 1):
            if 0 <= new <= 12 and f"X={new}" not in context.tried:
                return Proposal(f"X {x} -> {new}", {PATH: f"X = {new}\n"}, self.name, f"X={new}")
        raise InvalidProposal(f"both neighbours of X = {x} were tried")

    def learn(self, context: Context, outcome: object) -> Learned:
        return Learned()


def study() -> Study:
    config = StudyConfig(
        name="strategies",
        editable=["solution.py"],
        evaluator=AnyEvaluator(kind="command"),
        metric=MetricConfig(name="loss", direction="minimize", decision=AnyDecision()),
    )
    return Study(config, Path("/bench/study"), Path("/bench"))


class TreeLab:
    """A lab in process that keeps every node's files, so that any node can be built on."""

    def __init__(self, problem: Problem, search: SearchConfig, seed: int) -> None:
        self.problem, self.study = problem, study()
        self.search = Search(search, "minimize")
        self.rng = random.Random(seed)
        files = {PATH: f"X = {problem.start}\n"}
        self.files = {"c000001": files}
        self.rows = [Row(1, Status.KEEP, "baseline", "c000001", self.measure(files))]

    def measure(self, files: dict[str, str]) -> float:
        x = float(re.search(r"X = (\S+)", files[PATH]).group(1))  # type: ignore[union-attr]
        return self.problem.loss(x) + self.rng.gauss(0, self.problem.noise)

    def truth(self, row: Row) -> float:
        return self.problem.loss(
            float(re.search(r"X = (\S+)", self.files[row.commit][PATH]).group(1))
        )  # type: ignore[union-attr]  # noqa: E501

    def step(self, proposer: Proposer) -> Row:
        n = len(self.rows) + 1
        champ = next(r for r in reversed(self.rows) if r.kept)
        parent = self.search.parent(
            self.rows, Champion(champ.commit, champ.metric, champ.experiment), [], n
        )
        context = Context(self.study, "", dict(self.files[parent]), [], list(self.rows), "", None,
                          n, Path("."), tried={r.key for r in self.rows if r.key})  # fmt: skip
        try:
            proposal = proposer.propose(context)
        except InvalidProposal as exc:
            row = Row(n, Status.INVALID, str(exc), parent=parent)
        else:
            files = self.files[parent] | proposal.files
            metric, commit = self.measure(files), f"c{n:06d}"
            self.files[commit] = files
            verdict = self.study.rule.decide(Arms([champ.metric], [metric]))
            row = Row(n, Status(verdict.status), proposal.hypothesis, commit, metric,
                      proposer=proposal.proposer, key=proposal.key, parent=parent)  # fmt: skip
        self.rows.append(row)
        return row


def reach(problem: Problem, strategy: str, proposer: str, seed: int, cap: int) -> int | None:
    """Experiments until the champion is within 1% of the way to the optimum (None: never)."""
    lab = TreeLab(problem, STRATEGIES[strategy], seed)
    start = problem.loss(problem.start)
    researcher: Proposer = Step() if proposer == "step" else MutateProposer(MutateConfig(), seed)
    for n in range(2, cap + 1):
        row = lab.step(researcher)
        if row.kept and lab.truth(row) <= 0.01 * start:
            return n
    return None


def cell(found: list[int | None], cap: int) -> str:
    values = [v if v is not None else math.inf for v in found]
    median = statistics.median(values)
    shown = f"{median:g}" if math.isfinite(median) else f"{cap}+"
    hits = [v for v in found if v is not None]
    spread = f"[{min(hits)}-{max(hits)}]" if hits else "[-]"
    return f"{shown} {spread} {len(hits)}/{len(found)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--cap", type=int, default=40)
    args = parse_args(parser, SMOKE)
    started = time.perf_counter()
    print(f"experiments to the optimum: median [range] reached/seeds, capped at {args.cap}")
    print(f"{'study':<10} {'proposer':<8} " + " ".join(f"{s:<18}" for s in STRATEGIES))
    for problem in PROBLEMS:
        for proposer in ("step", "mutate"):
            cells = [
                cell(
                    [reach(problem, s, proposer, seed, args.cap) for seed in range(args.seeds)],
                    args.cap,
                )  # fmt: skip
                for s in STRATEGIES
            ]
            print(f"{problem.name:<10} {proposer:<8} " + " ".join(f"{c:<18}" for c in cells))
    print(f"{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
