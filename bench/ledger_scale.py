"""Per-experiment cost of the ledger at 100, 1,000 and 10,000 rows.

An experiment appends one row (one write of one line, with fsync) to the ledger its campaign
keeps open; reading it again costs a stat while the file is unchanged. A process that opens the
study afresh (`autoresearch status`, the first experiment of a run) parses it once.

    .venv/bin/python bench/ledger_scale.py [--sizes 100,1000,10000] [--appends 200]
    .venv/bin/python bench/ledger_scale.py --smoke   # 100 and 1,000 rows, 20 appends
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import parse_args  # noqa: E402
from core.ledger import Ledger, Row, Status  # noqa: E402

SMOKE = {"sizes": "100,1000", "appends": 20}


def row(n: int) -> Row:
    status = Status.KEEP if n % 7 == 0 else Status.DISCARD
    return Row(n, status, f"mutate study/model.py:3:0 0.5 -> {n / 1000:.4g}", "abcdef1", 1 / n)


def prefill(path: Path, n: int) -> Ledger:
    ledger = Ledger(path, "score")
    lines = [ledger.header(), *(ledger.line(row(i)) for i in range(1, n + 1))]
    path.write_text("".join(lines))
    return ledger


def per_experiment(n: int, folder: Path, count: int) -> tuple[float, float, float]:
    """(append, cached read, cold parse) in milliseconds, at a ledger of n rows, the median
    of `count` experiments."""
    ledger = prefill(folder / f"{n}.tsv", n)
    ledger.rows()
    appends, reads = [], []
    for i in range(n + 1, n + 1 + count):
        start = time.perf_counter()
        ledger.append(row(i))
        appends.append(time.perf_counter() - start)
        start = time.perf_counter()
        ledger.champion()  # what an experiment reads: the rows, from memory
        ledger.next_experiment()
        reads.append(time.perf_counter() - start)
    start = time.perf_counter()
    Ledger(ledger.path, "score").rows()
    cold = time.perf_counter() - start
    return 1e3 * statistics.median(appends), 1e3 * statistics.median(reads), 1e3 * cold


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="ledger rows, one line each")
    parser.add_argument("--appends", type=int, default=200, help="experiments timed per size")
    return parse_args(parser, SMOKE)


def main() -> None:
    args = arguments()
    head = f"{'rows':>7} {'append ms':>10} {'read ms':>9} {'cold parse ms':>14}"
    print(f"{head}  (median of {args.appends} experiments)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(size) for size in args.sizes.split(",")):
            append, read, cold = per_experiment(n, Path(tmp), args.appends)
            print(f"{n:>7} {append:>10.3f} {read:>9.3f} {cold:>14.1f}")


if __name__ == "__main__":
    main()
