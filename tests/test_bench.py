"""Benchmarks that cannot rot: every bench/*.py runs with --smoke (tiny sizes, seconds) and must
exit 0 and print its figures, so that a change of the API a bench drives breaks a test, not the
next person who wants a number.

The benches that report to a Prefect server are given one by environment (PREFECT_API_URL, its
login, its home), as `autoresearch run` finds one: the session's when a test has started it,
else one launched as this module starts. A server's fresh database takes 10-15 s to create, so
it is created while the benches without a server run (they come first), not before them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoresearch.server import Server, temporary_server
from core.processes import stop_group

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 240  # a smoke run takes seconds to ~20 s; a loaded machine, several times that
NUMBER = r"-?\d+\.\d+"


@dataclass(frozen=True)
class Bench:
    script: str
    figures: tuple[str, ...]  # patterns (re.MULTILINE) its output must each match
    server: bool = False  # reports to a Prefect server


BENCHES = [  # those without a server first: the server starts meanwhile
    Bench(
        "decisions.py",
        (
            r"A/A false keeps \(20\) +A/A false keeps \(50\)",
            r"^ +sigma k=2 5 champion, 6 candidate( +\d+\.\d%){4}$",
            r"^ +mannwhitney a=0\.01 min 2% +12 interleaved( +\d+\.\d%){4}$",
            r"^ +power: 3% vs 4\.5%( +\d+\.\d%){2}$",
        ),
    ),
    Bench(
        "email_ab.py",
        (
            r"^audience: .* the bundled copy earns \d+\.\d+%$",
            r"^A/A 3% vs 3% \(false keeps\) +20 +\d+\.\d% +\[",
            r"^3% -> 4\.5% \(power\) +10 +\d+\.\d%",
            rf"^  median {NUMBER} days from launch to decision, max {NUMBER}; \w+ {NUMBER} d$",
        ),
    ),
    Bench(
        "ledger_scale.py",
        (
            rf"^ +100 +{NUMBER} +{NUMBER} +{NUMBER}$",
            rf"^ +1000 +{NUMBER} +{NUMBER} +{NUMBER}$",
        ),
    ),
    Bench(
        "prompt_tokens.py",
        (
            r"^ +3 +keep +\d+ +\d+ +\d+ +\d+ +\d+ +\d+\.\d%$",
            r"^ +4 +crash ",
            r"^experiments 2-4: \d+ of \d+ input tokens read from cache = \d+\.\d%",
        ),
    ),
    Bench(
        "gpu.py",  # no GPU in the tests: the gate alone, through Triton's interpreter
        (
            r"^no CUDA GPU here: gpt-train at its CUDA configuration and the kernel's timing$",
            r"^  plain \(the study's\) +16 cases passed$",
            r"^  one pass \(a real speed-up\) +16 cases passed$",
            r"^  mean over the block \(wrong\) +refused: exit code 1: stage shapes, case 1x1 ",
        ),
    ),
    Bench(
        "screening.py",
        (
            r"^stage noise +within +time +good stopped +final loss$",
            r"^ +1% +- +100% +0 +\d\.\d{4}$",
            r"^ +3% +10% +\d+% +\d+(\.5)? +\d\.\d{4}$",
        ),
    ),
    Bench(
        "strategies.py",
        (
            r"^study +proposer +greedy +tree +islands",
            r"^deceptive +step +15\+ \[-\] 0/1 +13 \[13-13\] 1/1",  # only the tree gets out
            # the real Claude proposer, its novelty checks and learnings, through the emulator
            r"^deceptive +model +15\+ \[-\] 0/1 \$\d\.\d\d +13 \[13-13\] 1/1 \$\d\.\d\d",
            r"^plateau +model +15\+ \[-\] 0/1 \$\d\.\d\d +\d+ \[\d+-\d+\] 1/1 \$",
            r"^plateau +portfolio ",
            r"^\d+\.\d s in all$",
        ),
    ),
    Bench(
        "search.py",
        (
            r"^study +mutate +optuna tpe +optuna cmaes",
            r"^bowl( +\d+(\.\d+)?\+? \[\d+-\d+\] \d/1 +\d+\.\ds){4}",
            r"^noisy-bowl: mutate <= random: (met|MISSED); portfolio <= 1\.2 x its best member",
            r"^deceptive +model +15\+ \[-\] 0/1 \$\d\.\d\d +13 \[13-13\] 1/1",
            r"^\d+ s in all, 2 processes$",
        ),
    ),
    Bench(
        "postgres.py",  # starts its own servers; PostgreSQL's row says why where there is none
        (
            rf"^postgresql +(2 +2 +2 +{NUMBER} +{NUMBER} +0 +\d+|skipped: .+)$",
            rf"^sqlite +2 +2 +2 +{NUMBER} +{NUMBER} +0 +\d+$",
            r"^untimed: the servers up in ",
        ),
    ),
    Bench(
        "overhead.py",
        (
            rf"^no-op evaluation, unsandboxed +{NUMBER} ms",
            rf"^campaign, per experiment +{NUMBER} ms$",
            rf"^  orchestration overhead +{NUMBER} ms",
            rf"^plain-Python floor, per iteration +{NUMBER} ms$",
            rf"^  flow run \(subflow\) +{NUMBER} ms$",
            rf"^  context for the proposer +{NUMBER} ms$",
            rf"^  persist \(ledger append, resource\.md\) +{NUMBER} ms$",
            r"^dominant: ",
        ),
        server=True,
    ),
    Bench(
        "parallel.py",
        (
            rf"^ +1 +{NUMBER} +{NUMBER} +1\.00 +0\.9$",
            rf"^ +2 +{NUMBER} +{NUMBER} +{NUMBER} +1\.8$",
            rf"^orchestration overhead per experiment at parallel 1: {NUMBER} s",
            rf"^  {NUMBER} s with a running server",
        ),
        server=True,
    ),
    Bench(
        "chaos.py",
        (
            r"^kill +1: +\d+ rows$",
            r"^kills 1, rows before the last run \d+, after \d+$",
            r"^the last run exited 0; \d+ s in all$",
            r"^  ok  ledger rows 1\.\.\d+",
            r"^every invariant holds$",
        ),
        server=True,
    ),
]


class Early:
    """A Prefect server launched now and waited for when first wanted (`server` None where
    PREFECT_API_URL names one already: the session's `prefect_server`, say)."""

    def __init__(self, home: Path) -> None:
        self.server: Server | None = None
        if not os.environ.get("PREFECT_API_URL"):
            self.server = temporary_server(home)  # it dies with this process, even by SIGKILL

    def env(self) -> dict[str, str]:
        """The environment of a bench that reports to the server."""
        if self.server is None:
            return dict(os.environ)
        home = {"PREFECT_HOME": str(self.server.home)}
        return os.environ | self.server.wait_healthy().client_settings() | home


def wants_server(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return bool(callspec and getattr(callspec.params.get("bench"), "server", False))


@pytest.fixture(scope="module", autouse=True)
def early(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Early | None]:
    """The server, launched as the module starts when a selected bench needs it."""
    if not any(wants_server(item) for item in request.session.items):
        yield None
        return
    started = Early(tmp_path_factory.mktemp("prefect-home"))
    try:
        yield started
    finally:
        if started.server is not None:
            started.server.stop()


def smoke(script: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `bench/<script> --smoke` to its end: its exit status and its output. Its whole
    process group is stopped when it runs past the timeout (runs and evaluators it started)."""
    proc = subprocess.Popen(
        [sys.executable, f"bench/{script}", "--smoke"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop_group(proc, grace_s=2.0)
        out, _ = proc.communicate()
        pytest.fail(f"{script} --smoke ran past {TIMEOUT_S} s:\n{out[-3000:]}")
    return proc.returncode, out


@pytest.mark.parametrize("bench", BENCHES, ids=[b.script for b in BENCHES])
def test_a_smoke_run_prints_the_figures(bench: Bench, early: Early | None) -> None:
    code, out = smoke(bench.script, early.env() if bench.server and early else None)
    assert code == 0, f"{bench.script} --smoke exited {code}:\n{out[-3000:]}"
    missing = [p for p in bench.figures if not re.search(p, out, re.MULTILINE)]
    assert not missing, f"{bench.script} --smoke did not print {missing}:\n{out[-3000:]}"


def test_every_bench_has_a_smoke_run() -> None:
    """A new bench joins the list above (helpers start with `_`)."""
    scripts = {p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_")}
    assert scripts == {b.script for b in BENCHES}
