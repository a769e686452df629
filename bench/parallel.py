"""Candidates in flight: throughput at parallel 1, 2 and 4, the orchestration's own cost per
experiment, the time to a first experiment, and two workers on their own clones.

A study whose evaluator sleeps 2 s (the `mutate` proposer, so that nothing waits on a model).
Everything runs against one Prefect server (the one PREFECT_API_URL names, else one of ours on
SQLite); each configuration gets a fresh copy of the study and its baseline first, so that only
experiments are timed.

    .venv/bin/python bench/parallel.py [-n 24] [--worker-n 12] [--sleep 2] [--parallel 1,2,4]
    .venv/bin/python bench/parallel.py --smoke   # 2 experiments each; no cold start, no workers
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

from autoresearch.server import stop_child  # noqa: E402
from bench._common import parse_args, prefect_server  # noqa: E402

CLI = str(Path(sys.executable).with_name("autoresearch"))
SLEEP = "import time, model\ntime.sleep({s})\nprint(f'score: {{abs(model.X - 3.0):.6f}}')\n"
GIT = os.environ | {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}
SERVER_SETTINGS = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")  # a client's: URL and login
WORKER_POLL = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
# tiny; no cold start (a server on a fresh database alone takes 10-15 s) and no workers (their
# processes and flow runs take 20 s and more): --smoke --worker-n 2 --cold-runs 1 adds them
SMOKE = {"n": 2, "worker_n": 0, "sleep": 0.2, "parallel": "1,2", "hot_runs": 1, "cold_runs": 0}


def make_study(root: Path, name: str, sleep: float, extra: str = "") -> Path:
    folder = root / name / "study"
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(
        f"name: {name}\neditable: [model.py]\nprotected: [evaluate.py]\n"
        "evaluator: {kind: command, command: python evaluate.py, timeout_s: 60}\n"
        "metric: {name: score, direction: minimize}\nproposer: {kind: mutate}\n" + extra
    )
    (folder / "evaluate.py").write_text(SLEEP.format(s=sleep))
    (folder / "model.py").write_text("X = 10.0\nY = 1.0\nZ = 2.0\nW = 3.0\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(folder.parent), *args], check=True, env=GIT)
    return folder


def campaign(folder: Path, experiments: int, parallel: int = 1) -> float:
    """Seconds for `experiments` experiments, the baseline done before the clock starts."""
    from flows.campaign import campaign as flow

    asyncio.run(flow(str(folder), experiments=1, proposer="mutate"))
    start = time.perf_counter()
    asyncio.run(flow(str(folder), experiments=experiments, proposer="mutate", parallel=parallel))
    return time.perf_counter() - start


def evaluator_seconds(folder: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "evaluate.py"], cwd=folder, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_experiment(folder: Path, env: dict[str, str], runs: int) -> float | None:
    """Median wall time of `autoresearch run STUDY -n 1` (None: not timed)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([CLI, "run", str(folder), "-n", "1"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        times.append(time.perf_counter() - start)
    return statistics.median(times) if times else None


def cold_start(root: Path, folder: Path, env: dict[str, str], runs: int) -> float | None:
    """`run -n 1` with no server to find: it starts a temporary one (its database created once
    first, untimed, as on any machine after the first run)."""
    if not runs:
        return None
    cold_env = {k: v for k, v in env.items() if k not in SERVER_SETTINGS}
    cold_env["PREFECT_HOME"] = str(root / "cold-home")
    first_experiment(folder, cold_env, runs=1)
    return first_experiment(folder, cold_env, runs)


def with_workers(root: Path, experiments: int, sleep: float, env: dict[str, str]) -> float:
    """Seconds for `experiments` experiments measured by two workers, each with its own clone,
    the candidates pushed to a bare remote on this machine."""
    remote = root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    folder = make_study(root, "workers", sleep, f"parallel: 2\nremote: {remote}\n")
    spec = folder / "study.yaml"
    spec.write_text(spec.read_text().replace("timeout_s: 60}", "timeout_s: 60, work_pool: bench}"))
    subprocess.run(["git", "-C", str(folder.parent), "commit", "-qam", "pool"], check=True, env=GIT)
    workers = []
    for name in ("a", "b"):
        clone = root / f"clone-{name}"
        subprocess.run(["git", "clone", "-q", str(folder.parent), str(clone)], check=True)
        workers.append(
            subprocess.Popen(
                [CLI, "worker", "--pool", "bench", "--clone", str(clone)],
                env=env | WORKER_POLL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
    try:
        return campaign(folder, experiments, 2)
    finally:
        for proc in workers:
            stop_child(proc)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=24, help="experiments per configuration")
    parser.add_argument("--worker-n", type=int, default=12, help="experiments with workers")
    parser.add_argument("--sleep", type=float, default=2.0, help="the evaluator's seconds")
    parser.add_argument("--parallel", default="1,2,4", help="candidates in flight, compared")
    parser.add_argument("--hot-runs", type=int, default=3, help="`run -n 1` with our server")
    parser.add_argument("--cold-runs", type=int, default=3, help="`run -n 1` alone (0: none)")
    return parse_args(parser, SMOKE)


def report(args: argparse.Namespace, walls: dict[int, float], eval_s: float) -> None:
    """The throughput table: wall time per configuration against parallel 1's."""
    print(f"{args.n} experiments of a {args.sleep:g} s evaluator (the process: {eval_s:.2f} s)")
    print(f"{'parallel':>9} {'wall s':>8} {'per exp s':>10} {'throughput x':>13} {'target':>8}")
    base = walls[min(walls)]
    for n, wall in walls.items():
        print(f"{n:>9} {wall:>8.1f} {wall / args.n:>10.2f} {base / wall:>13.2f} {0.9 * n:>8.1f}")
    overhead = base / args.n - eval_s
    print(f"orchestration overhead per experiment at parallel {min(walls)}: {overhead:.2f} s "
          "(target <= 0.5)")  # fmt: skip


def seconds(value: float | None) -> str:
    return "not timed" if value is None else f"{value:.1f} s"


def main() -> None:
    args = arguments()
    widths = [int(n) for n in args.parallel.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with prefect_server(root / "prefect-home"):
            env = dict(os.environ)
            walls = {n: campaign(make_study(root, f"p{n}", args.sleep), args.n, n) for n in widths}
            eval_s = evaluator_seconds(root / f"p{widths[0]}" / "study")
            quick = make_study(root, "quick", 0.1)
            hot = first_experiment(quick, env, args.hot_runs)
            cold = cold_start(root, quick, env, args.cold_runs)
            remote = with_workers(root, args.worker_n, args.sleep, env) if args.worker_n else None
    report(args, walls, eval_s)
    print(f"`run -n 1` of a 0.1 s evaluator: {seconds(cold)} with a temporary server (target "
          f"<= 8),\n  {seconds(hot)} with a running server (target <= 4)")  # fmt: skip
    if remote is None:
        print("experiments on 2 workers: not timed (--worker-n 0)")
    else:
        local = walls[min(walls)] / args.n * args.worker_n
        print(f"{args.worker_n} experiments on 2 workers (own clones, a bare remote): "
              f"{remote:.1f} s,\n  against {local:.1f} s on one local slot: "
              f"{local / remote:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
