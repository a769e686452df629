"""The fixed evaluator of the example: RMSE of model.predict on held-out measurements.

Protected: the researcher may not change it. data/train.csv (the first hour) is there to look
at; the score comes from data/valid.csv (the second hour), so a model must extrapolate.

The candidate's model runs in a child process that only returns predictions; the score is
computed here, where no candidate code runs, and printed last.
"""

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
PREDICT = (
    "import json, sys, model; print(json.dumps([model.predict(m) for m in json.load(sys.stdin)]))"
)

rows = list(csv.DictReader((HERE / "data" / "valid.csv").open()))
minutes = [float(r["minute"]) for r in rows]
child = subprocess.Popen(
    [sys.executable, "-c", PREDICT], cwd=HERE, text=True, start_new_session=True,
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
)  # fmt: skip
try:
    out, _ = child.communicate(json.dumps(minutes), timeout=20)
finally:
    try:
        os.killpg(child.pid, signal.SIGKILL)  # nothing of the candidate's outlives this line
    except ProcessLookupError:
        pass
lines = out.strip().splitlines()
for line in lines[:-1]:
    print("|", line)  # the model's own output, never read as a metric
try:
    predictions = [float(p) for p in json.loads(lines[-1])]
    assert child.returncode == 0 and len(predictions) == len(rows)
except (IndexError, ValueError, TypeError, AssertionError):
    print("|", "\n| ".join(lines[-20:]))
    sys.exit(f"model.predict failed or returned no prediction per row (exit {child.returncode})")

errors = [p - float(r["temp_c"]) for p, r in zip(predictions, rows, strict=True)]
if not all(math.isfinite(e) for e in errors):
    sys.exit("model.predict returned a value that is not a finite number")
print(f"max_abs_error: {max(abs(e) for e in errors):.6f}")
print(f"rmse: {math.sqrt(sum(e * e for e in errors) / len(errors)):.6f}")
