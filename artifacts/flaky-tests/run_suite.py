"""Protected: the suite runner, run by evaluate.py as a child process.

`python run_suite.py DIR` reads DIR/plan.json (one order of the test functions per run, chosen
by evaluate.py) and runs test_shop.py once per order, each time from freshly imported modules,
as a new test process would. It writes DIR/results.json: for each run, the tests that failed
and why. Which tests pass is this process's word; evaluate.py counts them.
"""

import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

folder = Path(sys.argv[1])
plan = json.loads((folder / "plan.json").read_text())
results = []
for order in plan["orders"]:
    for name in ("shop", "test_shop"):  # a fresh start: no module state from the last run
        sys.modules.pop(name, None)
    suite = importlib.import_module("test_shop")
    failed = {}
    for name in order:
        try:
            getattr(suite, name)()
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
    results.append(failed)
(folder / "results.json").write_text(json.dumps(results))
