"""The fixed scoring harness of the forecast study (protected: candidates cannot change it).

Walk-forward evaluation: at every month of a span, forecast.predict() sees a copy of the series
up to (not including) that month and forecasts up to HORIZON months ahead; forecasts are scored
against the actual values inside the span only. The metric is the RMSE over all those forecasts,
in ppmv of CO2.

    python evaluate.py             # validation span, prints `rmse: <number>`
    python evaluate.py --quick     # its last two years (a third of the forecasts): the screen
    python evaluate.py --holdout   # later span kept aside, prints `holdout_rmse: <number>`

This process never imports forecast.py. It starts a child process (`--child`, see
evaluators/isolate.py) that imports it, calls predict() at every origin and writes the raw
forecasts to a JSON file; the child's output is re-printed behind `| `. This process then checks
those forecasts (one list of the right length per origin, finite numbers) and computes the RMSE
itself, from its own copy of the data, after the child and anything it started are dead.

Before anything runs, forecast.py is read and refused if it imports modules beyond plain numeric
ones or touches files, builtins such as open/eval, or dunder attributes: the formula must work
from the history it is given, never peek at the CSV's future rows. This is a guard against
leakage, not a sandbox.
"""

from __future__ import annotations

import argparse
import ast
import csv
import importlib.util
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from evaluators.isolate import ResultError, open_result, run_child

if TYPE_CHECKING:
    import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "co2_monthly.csv"
FORMULA = HERE / "forecast.py"
HORIZON = 12
VALIDATION = ("1990-01", "1995-12")
HOLDOUT = ("1996-01", "2001-12")
QUICK = ("1994-01", "1995-12")  # the screen: the validation span's last two years
CHILD_TIMEOUT_S = 50.0  # study.yaml kills the whole evaluation at 60 s
RESULT = "forecasts.json"
MAX_RESULT_BYTES = 5_000_000

ALLOWED_IMPORTS = {
    "__future__",
    "collections",
    "dataclasses",
    "functools",
    "itertools",
    "math",
    "numpy",
    "pandas",
    "statistics",
    "typing",
}
FORBIDDEN_NAMES = {
    "__import__",
    "breakpoint",
    "compile",
    "eval",
    "exec",
    "getattr",
    "globals",
    "input",
    "locals",
    "open",
    "setattr",
    "vars",
}
FORBIDDEN_ATTR_PREFIXES = (
    "DataSource",
    "fromfile",
    "fromregex",
    "genfromtxt",
    "load",
    "memmap",
    "open",
    "read_",
)

Predict = Callable[["pd.Series", int], object]


class EvaluationError(Exception):
    """A candidate that cannot be scored; the message names the file and the problem."""


def read_rows() -> tuple[list[str], list[float]]:
    """The CSV's months ("YYYY-MM") and CO2 values, without pandas (this process stays light)."""
    with DATA.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["date"] for r in rows], [float(r["co2"]) for r in rows]


def origins(months: list[str], span: tuple[str, str]) -> list[tuple[int, int]]:
    """(origin index, forecasts scored) for every month of span, truncated at the span's end."""
    first, last = months.index(span[0]), months.index(span[1])
    return [(o, min(HORIZON, last + 1 - o)) for o in range(first, last + 1)]


# The static check (this process) ------------------------------------------------------------


