"""Protected: the evaluator of flaky-tests: how often the whole suite passes.

RUNS runs of test_shop.py, each in an order of its own (drawn here from a seed drawn for each
evaluation), each in a child process of its own (run_suite.py) that imports the editable shop.py
afresh. This process never imports shop.py. A run passed only when its process exited with the
status drawn here for it, which run_suite.py reads and deletes before shop.py is imported, and
gives with os._exit after the last test: no file or output of the child's says whether it
passed, so an atexit hook in shop.py that rewrites a result, or an exit of its own, cannot turn a
failed run into a passed one. It prints `successes`, `trials` and `pass_rate` (successes /
trials) for the beta_binomial rule, with the failures per test and their first message above
them (those, from failures.json, are the child's word, for the researcher only).
"""

from __future__ import annotations

import ast
import json
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

from evaluators.isolate import ResultError, open_result, run_child

HERE = Path(__file__).resolve().parent
SUITE = HERE / "test_shop.py"
RUNS = 40
TIMEOUT_S = 60.0  # for all the runs together
FAILED = 3  # run_suite.py's exit status when a test failed


def test_names() -> list[str]:
    """The suite's test functions, read from its source (importing it would import shop.py)."""
    tree = ast.parse(SUITE.read_text())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name[:5] == "test_"]


def read_failures(folder: Path, names: list[str]) -> dict[str, str]:
    """The failed tests of a run and their messages; ResultError when malformed."""
    with open_result(folder / "failures.json", 2**20) as handle:
        try:
            failures = json.loads(handle.read())
        except ValueError as exc:
            raise ResultError(f"failures.json: not JSON: {exc}") from None
    shaped = (
        isinstance(failures, dict)
        and bool(failures)
        and set(failures) <= set(names)
        and all(isinstance(why, str) for why in failures.values())
    )
    if not shaped:
        raise ResultError("failures.json: expected a map of failed test to message")
    return failures


def run_once(order: list[str], names: list[str], seconds: float) -> dict[str, str]:
    """One run in a process of its own: {} when every test passed, else the failures.

    ResultError when the process crashed, ran past `seconds` or exited with another status.
    """
    with tempfile.TemporaryDirectory(prefix="flaky-tests-") as tmp:
        folder = Path(tmp)
        passed = 10 + secrets.randbelow(90)  # never 0, 1, 2 or FAILED
        (folder / "plan.json").write_text(json.dumps({"order": order, "pass": passed}))
        argv = [sys.executable, "-S", str(HERE / "run_suite.py"), tmp]  # -S: a faster start
        code = run_child(argv, HERE, max(seconds, 0.1), writable=[folder])
        if code == passed:
            return {}
        if code == FAILED:
            return read_failures(folder, names)
    why = "ran past the time left" if code is None else f"exited with status {code}"
    raise ResultError(f"the test process {why}")


def main() -> int:
    names = test_names()
    seed = secrets.randbits(32)
    orders = [random.Random(seed + i).sample(names, len(names)) for i in range(RUNS)]
    print(f"{len(names)} tests, {RUNS} runs in random orders (seed {seed})")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        results = [run_once(order, names, deadline - time.monotonic()) for order in orders]
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
