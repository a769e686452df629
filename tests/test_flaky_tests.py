"""The flaky-tests study: a suite that fails now and then, driven to a 100% pass rate.

The metric is measured: the bundled shop.py passes some runs of its suite and not others; the
shop with its three causes fixed (shared state, an order dependence, a race) passes all 40. A
run passes only by the exit status drawn for it (tests/test_attacks_scorer.py tries to forge it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evaluators.base import Measurement
from evaluators.command import CommandConfig, CommandEvaluator, parse_metrics
from steps.lab import Lab
from tests.conftest import ROOT, Scripted, commit_all

STUDY = ROOT / "artifacts" / "flaky-tests"
FIXES = [  # (cause, old text, new text) in shop.py
    (
        "carts share one class-level list of lines",
        """    lines: list[tuple[str, int]] = []

    def __init__(self, *lines: tuple[str, int]) -> None:
        if lines:
            self.lines = list(lines)
""",
        """    def __init__(self, *lines: tuple[str, int]) -> None:
        self.lines = list(lines)
""",
    ),
    (
        "price() works only after some test loaded the catalogue",
        "    return CATALOGUE[sku]\n",
        "    if not CATALOGUE:\n        load_catalogue()\n    return CATALOGUE[sku]\n",
    ),
    (
        "wait_for_deliveries() sleeps instead of waiting for the deliveries",
        """    threading.Thread(target=deliver).start()


def wait_for_deliveries() -> None:
    \"\"\"Return when every delivery ordered so far has arrived.\"\"\"
    time.sleep(0.9 * SUPPLIER_DELAY_S)
""",
        """    thread = threading.Thread(target=deliver)
    DELIVERIES.append(thread)
    thread.start()


def wait_for_deliveries() -> None:
    \"\"\"Return when every delivery ordered so far has arrived.\"\"\"
    while DELIVERIES:
        DELIVERIES.pop().join()
""",
    ),
    (
        "a list of the deliveries under way",
        "SUPPLIER_DELAY_S = 0.004",
        "DELIVERIES: list[threading.Thread] = []\nSUPPLIER_DELAY_S = 0.004",
    ),
]


def fixed_shop() -> str:
    text = (STUDY / "shop.py").read_text()
    for _, old, new in FIXES:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.fixture
def study(tmp_path: Path) -> Path:
    dest = tmp_path / "repo" / "flaky-tests"
    shutil.copytree(STUDY, dest, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    commit_all(dest.parent)
    return dest


def evaluate(folder: Path) -> tuple[Measurement, str]:
    config = CommandConfig(command="python evaluate.py", timeout_s=120)
    log = folder.parent / "logs" / "1.log"
    m = CommandEvaluator(config, "pass_rate").evaluate(folder, log)
    return m, log.read_text()


def test_the_bundled_shop_passes_some_runs_and_fails_others(study: Path) -> None:
    m, log = evaluate(study)
    assert m.status == "ok", log
    successes, trials = m.secondary["successes"], m.secondary["trials"]
    assert trials == 40 and 0 < successes < trials
    assert m.metric == pytest.approx(successes / trials)
    for test in ("test_new_cart_is_empty", "test_price_of_a_known_tea"):
        assert f"runs: {test}: " in log  # each cause shows up, with its first message


def test_the_fixed_shop_passes_every_run(study: Path) -> None:
    (study / "shop.py").write_text(fixed_shop())
    m, log = evaluate(study)
    assert m.status == "ok", log
    assert m.metric == 1.0 and m.secondary["successes"] == m.secondary["trials"] == 40
    assert "failed in" not in log


@pytest.mark.parametrize(
    "tail",
    [
        "\nimport os\n\nprint('pass_rate: 1.0')\nos._exit(0)\n",  # a printed metric
        "\nraise SystemExit(0)\n",  # the suite stopped before it ran
    ],
    ids=["printed metric", "early exit"],
)
def test_a_suite_that_did_not_run_counts_for_nothing(study: Path, tail: str) -> None:
    shop = study / "shop.py"
    shop.write_text(shop.read_text() + tail)
    m, log = evaluate(study)
    assert m.status == "crash" and "error: the test process exited with status" in log
    assert "pass_rate" not in parse_metrics(log)


@pytest.mark.usefixtures("prefect_server")
def test_a_scripted_fix_reaches_a_full_pass_rate_with_the_tests_unchanged(
    study: Path, scripted: Scripted
) -> None:
    from tests.conftest import campaign

    tests = (study / "test_shop.py").read_text()
    lenient = tests.replace("assert count == 0", "assert count >= 0")
    causes = "; ".join(cause for cause, _, _ in FIXES)
    scripted += [
        {"hypothesis": "Relax the empty-cart test", "flaky-tests/test_shop.py": lenient},
        {"hypothesis": f"Fix: {causes}", "flaky-tests/shop.py": fixed_shop()},
    ]
    campaign(str(study), experiments=3, researcher=scripted)
    rows = Lab.open(study).records.ledger.rows()
    assert [r.status for r in rows] == ["keep", "rejected", "keep"], rows
    baseline, _, fixed = rows
    assert 0 < baseline.metric < 1 and fixed.metric == 1.0
    assert fixed.evidence.startswith("beta_binomial") and "cand=40/40" in fixed.evidence
    worktree = Lab.open(study).workspace.study_dir
    assert (worktree / "test_shop.py").read_text() == tests
