"""Per-experiment orchestration overhead of a campaign, against a plain-Python floor.

A no-op study (the evaluator prints a constant) is hill-climbed by `mutate` under a real Prefect
server. Overhead = (campaign wall time - campaign set-up) / experiments - evaluator time. The floor
does the same write, commit, subprocess and reset in plain Python; its overhead is its time
less its own subprocess's. Then the parts are timed one
by one (an empty flow run, an empty task, our own steps) to name what dominates the difference.

    .venv/bin/python bench/overhead.py [-n 20] [--repeat 10]
    .venv/bin/python bench/overhead.py --sandbox [-n 20]   # only what the sandbox costs (seconds)
    .venv/bin/python bench/overhead.py --smoke             # 1 experiment timed: that it still runs

It reports to the Prefect server PREFECT_API_URL names, else to a temporary one of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import parse_args, prefect_server  # noqa: E402
from core.ledger import Row, Status  # noqa: E402
from core.sandbox import Sandbox  # noqa: E402

STUDY = """name: noop
editable: [model.py]
protected: [evaluate.py]
evaluator: {kind: command, command: python evaluate.py, timeout_s: 30}
metric: {name: score, direction: minimize}
"""
IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}
SMOKE = {"n": 1, "repeat": 1}


class LabParts(NamedTuple):
    """What this bench reads of a study's lab: its steps to time, the sandbox an evaluation
    runs in (None where there is no bubblewrap) and the folder an evaluation runs in."""

    steps: dict[str, Callable[[], object]]
    sandbox: Sandbox | None
    study_dir: Path


def lab_parts(folder: Path) -> LabParts:
    """Every call this bench makes into steps.lab, in one place (the Lab's API moves)."""
    from steps.lab import Lab
    from steps.trial import Trial

    lab = Lab.open(folder)
    lab.sandboxes.choose("mutate")  # as the campaign does: sandboxed where bwrap works
    trial = Trial(99, 1)  # never reserved: the context only reads
    steps = {
        "Lab.open (load study, git, repair)": lambda: Lab.open(folder),
        "context for the proposer": lambda: lab.briefing.context(trial, lab.workspace),
        "persist (ledger append, resource.md)": lambda: lab.records.commit_row(
            Row(1, Status.DISCARD, "timed")
        ),
    }
    return LabParts(steps, lab.sandboxes.of(lab.workspace), lab.workspace.study_dir)


def make_repo(root: Path) -> Path:
    folder = root / "noop"
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(STUDY)
    (folder / "model.py").write_text("A = 1.0\nB = 2.0\nC = 3.0\nD = 4.0\n")
    (folder / "evaluate.py").write_text("print('score: 1.0')\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=os.environ | IDENTITY)
    return folder


def timed(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def evaluator_time(folder: Path, repeat: int) -> float:
    from evaluators import make_evaluator
    from steps.plugins import load_study

    evaluator = make_evaluator(load_study(folder))
    log = Path(tempfile.mkdtemp()) / "e.log"
    return statistics.median(evaluator.evaluate(folder, log).duration_s for _ in range(repeat))


def campaign_seconds(folder: Path, experiments: int) -> float:
    """Wall time of one campaign of `experiments` experiments, the flow run to its end."""
    from flows.campaign import campaign

    start = time.perf_counter()
    asyncio.run(campaign(str(folder), experiments=experiments, proposer="mutate"))
    return time.perf_counter() - start


def sandbox_cost(folder: Path, repeat: int) -> dict[str, float]:
    """The no-op evaluation's median time: unsandboxed, in the sandbox the lab builds (user
    namespace, no capability, limits), and in that sandbox with a network of its own."""
    from dataclasses import replace

    from evaluators.command import clean_env, run_command

    parts = lab_parts(folder)
    log = Path(tempfile.mkdtemp()) / "e.log"
    ways: dict[str, Sandbox | None] = {"unsandboxed": None, "sandboxed": parts.sandbox}
    if parts.sandbox is not None and shutil.which("slirp4netns"):
        ways["sandboxed, with network"] = replace(parts.sandbox, network=True)
    out = {}
    for name, box in ways.items():
        times = []
        for _ in range(repeat):
            code, seconds, text = run_command(
                "python evaluate.py", parts.study_dir, log, 30, clean_env(), sandbox=box
            )
            assert code == 0 and "score:" in text, text
            times.append(seconds)
        out[name] = statistics.median(times)
    return out


def print_sandbox_cost(folder: Path, repeat: int) -> None:
    cost = sandbox_cost(folder, repeat)
    for name, seconds in cost.items():
        extra = seconds - cost["unsandboxed"]
        print(f"no-op evaluation, {name:<24}{seconds * 1000:8.1f} ms  (+{extra * 1000:.1f} ms)")


def floor(folder: Path, repeat: int) -> tuple[float, float]:
    """Write, commit, run the evaluator as a subprocess, reset: the least any loop must do.

    Returns seconds per iteration and, of those, seconds in the evaluator's subprocess.
    """
    import git

    repo = git.Repo(folder.parent)
    model = folder / "model.py"
    base = repo.head.commit.hexsha
    in_subprocess: list[float] = []

    def once() -> None:
        model.write_text(model.read_text().replace("1.0", "1.5"))
        repo.git.add("--", str(model))
        with repo.git.custom_environment(**IDENTITY):
            repo.git.commit("-qm", "candidate")
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "evaluate.py"],
            cwd=folder,
            capture_output=True,
            text=True,
            start_new_session=True,
        )
        in_subprocess.append(time.perf_counter() - start)
        assert "score:" in out.stdout
        repo.git.reset("--hard", base)

    return timed(once, repeat), statistics.fmean(in_subprocess)


def parts(folder: Path, repeat: int) -> dict[str, float]:
    """Time the pieces: Prefect's flow run and task run, and each of our own steps."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(cache_policy=NO_CACHE)
    def empty_task() -> None:
        return None

    @flow
    def empty_flow() -> None:
        return None

    @flow
    def five_tasks() -> None:
        for _ in range(5):
            empty_task()

    @flow
    def outer(n: int) -> dict[str, float]:
        flow_s = timed(empty_flow, n)
        tasks_s = timed(five_tasks, n) - flow_s
        return {"flow run (subflow)": flow_s, "5 task runs": tasks_s}

    out = outer(repeat)
    for name, step in lab_parts(folder).steps.items():
        out[name] = timed(step, repeat)
    return out


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="experiments in the timed campaign")
    parser.add_argument("--repeat", type=int, default=10, help="times each part is timed")
    parser.add_argument("--sandbox", action="store_true", help="time only the sandbox's cost")
    return parse_args(parser, SMOKE)


def main() -> None:
    args = arguments()
    if args.sandbox:
        with tempfile.TemporaryDirectory() as tmp:
            print_sandbox_cost(make_repo(Path(tmp) / "repo"), args.n)
        return

    with tempfile.TemporaryDirectory() as tmp, prefect_server(Path(tmp) / "prefect-home"):
        folder = make_repo(Path(tmp) / "repo")
        eval_s = evaluator_time(folder, args.repeat)
        floor_s, floor_eval_s = floor(make_repo(Path(tmp) / "floor"), args.repeat)

        campaign_seconds(folder, 1)  # the baseline, imports warmed
        one = campaign_seconds(folder, 1)
        many = campaign_seconds(folder, args.n + 1)
        per_experiment = (many - one) / args.n
        breakdown = parts(folder, args.repeat)
        print_sandbox_cost(folder, args.repeat)

    overhead = per_experiment - eval_s
    floor_overhead = floor_s - floor_eval_s
    print(f"experiments timed                 {args.n}")
    print(f"evaluator (no-op subprocess)      {eval_s * 1000:8.1f} ms")
    print(f"campaign, per experiment          {per_experiment * 1000:8.1f} ms")
    print(f"  orchestration overhead          {overhead * 1000:8.1f} ms   (target <= 1500 ms)")
    print(f"plain-Python floor, per iteration {floor_s * 1000:8.1f} ms")
    print(f"  floor overhead                  {floor_overhead * 1000:8.1f} ms")
    print(f"ratio overhead / floor overhead   {overhead / floor_overhead:8.1f} x")
    print("where the difference goes (each timed alone):")
    for name, seconds in sorted(breakdown.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<38}{seconds * 1000:8.1f} ms")
    top = max(breakdown, key=breakdown.__getitem__)
    gap = overhead - floor_overhead
    share = f"{breakdown[top] / gap * 100:.0f}% of the gap" if gap > 0 else "no gap to explain"
    print(f"dominant: {top} ({share})")


if __name__ == "__main__":
    main()
