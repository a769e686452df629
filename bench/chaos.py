"""Chaos: SIGKILL the whole `autoresearch run` (evaluators included) at random moments, again
and again, then let one run finish, and check every invariant `autoresearch doctor` checks.

A study with a sub-second evaluator; one Prefect server for the whole bench (a SIGKILL of a run
must not be a SIGKILL of the server it reports to).

    .venv/bin/python bench/chaos.py [--kills 50] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from autoresearch.server import start_server  # noqa: E402
from core.ledger import Ledger  # noqa: E402
from steps import doctor  # noqa: E402
from steps.lab import Lab  # noqa: E402
from steps.plugins import load_study  # noqa: E402

CLI = str(Path(sys.executable).with_name("autoresearch"))
STUDY = """name: chaos
editable: [model.py]
protected: [evaluate.py]
evaluator: {kind: command, command: python evaluate.py, timeout_s: 30}
metric: {name: score, direction: minimize}
proposer: {kind: mutate, seed: 0}
"""
EVALUATE = "import time, model\ntime.sleep(0.3)\nprint(f'score: {abs(model.X - 3.0):.6f}')\n"


def make_study(root: Path) -> Path:
    folder = root / "repo" / "chaos"
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(STUDY)
    (folder / "evaluate.py").write_text(EVALUATE)
    (folder / "model.py").write_text("X = 10.0\nY = 1.0\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "chaos"]):
        subprocess.run(["git", "-C", str(folder.parent), *args], check=True, env=GIT_ENV)
    return folder


GIT_ENV = os.environ | {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def run(folder: Path, env: dict[str, str], experiments: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [CLI, "run", str(folder), "-n", str(experiments), "--proposer", "mutate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the run, its evaluators: one group, killed at once
    )


def rows(folder: Path) -> int:
    return len(Ledger(folder.parent / "runs" / "chaos" / "results.tsv", "score").rows())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_study(Path(tmp))
        server = start_server(Path(tmp) / "prefect-home")
        env = os.environ | {"PREFECT_API_URL": server.api_url, "PREFECT_HOME": str(server.home)}
        try:
            started = time.monotonic()
            for kill in range(1, args.kills + 1):
                proc = run(folder, env, 1000)
                time.sleep(rng.uniform(2.0, 9.0))  # imports take ~2-4 s: kill anywhere after
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                print(f"kill {kill:>3}: {rows(folder):>4} rows", flush=True)
            before = rows(folder)
            final = run(folder, env, 5)
            code = final.wait()
            seconds = time.monotonic() - started
        finally:
            server.stop()
        findings = doctor.examine(Lab(load_study(folder)))  # as the last run left it
        print(f"\nkills {args.kills}, rows before the last run {before}, after {rows(folder)}")
    print(f"the last run exited {code}; {seconds:.0f} s in all")
    for f in findings:
        print(f"  {'ok' if f.ok else 'NO'}  {f.check}{'' if f.ok else ': ' + f.detail}")
    print("every invariant holds" if all(f.ok for f in findings) else "AN INVARIANT FAILED")


if __name__ == "__main__":
    main()
