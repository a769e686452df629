"""Candidates in flight: throughput at parallel 1, 2 and 4, the orchestration's own cost per
experiment, the time to a first experiment, and two workers on their own clones.

A study whose evaluator sleeps 2 s (the `mutate` proposer, so that nothing waits on a model).
Everything runs against one Prefect server of ours (on SQLite); each configuration gets a fresh
copy of the study and its baseline first, so that only experiments are timed.

    .venv/bin/python bench/parallel.py [-n 24] [--worker-n 12]
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

from autoresearch.server import start_server, stop_child  # noqa: E402

CLI = str(Path(sys.executable).with_name("autoresearch"))
SLEEP = "import time, model\ntime.sleep({s})\nprint(f'score: {{abs(model.X - 3.0):.6f}}')\n"
GIT = os.environ | {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


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


def first_experiment(folder: Path, env: dict[str, str], runs: int = 3) -> float:
    """Median wall time of `autoresearch run STUDY -n 1`."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([CLI, "run", str(folder), "-n", "1"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def with_workers(root: Path, experiments: int, env: dict[str, str]) -> float:
    """Seconds for `experiments` experiments measured by two workers, each with its own clone,
    the candidates pushed to a bare remote on this machine."""
    remote = root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    folder = make_study(root, "workers", 2.0, f"parallel: 2\nremote: {remote}\n")
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
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
    try:
        return campaign(folder, experiments, 2)
    finally:
        for proc in workers:
            stop_child(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=24, help="experiments per configuration")
    parser.add_argument("--worker-n", type=int, default=12, help="experiments with workers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = start_server(root / "prefect-home")
        os.environ["PREFECT_API_URL"] = server.api_url
        from prefect.settings import PREFECT_API_URL, temporary_settings

        env = os.environ | {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_HOME": str(server.home)}
        try:
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                walls = {n: campaign(make_study(root, f"p{n}", 2.0), args.n, n) for n in (1, 2, 4)}
                eval_s = evaluator_seconds(root / "p1" / "study")
                quick = make_study(root, "quick", 0.1)
                hot = first_experiment(quick, env)
                cold_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
                cold_env["PREFECT_HOME"] = str(root / "cold-home")
                first_experiment(quick, cold_env, runs=1)  # its database created, once
                cold = first_experiment(quick, cold_env)
                remote = with_workers(root, args.worker_n, env)
                local = walls[1] / args.n * args.worker_n
        finally:
            server.stop()
    print(f"{args.n} experiments of a 2 s evaluator (the process: {eval_s:.2f} s), SQLite server")
    print(f"{'parallel':>9} {'wall s':>8} {'per exp s':>10} {'throughput x':>13} {'target':>8}")
    for n, wall in walls.items():
        ratio = walls[1] / wall
        print(f"{n:>9} {wall:>8.1f} {wall / args.n:>10.2f} {ratio:>13.2f} {0.9 * n:>8.1f}")
    overhead = walls[1] / args.n - eval_s
    print(f"orchestration overhead per experiment at parallel 1: {overhead:.2f} s (target <= 0.5)")
    print(f"`run -n 1` of a 0.1 s evaluator: {cold:.1f} s with a temporary server (target <= 8),")
    print(f"  {hot:.1f} s with a running server (target <= 4)")
    print(f"{args.worker_n} experiments on 2 workers (own clones, a bare remote): {remote:.1f} s,")
    print(f"  against {local:.1f} s on one local slot: {local / remote:.2f}x")


if __name__ == "__main__":
    main()