def _import_root(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [(node.module or "").split(".")[0]] if node.level == 0 else ["."]
    return [alias.name.split(".")[0] for alias in node.names]


def check_source(path: Path) -> None:
    """Refuse a formula that could read data other than the history it is handed."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            bad = [m for m in _import_root(node) if m not in ALLOWED_IMPORTS]
            if bad:
                raise EvaluationError(f"{where}: import of {bad[0]!r} is not allowed")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            raise EvaluationError(f"{where}: use of {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("__") or node.attr.startswith(FORBIDDEN_ATTR_PREFIXES):
                raise EvaluationError(f"{where}: attribute {node.attr!r} is not allowed")


# The child: runs the candidate, writes raw forecasts ------------------------------------------


def load_series() -> pd.Series:
    """The monthly CO2 series indexed by month start."""
    import pandas as pd

    frame = pd.read_csv(DATA)
    index = pd.DatetimeIndex(pd.to_datetime(frame["date"], format="%Y-%m"), freq="MS")
    return pd.Series(frame["co2"].to_numpy(dtype=float), index=index, name="co2")


def load_formula(path: Path) -> Predict:
    """Import forecast.py and return its predict()."""
    spec = importlib.util.spec_from_file_location("forecast", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    predict = getattr(module, "predict", None)
    if not callable(predict):
        raise EvaluationError(f"{path.name}: no function predict(history, horizon)")
    return predict


def as_floats(values: object, n: int, origin: str) -> list[float]:
    """Exactly n finite floats; a short, non-numeric or non-finite answer is an error."""
    try:
        out = [float(v) for v in list(values)[:n]]  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"predict() at {origin} returned non-numbers: {exc}") from None
    if len(out) != n:
        raise EvaluationError(f"predict() at {origin} returned {len(out)} values, need {n}")
    if not all(math.isfinite(v) for v in out):
        raise EvaluationError(f"predict() at {origin} returned NaN or infinity")
    return out


def child(folder: Path, span: tuple[str, str]) -> None:
    """Forecast at every origin of span (each seeing a copy of the history before it)."""
    series = load_series()
    predict = load_formula(FORMULA)
    months = [f"{t:%Y-%m}" for t in series.index]
    forecasts = [
        as_floats(predict(series.iloc[:o].copy(deep=True), n), n, months[o])
        for o, n in origins(months, span)
    ]
    (folder / RESULT).write_text(json.dumps(forecasts))


# This process: checks the forecasts and scores them -------------------------------------------


def read_forecasts(folder: Path, plan: list[tuple[int, int]], months: list[str]) -> list[list]:
    """The child's forecasts, refused unless there are n finite numbers for every origin."""
    with open_result(folder / RESULT, MAX_RESULT_BYTES) as handle:
        try:
            forecasts = json.loads(handle.read())
        except ValueError as exc:
            raise ResultError(f"{RESULT}: not JSON: {exc}") from None
    if not isinstance(forecasts, list) or len(forecasts) != len(plan):
        raise ResultError(f"{RESULT}: expected a list of {len(plan)} forecasts")
    for values, (o, n) in zip(forecasts, plan, strict=True):
        ok = isinstance(values, list) and len(values) == n
        ok = ok and all(type(v) is float and math.isfinite(v) for v in values)
        if not ok:
            raise ResultError(f"{RESULT}: the forecast at {months[o]} is not {n} finite numbers")
    return forecasts


def errors_of(forecasts: list[list], plan: list[tuple[int, int]], actual: list[float]) -> list:
    """Forecast minus actual, for every forecast of every origin."""
    return [
        f - a
        for values, (o, n) in zip(forecasts, plan, strict=True)
        for f, a in zip(values, actual[o : o + n], strict=True)
    ]


def score(span: tuple[str, str], flags: list[str]) -> list[float]:
    """Run the candidate in a child process, then compute the errors here."""
    check_source(FORMULA)
    months, actual = read_rows()
    plan = origins(months, span)
    with tempfile.TemporaryDirectory(prefix="forecast-eval-") as tmp:
        argv = [sys.executable, str(HERE / "evaluate.py"), "--child", tmp]
        code = run_child(argv + flags, HERE, CHILD_TIMEOUT_S)
        if code is None:
            raise EvaluationError(f"the forecasting process ran past {CHILD_TIMEOUT_S:g} s")
        if code != 0:
            raise EvaluationError(f"the forecasting process failed with exit code {code}")
        forecasts = read_forecasts(Path(tmp), plan, months)
    return errors_of(forecasts, plan, actual)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", action="store_true", help="score the held-out later span")
    parser.add_argument("--quick", action="store_true", help="score the last two years only")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    span, name = (HOLDOUT, "holdout_rmse") if args.holdout else (VALIDATION, "rmse")
    span = QUICK if args.quick else span
    flags = ["--holdout"] * args.holdout + ["--quick"] * args.quick
    try:
        if args.child:
            child(args.child, span)
            return 0
        errors = score(span, flags)
    except (EvaluationError, ResultError, SyntaxError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rmse = math.sqrt(sum(e * e for e in errors) / len(errors))
    mae = sum(abs(e) for e in errors) / len(errors)
    prefix = "holdout_" if args.holdout else ""
    print(f"span: {span[0]}..{span[1]}, horizon {HORIZON}, {len(errors)} forecasts")
    print(f"{name}: {rmse:.6f}")
    print(f"{prefix}mae: {mae:.6f}")
    print(f"eval_seconds: {time.perf_counter() - started:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
