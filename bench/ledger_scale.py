"""Per-experiment cost of the ledger at 100, 1,000 and 10,000 rows.

An experiment appends one row (one write of one line, with fsync) to the ledger its campaign
keeps open; reading it again costs a stat while the file is unchanged. A process that opens the
study afresh (`autoresearch status`, the first experiment of a run) parses it once.

    .venv/bin/python bench/ledger_scale.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.ledger import Ledger, Row, Status  # noqa: E402

APPENDS = 200


def row(n: int) -> Row:
    status = Status.KEEP if n % 7 == 0 else Status.DISCARD
    return Row(n, status, f"mutate study/model.py:3:0 0.5 -> {n / 1000:.4g}", "abcdef1", 1 / n)


def prefill(path: Path, n: int) -> Ledger:
    ledger = Ledger(path, "score")
    lines = [ledger.header(), *(ledger.line(row(i)) for i in range(1, n + 1))]
    path.write_text("".join(lines))
    return ledger


def per_experiment(n: int, folder: Path) -> tuple[float, float, float]:
    """(append, cached read, cold parse) in milliseconds, at a ledger of n rows."""
    ledger = prefill(folder / f"{n}.tsv", n)
    ledger.rows()
    appends, reads = [], []
    for i in range(n + 1, n + 1 + APPENDS):
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


def main() -> None:
    head = f"{'rows':>7} {'append ms':>10} {'read ms':>9} {'cold parse ms':>14}"
    print(f"{head}  (median of {APPENDS} experiments)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (100, 1_000, 10_000):
            append, read, cold = per_experiment(n, Path(tmp))
            print(f"{n:>7} {append:>10.3f} {read:>9.3f} {cold:>14.1f}")


if __name__ == "__main__":
    main()
