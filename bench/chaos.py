"""Chaos: SIGKILL the whole `autoresearch run` (evaluators included) at random moments, again
and again, then let one run finish, and check every invariant `autoresearch doctor` checks.

A study with a sub-second evaluator; one Prefect server for the whole bench (a SIGKILL of a run
must not be a SIGKILL of the server it reports to): the one PREFECT_API_URL names, else ours.
Exits 1 when the last run fails or an invariant does not hold.

    .venv/bin/python bench/chaos.py [--kills 50] [--seed 0] [--final 5]
    .venv/bin/python bench/chaos.py --smoke   # one kill, a last run of 2 experiments
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

from bench._common import parse_args, prefect_server  # noqa: E402
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
GIT_ENV = os.environ | {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}
SMOKE = {"kills": 1, "earliest": 2.0, "latest": 4.0, "final": 2}


def make_study(root: Path) -> Path:
    folder = root / "repo" / "chaos"
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(STUDY)
    (folder / "evaluate.py").write_text(EVALUATE)
    (folder / "model.py").write_text("X = 10.0\nY = 1.0\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "chaos"]):
        subprocess.run(["git", "-C", str(folder.parent), *args], check=True, env=GIT_ENV)
    return folder


def invariants(folder: Path) -> list[doctor.Finding]:
    """What `autoresearch doctor` finds, the study as the last run left it (not repaired):
    every call this bench makes into steps.lab, in one place (the Lab's API moves)."""
    return doctor.examine(Lab(load_study(folder)))


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


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--earliest", type=float, default=2.0, help="seconds before a kill, min")
    parser.add_argument("--latest", type=float, default=9.0, help="seconds before a kill, max")
    parser.add_argument("--final", type=int, default=5, help="experiments of the last run")
    return parse_args(parser, SMOKE)


def main() -> int:
    args = arguments()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_study(Path(tmp))
        with prefect_server(Path(tmp) / "prefect-home"):
            env = dict(os.environ)
            started = time.monotonic()
            for kill in range(1, args.kills + 1):
                proc = run(folder, env, 1000)
                time.sleep(rng.uniform(args.earliest, args.latest))  # imports: ~2-4 s
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                print(f"kill {kill:>3}: {rows(folder):>4} rows", flush=True)
            before = rows(folder)
            code = run(folder, env, args.final).wait()
            seconds = time.monotonic() - started
        findings = invariants(folder)
        print(f"\nkills {args.kills}, rows before the last run {before}, after {rows(folder)}")
    print(f"the last run exited {code}; {seconds:.0f} s in all")
    for f in findings:
        print(f"  {'ok' if f.ok else 'NO'}  {f.check}{'' if f.ok else ': ' + f.detail}")
    held = all(f.ok for f in findings)
    print("every invariant holds" if held else "AN INVARIANT FAILED")
    return 0 if held and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
