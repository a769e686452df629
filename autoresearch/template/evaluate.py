"""The fixed evaluator: prints one number. The researcher cannot change this file.

The candidate's solution runs in a child process that only writes its answers to a file; the
score is computed here, where no candidate code runs, so that nothing the candidate prints or
patches can pass for a score. Keep that shape when you adapt this file to your own study.
"""

import json
import math
import sys
import tempfile
from pathlib import Path

from evaluators.isolate import run_child

HERE = Path(__file__).resolve().parent
INPUTS = [float(x) for x in range(1, 11)]

if sys.argv[1:2] == ["--child"]:  # the candidate's side: answers, nothing else
    import solution

    folder = Path(sys.argv[2])
    (folder / "answers.json").write_text(json.dumps([solution.solve(x) for x in INPUTS]))
    sys.exit(0)

with tempfile.TemporaryDirectory() as tmp:
    code = run_child([sys.executable, __file__, "--child", tmp], HERE, timeout_s=30)
    try:
        answers = [float(a) for a in json.loads((Path(tmp) / "answers.json").read_text())]
        assert code == 0 and len(answers) == len(INPUTS)
    except (OSError, ValueError, TypeError, AssertionError):
        sys.exit(f"solution.solve failed or gave no answer per input (exit code {code})")

if not all(math.isfinite(a) for a in answers):
    sys.exit("solution.solve returned a value that is not a finite number")
error = sum(abs(a - 0.8 * x) for a, x in zip(answers, INPUTS, strict=True))
print(f"score: {-error:.6f}")
