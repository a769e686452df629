"""Never stop, and stop cleanly: --forever, SIGINT and SIGTERM, a run of crashes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core.ledger import Status
from steps.lab import Lab
from tests.conftest import Scripted, campaign

pytestmark = pytest.mark.usefixtures("prefect_server")
SLOW = "import time, model\ntime.sleep(0.4)\nprint(f'score: {abs(model.X - 3.0):.6f}')\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_forever_runs_until_a_signal_then_stops_cleanly(make_study, sig):
    folder = make_study(SLOW)
    cli = Path(sys.executable).with_name("autoresearch")
    proc = subprocess.Popen(
        [str(cli), "run", str(folder), "--forever", "--proposer", "mutate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("#  3 "):
            proc.send_signal(sig)
            break
    out = "".join(seen) + proc.stdout.read()
    assert proc.wait(timeout=60) == 128 + sig, out
    assert "stopping after the experiment in hand" in out
    assert "stopped by request" in out and "toy: score (minimize)" in out  # the summary
    rows = Lab.open(folder).records.ledger.rows()
    assert [r.experiment for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 3
    doctor = CliRunner().invoke(main, ["doctor", str(folder)])
    assert doctor.exit_code == 0, doctor.output


def test_a_second_signal_stops_at_once_and_rolls_back(make_study):
    folder = make_study("import time, model\ntime.sleep(30)\nprint('score: 1.0')\n")
    cli = Path(sys.executable).with_name("autoresearch")
    proc = subprocess.Popen(
        [str(cli), "run", str(folder), "-n", "3", "--proposer", "mutate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    logs = folder.parent / "runs" / "toy" / "logs"
    deadline = time.monotonic() + 60
    while not list(logs.glob("*.pgid")) and time.monotonic() < deadline:
        time.sleep(0.1)  # the baseline's evaluator is running
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "stopped now" in out and "No baseline yet" in out
    assert Lab.open(folder).records.ledger.rows() == []  # nothing half-recorded
    assert not list(logs.glob("*.pgid"))


def test_a_run_of_crashes_stops_the_campaign_naming_the_last(make_study):
    folder = make_study(yaml_extra="stop_after_crashes: 3\n")
    crashing = Scripted({"study/model.py": f"raise ValueError('bad idea {i}')\n"} for i in range(6))
    result = campaign(str(folder), experiments=10, researcher=crashing)
    assert result.ran == 4  # the baseline, then three crashes in a row
    assert "3 experiments in a row crashed" in result.stop and "exit code 1" in result.stop
    rows = Lab.open(folder).records.ledger.rows()
    assert [r.status for r in rows] == [Status.KEEP] + [Status.CRASH] * 3
