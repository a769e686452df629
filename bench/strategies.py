"""Search strategies compared: greedy, tree and islands, on a smooth, a deceptive, a plateau and a
noisy study, each researcher and seed in an in-process lab that keeps every node's files.

Figures: experiments to reach the optimum (within 1% of the way from the start), median and
range over seeds, capped (`cap+`: never), and what the model cost. The researchers:

- `step` stands in for a model that edits locally: one step from the files it is shown, never
  a value tried;
- `model` is the real Claude proposer (the anthropic client, its prompt, its novelty checks and
  its learnings) talking to the loopback Messages API emulator, which answers from a fixed tree
  of ideas: from each X its two neighbours, the order drawn by the seed, never one it has read
  of in the request; priced as claude-sonnet-4-6;
- `mutate` is ours; `portfolio` is the model and mutate behind one researcher (its UCB draw on
  gain per cost, each experiment's evaluation priced at EVAL_S seconds).

A row is kept as the study's threshold rule says; the next candidate's parent is
core.search's choice. bench/search.py prints this table after its own.

    .venv/bin/python bench/strategies.py [--seeds 10] [--cap 40] [--studies smooth,...] [--jobs N]
    .venv/bin/python bench/strategies.py --smoke    # 1 seed, 15 at most, deceptive and plateau
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bench package, run as a script

from bench._common import parse_args  # noqa: E402
from core.ledger import Champion, Row, Status  # noqa: E402
from core.rules.base import AnyDecision, Arms  # noqa: E402
from core.search import Search  # noqa: E402
from core.study import AnyEvaluator, MetricConfig, SearchConfig, Study, StudyConfig  # noqa: E402
from proposers import novelty  # noqa: E402
from proposers.base import Context, InvalidProposal, Learned, Outcome, Proposal, Proposer  # noqa: E402
from proposers.claude import ClaudeConfig, ClaudeProposer  # noqa: E402
from proposers.mutate import MutateConfig, MutateProposer  # noqa: E402
from proposers.portfolio import PortfolioConfig, PortfolioProposer  # noqa: E402
from tests.emulators.anthropic_api import FILE_RE, AnthropicEmulator, Reply, edit, propose  # noqa: E402

PATH = "study/solution.py"
SMOKE = {"seeds": 1, "cap": 15, "studies": "deceptive,plateau"}
MODEL = "claude-sonnet-4-6"
EVAL_S = 60.0  # an experiment's evaluation, as the portfolio prices it (usd_per_hour 1)
RESEARCHERS = ("step", "model", "mutate", "portfolio")
STRATEGIES = {
    "greedy": SearchConfig(),
    "tree": SearchConfig(strategy="tree"),  # its defaults
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


def x_of(files: dict[str, str]) -> float:
    return float(re.search(r"X = (\S+)", files[PATH]).group(1))  # type: ignore[union-attr]


def neighbours(x: int, seed: int) -> list[int]:
    """X's two ideas in the seed's order for this X, those in range."""
    ideas = [x + 1, x - 1]
    random.Random(f"{seed}:{x}").shuffle(ideas)
    return [v for v in ideas if 0 <= v <= 12]


class Step:
    """One step from the files it is shown (the seed's neighbour first); never a value tried."""

    name = "step"

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def propose(self, context: Context) -> Proposal:
        x = int(x_of(context.files))
        for new in neighbours(x, self.seed):
            if f"X={new}" not in context.tried:
                return Proposal(f"X {x} -> {new}", {PATH: f"X = {new}\n"}, self.name, f"X={new}")
        raise InvalidProposal(f"both neighbours of X = {x} were tried")

    def learn(self, context: Context, outcome: object) -> Learned:
        return Learned()


def request_text(body: dict[str, Any]) -> str:
    """Everything the request says in its messages (text, tool calls and results)."""
    out: list[str] = []
    for message in body["messages"]:
        content = message["content"]
        blocks = [{"text": content}] if isinstance(content, str) else content
        for block in blocks:
            inner = block.get("content", block.get("text", ""))
            if block.get("type") == "tool_use":  # its own proposal, refused since
                inner = json.dumps(block["input"])
            out += [inner] if isinstance(inner, str) else [b.get("text", "") for b in inner]
    return "\n".join(out)


class ScriptedModel:
    """The emulator's answers to `propose_change`: the next idea of X's node (its neighbours, in
    the seed's order), skipping those the request mentions (tried, or refused just now).
    Learnings are the emulator's own (auto)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, body: dict[str, Any]) -> Reply | None:
        text = request_text(body)
        if "write_learnings" in text.rsplit("<file path=", 1)[-1]:
            return None
        shown = {path: body for path, body in FILE_RE.findall(text)}
        line = next(ln for ln in shown[PATH].splitlines() if ln.startswith("X = "))
        x = int(x_of({PATH: line}))
        heard = {int(v) for v in re.findall(r"set X to (\d+)", text)}
        ideas = neighbours(x, self.seed)
        new = next((v for v in ideas if v not in heard), ideas[0])
        why = f"set X to {new}: one step {'up' if new > x else 'down'} from {x}"
        return propose(why, [edit(PATH, line, f"X = {new}")])


def study() -> Study:
    config = StudyConfig(
        name="strategies",
        editable=["solution.py"],
        evaluator=AnyEvaluator(kind="command"),
        metric=MetricConfig(name="loss", direction="minimize", decision=AnyDecision()),
    )
    return Study(config, Path("/bench/study"), Path("/bench"))


class TreeLab:
    """A lab in process that keeps every node's files, so that any node can be built on; what
    was tried reaches the researcher as the lab's briefing hands it (keys, normalised changes)."""

    def __init__(self, problem: Problem, search: SearchConfig, seed: int) -> None:
        self.problem, self.study = problem, study()
        self.search = Search(search, "minimize")
        self.rng = random.Random(seed)
        files = {PATH: f"X = {problem.start:g}\n"}
        self.files = {"c000001": files}
        self.rows = [Row(1, Status.KEEP, "baseline", "c000001", self.measure(files))]
        self.usd = 0.0

    def measure(self, files: dict[str, str]) -> float:
        return self.problem.loss(x_of(files)) + self.rng.gauss(0, self.problem.noise)

    def truth(self, row: Row) -> float:
        return self.problem.loss(x_of(self.files[row.commit]))

    def tried(self) -> list[novelty.Tried]:
        out = []
        for r in self.rows:
            if r.commit in self.files:
                files, base = self.files[r.commit], self.files[r.parent or r.commit]
                fp, change = novelty.fingerprint(files), novelty.changes(base, files)
                out.append(
                    novelty.Tried(r.experiment, r.status, r.metric, r.description, fp, change)
                )
        return out

    def context(self, parent: str) -> Context:
        node = next(r for r in self.rows if r.commit == parent)
        return Context(self.study, "Minimize the loss by changing X.", dict(self.files[parent]),
                       [], list(self.rows), "", None, len(self.rows) + 1, Path("."),
                       tried={r.key for r in self.rows if r.key}, node=node,
                       tried_changes=self.tried())  # fmt: skip

    def step(self, researcher: Proposer) -> Row:
        n = len(self.rows) + 1
        champ = next(r for r in reversed(self.rows) if r.kept)
        best = Champion(champ.commit, champ.metric, champ.experiment)
        parent = self.search.parent(self.rows, best, [], n)
        context = self.context(parent)
        try:
            proposal = researcher.propose(context)
        except InvalidProposal as exc:
            self.usd += exc.cost_usd
            row = Row(n, Status.INVALID, str(exc), parent=parent, cost_usd=exc.cost_usd)
            self.rows.append(row)
            return row
        files = self.files[parent] | proposal.files
        metric, commit = self.measure(files), f"c{n:06d}"
        self.files[commit] = files
        status = Status(self.study.rule.decide(Arms([champ.metric], [metric])).status)
        outcome = Outcome(proposal, status.value, metric, champ.metric, "")
        usd = proposal.cost_usd + researcher.learn(context, outcome).cost_usd
        self.usd += usd
        row = Row(n, status, proposal.hypothesis, commit, metric, proposer=proposal.proposer,
                  key=proposal.key, parent=parent, cost_usd=usd, duration_s=EVAL_S)  # fmt: skip
        self.rows.append(row)
        return row


def researcher(name: str, seed: int, url: str) -> Proposer:
    model = ClaudeConfig(model=MODEL, base_url=url, timeout_s=30)
    if name == "step":
        return Step(seed)
    if name == "model":
        return ClaudeProposer(model, api_key=os.environ["ANTHROPIC_API_KEY"])
    if name == "mutate":
        return MutateProposer(MutateConfig(), seed)
    members = [{"kind": "claude", **model.model_dump()}, {"kind": "mutate"}]
    return PortfolioProposer(PortfolioConfig(members=members, seed=seed))


@contextmanager
def emulated_model(seed: int) -> Iterator[str]:
    """The Messages API emulator as the scripted model of this seed: its URL."""
    with AnthropicEmulator(auto=True, responder=ScriptedModel(seed)) as emulator:
        yield emulator.url


@dataclass(frozen=True)
class Reached:
    experiments: int | None  # None: never, within the cap
    usd: float


def reach(problem: Problem, strategy: str, name: str, seed: int, cap: int) -> Reached:
    """Experiments until the champion is within 1% of the way to the optimum, and the dollars."""
    lab = TreeLab(problem, STRATEGIES[strategy], seed)
    start = problem.loss(problem.start)
    with emulated_model(seed) as url:
        proposer = researcher(name, seed, url)
        for n in range(2, cap + 1):
            row = lab.step(proposer)
            if row.kept and lab.truth(row) <= 0.01 * start:
                return Reached(n, lab.usd)
    return Reached(None, lab.usd)


def cell(found: list[Reached], cap: int) -> str:
    values = [r.experiments if r.experiments is not None else math.inf for r in found]
    median = statistics.median(values)
    shown = f"{median:g}" if math.isfinite(median) else f"{cap}+"
    hits = [v for v in values if math.isfinite(v)]
    spread = f"[{min(hits):g}-{max(hits):g}]" if hits else "[-]"
    usd = statistics.median(r.usd for r in found)
    return f"{shown} {spread} {len(hits)}/{len(found)}" + (f" ${usd:.2f}" if usd else "")


def reach_in_worker(study: str, strategy: str, name: str, seed: int, cap: int) -> Reached:
    """One climb in a worker process (the model's key is the bench's own)."""
    os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-bench-scripted-model-0000")
    return reach(next(p for p in PROBLEMS if p.name == study), strategy, name, seed, cap)


def table(seeds: int, cap: int, studies: list[str], jobs: int) -> None:
    """The figures: a row per study and researcher, a column per strategy."""
    runs = [
        (study, strategy, name, seed, cap)
        for study in studies
        for name in RESEARCHERS
        for strategy in STRATEGIES
        for seed in range(seeds)
    ]
    with ProcessPoolExecutor(jobs) as pool:
        done = dict(zip(runs, pool.map(reach_in_worker, *zip(*runs, strict=True)), strict=True))
    print(f"experiments to the optimum: median [range] reached/seeds, capped at {cap}; the")
    print(f"model's median dollars ({MODEL}'s prices)")
    print(f"{'study':<10} {'proposer':<9} " + " ".join(f"{s:<24}" for s in STRATEGIES))
    for study in studies:
        for name in RESEARCHERS:
            cells = [
                cell([done[study, s, name, seed, cap] for seed in range(seeds)], cap)
                for s in STRATEGIES
            ]
            print(f"{study:<10} {name:<9} " + " ".join(f"{c:<24}" for c in cells))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--cap", type=int, default=40)
    parser.add_argument("--studies", default=",".join(p.name for p in PROBLEMS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    return parse_args(parser, SMOKE)


def main() -> None:
    args = arguments()
    started = time.perf_counter()
    table(args.seeds, args.cap, args.studies.split(","), args.jobs)
    print(f"{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
