"""Candidates in flight: slots measuring at once, decisions sound when the champion moves, a
ledger that stays exactly-once through a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core.ledger import Status
from core.pending import Pending
from steps.lab import Lab
from tests.conftest import Scripted, campaign

pytestmark = pytest.mark.usefixtures("prefect_server")

# Each run appends "<slot env> <start> <end>" to a file outside the study.
WINDOWS = """import os, time, model
start = time.time()
time.sleep(0 if model.X == 10.0 else 3.0)  # long enough to overlap on a busy machine
with open(os.environ["MARKS"], "a") as f:
    f.write(f"{os.environ.get('SLOT', '-')} {start} {time.time()}\\n")
print(f"score: {abs(model.X - 3.0):.6f}")
"""
TWO_KNOBS = """import time, model
time.sleep(0.2 if model.X == 5.0 else 2.5)  # the candidate that moves X alone finishes first
print(f"score: {abs(model.X - 3.0) + 10 * abs(model.Y - 1.0):.6f}")
"""


def marks_study(
    make_study, tmp_path: Path, evaluate: str, extra: str, model: str
) -> tuple[Path, Path]:
    marks = tmp_path / "marks"
    marks.mkdir()
    env = f"env: {{MARKS: '{marks / 'marks.txt'}'}}"
    folder = make_study(evaluate, yaml_extra=extra + f"sandbox: {{writable: ['{marks}']}}\n",
                        model=model)  # fmt: skip
    text = (folder / "study.yaml").read_text().replace("timeout_s: 20}", f"timeout_s: 20, {env}}}")
    (folder / "study.yaml").write_text(text)
    subprocess.run(["git", "-C", str(folder.parent), "commit", "-qam", "marks"], check=True)
    return folder, marks / "marks.txt"


def test_four_slots_measure_at_once_each_with_its_own_environment(make_study, tmp_path):
    slots = "slots:\n" + "".join(f"  - {{SLOT: s{i}}}\n" for i in range(1, 5))
    folder, marks = marks_study(make_study, tmp_path, WINDOWS, slots, "X = 10.0\n")
    changes = Scripted({"study/model.py": f"X = {x}\n"} for x in (4.0, 5.0, 6.0, 7.0))
    result = campaign(str(folder), experiments=5, researcher=changes)
    assert result.ran == 5
    runs = [line.split() for line in marks.read_text().splitlines()[1:]]  # after the baseline
    assert sorted(r[0] for r in runs) == ["s1", "s2", "s3", "s4"]  # each slot's own env
    starts, ends = [float(r[1]) for r in runs], [float(r[2]) for r in runs]
    assert max(starts) < min(ends), "the four evaluations did not overlap"
    rows = Lab.open(folder).records.ledger.rows()
    assert sorted(r.experiment for r in rows) == [1, 2, 3, 4, 5]
    assert [r.status for r in rows].count(Status.KEEP) >= 2


class Together(Scripted):
    """Scripted proposals, all made (from the same champion) before any of them goes on."""

    def __init__(self, changes: list[dict[str, str]]) -> None:
        super().__init__(changes)
        self.barrier = threading.Barrier(len(changes))

    def propose(self, context):  # noqa: ANN001, ANN201
        proposal = super().propose(context)
        self.barrier.wait(timeout=60)
        return proposal


def test_a_candidate_on_an_old_champion_is_confirmed_on_the_new_one(make_study):
    """Three candidates from the baseline at once. `x` finishes first and is kept. `y` beat the
    baseline and beats the new champion too: its change is applied again on it and measured
    again before it is kept. `x2` beats the new champion too, but changes the line `x` changed:
    it conflicts, and is discarded with that reason."""
    model = "X = {x}\n\n# two knobs, apart: their changes merge\n\nY = {y}\n"
    folder = make_study(TWO_KNOBS, model=model.format(x=10.0, y=0.0), yaml_extra="parallel: 3\n")
    changes = Together(
        [
            {"hypothesis": "x", "study/model.py": model.format(x=5.0, y=0.0)},
            {"hypothesis": "y", "study/model.py": model.format(x=10.0, y=1.0)},
            {"hypothesis": "x2", "study/model.py": model.format(x=4.0, y=1.0)},
        ]
    )
    campaign(str(folder), experiments=4, researcher=changes)
    rows = {r.description: r for r in Lab.open(folder).records.ledger.rows()}
    assert rows["x"].status == Status.KEEP and not rows["x"].built_on
    y = rows["y"]
    assert y.status == Status.KEEP and y.metric == pytest.approx(2.0)  # X=5 and Y=1, together
    assert y.built_on == rows["baseline"].commit and "confirmation (first 7 on" in y.evidence
    x2 = rows["x2"]
    assert x2.status == Status.DISCARD and "does not apply on the champion" in x2.evidence
    lab = Lab.open(folder)
    assert lab.records.champion().commit == y.commit
    head = lab.repo.show(lab.repo.branch_head(), "study/model.py")
    assert head.strip() == model.format(x=5.0, y=1.0).strip()


def test_a_sigkill_with_slots_busy_loses_and_doubles_nothing(make_study, tmp_path):
    folder = make_study(
        "import time, model\ntime.sleep(0.8)\nprint(f'score: {abs(model.X - 3.0):.6f}')\n",
        yaml_extra="parallel: 3\n",
    )
    cli = str(Path(sys.executable).with_name("autoresearch"))
    args = [cli, "run", str(folder), "--proposer", "mutate"]
    proc = subprocess.Popen([*args, "-n", "30"], stdout=subprocess.DEVNULL, start_new_session=True)
    pending = Pending(folder.parent / "runs" / "toy")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stages = [r.stage for r in pending.all()]
        if stages.count("measuring") == 3:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = pending.numbers()
    assert len(left) == 3
    again = subprocess.run([*args, "-n", "1"], capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = Lab.open(folder).records.ledger.rows()
    numbers = sorted(r.experiment for r in rows)
    assert numbers == list(range(1, len(rows) + 1)) and set(left) <= set(numbers)
    assert pending.numbers() == []
    doctor = CliRunner().invoke(main, ["doctor", str(folder)])
    assert doctor.exit_code == 0, doctor.output
    assert not running_experiments("toy-"), "the killed campaign's runs are not marked Crashed"


def running_experiments(prefix: str) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=prefix))
        )
    return [r.name for r in runs if r.state is not None and r.state.is_running()]
