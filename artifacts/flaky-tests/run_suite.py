"""Protected: one run of the suite, run by evaluate.py as a child process, once per run.

`python run_suite.py DIR` reads DIR/plan.json (the order of the test functions for this run,
and the exit status that will mean "every test passed", both drawn by evaluate.py), deletes it,
and only then imports test_shop.py (and with it the editable shop.py) and runs the tests in that
order, in a process of their own, as a new test process would.

The verdict is the exit status, given with os._exit (taken before shop.py is imported): the
drawn status when no test failed; FAILED, after writing DIR/failures.json (which tests failed
and why, for the log), when some did. So nothing of the candidate runs after the verdict: no
atexit hook, finalizer or thread join; and its own exit, at import or later, says nothing of the
drawn status, which it never had to read. A suite that cannot be imported exits with 2.
"""

import json
import os
import sys
from pathlib import Path

FAILED = 3


def main() -> None:
    exit_now = os._exit  # the candidate may replace os._exit; not this one
    folder = Path(sys.argv[1])
    plan = json.loads((folder / "plan.json").read_text())
    (folder / "plan.json").unlink()
    order, passed = plan.pop("order"), int(plan.pop("pass"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import test_shop as suite
    except BaseException as exc:  # SystemExit too: the suite never ran
        print(f"error: importing the suite: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        exit_now(2)
    failed = {}
    for name in order:
        try:
            getattr(suite, name)()
        except BaseException as exc:  # a test that exits the process fails, and the run goes on
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
    if failed:
        (folder / "failures.json").write_text(json.dumps(failed))
    sys.stdout.flush()
    sys.stderr.flush()
    exit_now(FAILED if failed else passed)


main()
