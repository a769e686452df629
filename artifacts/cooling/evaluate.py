"""The fixed evaluator of the example: RMSE of model.predict on held-out measurements.

Protected: the researcher may not change it. data/train.csv (every fourth minute of the first
hour) is there to look at; the score comes from scoring/valid.csv (the minutes between those,
and all of the second hour), so a model must both fit the start and extrapolate. Scoring the
first hour too pins the pouring temperature: with the second hour alone, a single exponential
fits as well from 341 degrees C as from 90.

The candidate's model runs in a child process (`--child`) that is handed the minutes only and
writes its predictions; scoring/ is private to this process (run_child shows the child an
empty folder there), so the child cannot read the temperatures it is scored on. The score is
computed here, where no candidate code runs, and printed last.
"""

import csv
import json
import math
import sys
import tempfile
from pathlib import Path

from evaluators.isolate import run_child

HERE = Path(__file__).resolve().parent
SCORING = HERE / "scoring"  # what the score is computed on: never shown to the child

if sys.argv[1:2] == ["--child"]:  # the candidate's side: predictions, nothing else
    import model

    folder = Path(sys.argv[2])
    minutes = json.loads((folder / "minutes.json").read_text())
    (folder / "predictions.json").write_text(json.dumps([model.predict(m) for m in minutes]))
    sys.exit(0)

rows = list(csv.DictReader((SCORING / "valid.csv").open()))
with tempfile.TemporaryDirectory() as tmp:
    (Path(tmp) / "minutes.json").write_text(json.dumps([float(r["minute"]) for r in rows]))
    argv = [sys.executable, __file__, "--child", tmp]
    code = run_child(argv, HERE, timeout_s=20, writable=[Path(tmp)], private=[SCORING])
    try:
        predictions = [float(p) for p in json.loads((Path(tmp) / "predictions.json").read_text())]
        assert code == 0 and len(predictions) == len(rows)
    except (OSError, ValueError, TypeError, AssertionError):
        sys.exit(f"model.predict failed or gave no prediction per row (exit code {code})")

errors = [p - float(r["temp_c"]) for p, r in zip(predictions, rows, strict=True)]
if not all(math.isfinite(e) for e in errors):
    sys.exit("model.predict returned a value that is not a finite number")
print(f"max_abs_error: {max(abs(e) for e in errors):.6f}")
print(f"rmse: {math.sqrt(sum(e * e for e in errors) / len(errors)):.6f}")
