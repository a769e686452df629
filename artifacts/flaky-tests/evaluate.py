"""Protected: the evaluator of flaky-tests: how often the whole suite passes.

RUNS runs of test_shop.py, each in an order of its own (drawn here from a seed drawn for each
evaluation), in a child process (run_suite.py) that imports the editable shop.py afresh for
every run. This process never imports shop.py: it reads which tests failed in which run,
counts the runs in which every test passed, and prints `successes`, `trials` and
`pass_rate` (successes / trials) for the beta_binomial rule, with the failures per test and
their first message above them, for the researcher.
"""

from __future__ import annotations

import ast
import json
import random
import secrets
import sys
import tempfile
from pathlib import Path

from evaluators.isolate import ResultError, open_result, run_child

HERE = Path(__file__).resolve().parent
SUITE = HERE / "test_shop.py"
RUNS = 40
TIMEOUT_S = 60.0


def test_names() -> list[str]:
    """The suite's test functions, read from its source (importing it would import shop.py)."""
    tree = ast.parse(SUITE.read_text())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name[:5] == "test_"]


def read_results(folder: Path, names: list[str]) -> list[dict[str, str]]:
    """For each run, the failed tests and their messages; ResultError when malformed."""
    with open_result(folder / "results.json", 10 * 2**20) as handle:
        try:
            results = json.loads(handle.read())
        except ValueError as exc:
            raise ResultError(f"results.json: not JSON: {exc}") from None
    shaped = (
        isinstance(results, list)
        and len(results) == RUNS
        and all(isinstance(run, dict) and set(run) <= set(names) for run in results)
        and all(isinstance(why, str) for run in results for why in run.values())
    )
    if not shaped:
        raise ResultError(f"results.json: expected {RUNS} maps of failed test to message")
    return results


def main() -> int:
    names = test_names()
    seed = secrets.randbits(32)
    orders = [random.Random(seed + i).sample(names, len(names)) for i in range(RUNS)]
    print(f"{len(names)} tests, {RUNS} runs in random orders (seed {seed})")
    with tempfile.TemporaryDirectory(prefix="flaky-tests-") as tmp:
        folder = Path(tmp)
        (folder / "plan.json").write_text(json.dumps({"orders": orders}))
        code = run_child([sys.executable, str(HERE / "run_suite.py"), tmp], HERE, TIMEOUT_S)
        if code != 0:
            why = f"ran past {TIMEOUT_S:g} s" if code is None else f"failed with exit code {code}"
            print(f"error: the test process {why}", file=sys.stderr)
            return 1
        try:
            results = read_results(folder, names)
        except ResultError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    for name in names:
        messages = [run[name] for run in results if name in run]
        if messages:
            print(f"  failed in {len(messages):2d} of {RUNS} runs: {name}: {messages[0]}")
    successes = sum(not run for run in results)
    print(f"successes: {successes}")
    print(f"trials: {RUNS}")
    print(f"pass_rate: {successes / RUNS:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
