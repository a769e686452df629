"""The fixed scoring harness of the forecast study (protected: candidates cannot change it).

Walk-forward evaluation: at every month of a span, forecast.predict() sees a copy of the series
up to (not including) that month and forecasts up to HORIZON months ahead; forecasts are scored
against the actual values inside the span only. The metric is the RMSE over all those forecasts,
in ppmv of CO2.

    python evaluate.py             # validation span, prints `rmse: <number>`
    python evaluate.py --holdout   # later span kept aside, prints `holdout_rmse: <number>`

Before anything runs, forecast.py is read and refused if it imports modules beyond plain numeric
ones or touches files, builtins such as open/eval, or dunder attributes: the formula must work
from the history it is given, never peek at the CSV's future rows. This is a guard against
leakage, not a sandbox.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "co2_monthly.csv"
FORMULA = HERE / "forecast.py"
HORIZON = 12
VALIDATION = ("1990-01", "1995-12")
HOLDOUT = ("1996-01", "2001-12")

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

Predict = Callable[[pd.Series, int], object]


class EvaluationError(Exception):
    """A candidate that cannot be scored; the message names the file and the problem."""


def load_series() -> pd.Series:
    """The monthly CO2 series indexed by month start."""
    frame = pd.read_csv(DATA)
    index = pd.DatetimeIndex(pd.to_datetime(frame["date"], format="%Y-%m"), freq="MS")
    return pd.Series(frame["co2"].to_numpy(dtype=float), index=index, name="co2")


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


def load_formula(path: Path) -> Predict:
    """Import forecast.py after the source check and return its predict()."""
    check_source(path)
    spec = importlib.util.spec_from_file_location("forecast", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    predict = getattr(module, "predict", None)
    if not callable(predict):
        raise EvaluationError(f"{path.name}: no function predict(history, horizon)")
    return predict


def _as_floats(values: object, n: int, origin: pd.Timestamp) -> list[float]:
    """The first n forecasts as floats; a short, non-numeric or non-finite answer is an error."""
    try:
        out = [float(v) for v in list(values)[:n]]  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"predict() at {origin:%Y-%m} returned non-numbers: {exc}") from None
    if len(out) < n:
        raise EvaluationError(f"predict() at {origin:%Y-%m} returned {len(out)} values, need {n}")
    if not all(math.isfinite(v) for v in out):
        raise EvaluationError(f"predict() at {origin:%Y-%m} returned NaN or infinity")
    return out


def walk_forward(series: pd.Series, predict: Predict, span: tuple[str, str]) -> list[float]:
    """Forecast errors for every origin in span, each forecast truncated at the span's end."""
    first = series.index.get_loc(pd.Timestamp(span[0]))
    last = series.index.get_loc(pd.Timestamp(span[1]))
    actual = series.to_numpy()
    errors: list[float] = []
    for origin in range(first, last + 1):
        n = min(HORIZON, last + 1 - origin)
        history = series.iloc[:origin].copy(deep=True)
        forecast = _as_floats(predict(history, n), n, series.index[origin])
        errors.extend(f - a for f, a in zip(forecast, actual[origin : origin + n], strict=True))
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", action="store_true", help="score the held-out later span")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    span, name = (HOLDOUT, "holdout_rmse") if args.holdout else (VALIDATION, "rmse")
    try:
        errors = walk_forward(load_series(), load_formula(FORMULA), span)
    except (EvaluationError, SyntaxError) as exc:
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
