"""Results that arrive days later, through the campaign: the bundled cold-email study offline
(a simulated audience on a simulated clock) and live (the real SendGrid SDK against the loopback
emulator), killed between launch and collect."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from core.ledger import Status
from steps import report
from steps.lab import Lab
from tests.conftest import ROOT, Scripted, campaign, commit_all, git
from tests.emulators.sendgrid_api import SendGridEmulator

pytestmark = pytest.mark.usefixtures("prefect_server")
KEY = "SG.emulatedkey-0123456789abcdef.0123456789abcdefghijklmnop"
GOOD = (
    "Quick question about {company}?",
    "Hi {first_name},\n\nYou lead sales at {company}, and your reps spend hours on follow-ups "
    "that could book themselves. Teams like yours cut that time in half with Brightline.\n\n"
    "Would a 15-minute call on Tuesday be worth it to you?\n\nSam\n\n"
    "P.S. Your peers at similar companies booked 30% more meetings in a month.\n",
)
BAD = (
    "FREE TRIAL!!! The BEST sales platform on the market",
    "Dear Sir,\n\nWe are the best on the market! Free, guaranteed, limited time, act now! "
    "See https://a.example.com https://b.example.com https://c.example.com "
    "https://d.example.com!\n\nClick here for a special offer!\n",
)


def study_copy(tmp_path: Path, **settings: object) -> Path:
    folder = tmp_path / "repo" / "cold-email"
    shutil.copytree(ROOT / "artifacts" / "cold-email", folder)
    text = (folder / "study.yaml").read_text()
    for key, value in settings.items():
        lines = [line for line in text.splitlines() if line.strip().startswith(f"{key}:")]
        text = text.replace(lines[0], f"  {key}: {value}") if lines else text
    (folder / "study.yaml").write_text(text)
    commit_all(folder.parent)
    return folder


def copy_change(subject: str, body: str, what: str) -> dict[str, str]:
    return {
        "hypothesis": what,
        "cold-email/subject.txt": subject + "\n",
        "cold-email/body.txt": body,
    }


def test_offline_a_better_copy_is_kept_and_a_worse_one_discarded(tmp_path, monkeypatch):
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    folder = study_copy(
        tmp_path, batch_per_arm=300, daily_cap=4000, cooldown_days=1, max_wait_h=400
    )
    changes = Scripted([copy_change(*GOOD, "good"), copy_change(*BAD, "bad")])
    result = campaign(str(folder), experiments=2, researcher=changes)
    rows = Lab.open(folder).records.ledger.rows()
    by = {r.description.split(" (")[0]: r for r in rows}
    assert [r.experiment for r in rows][0] == 1 and by["baseline"].status == Status.KEEP
    assert 0.01 < by["baseline"].metric < 0.06  # the champion's arm: about 3%
    assert by["good"].status == Status.KEEP and by["good"].metric > 2 * by["baseline"].metric
    assert by["bad"].status == Status.DISCARD
    assert sorted(r.experiment for r in rows) == [1, 2, 3] and result.ran == 2
    assert "->" in by["good"].description  # the rates, champion's and challenger's
    # decided on the simulated clock (both tests ran at once here), charted against that time
    decided = [
        datetime.fromisoformat(r.decided_at) for r in sorted(rows, key=lambda r: r.experiment)
    ]
    assert decided[0] <= decided[1] <= decided[2], decided
    frame = report.results_frame(Lab.open(folder).records.ledger)
    figure = report.progress_figure(frame, "reply_rate", "maximize", "cold-email")
    assert figure.axes[0].get_xlabel().startswith("decided (UTC)")
    dashboard = (folder.parent / "runs" / "cold-email" / "ab-tests.md").read_text()
    assert "A/B tests in flight" in dashboard
    learnings = (folder.parent / "runs" / "cold-email" / "resource.md").read_text()
    assert "good" in learnings and "%" in learnings


def test_a_kill_between_launch_and_collect_sends_nothing_twice(tmp_path):
    with SendGridEmulator(KEY) as emu:
        folder = study_copy(
            tmp_path,
            mode="live",
            sandbox_mode="false",
            batch_per_arm=15,
            max_pending=1,  # later runs collect the killed one's test before launching
            window_h=0.001,  # 3.6 s: the test waits for the window's close
            look_every_h=0.0005,
            max_wait_h=0.02,
        )
        spec = folder / "study.yaml"
        extra = f"  api_host: {emu.url}\n  send_to_reserved_domains: true\n"
        spec.write_text(spec.read_text().replace("  mode: live\n", f"  mode: live\n{extra}"))
        git(folder.parent, "commit", "-qam", "against the emulator")
        env = os.environ | {"SENDGRID_API_KEY": KEY}
        env.pop("ANTHROPIC_API_KEY", None)
        cli = [str(Path(sys.executable).with_name("autoresearch")), "run", str(folder), "-n", "1"]
        proc = subprocess.Popen(cli, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        pending = folder.parent / "runs" / "cold-email" / "pending"
        deadline = time.monotonic() + 120
        while not (list(pending.glob("*.handle.json")) and emu.accepted) and proc.poll() is None:
            assert time.monotonic() < deadline, "nothing was launched"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # launched, sending: killed before any collect
        proc.wait()
        sent_before = len(emu.accepted)
        runs = 0
        while not Lab.open(folder).records.ledger.rows() and runs < 6:
            again = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=180)
            assert again.returncode == 0, again.stdout + again.stderr
            runs += 1
            time.sleep(2)
        tokens = emu.tokens()
        assert len(tokens) == len(set(tokens)), "a message was sent twice"
        first = [m for m in emu.accepted if m.custom_args["experiment"] == "2"]
        # the killed launch's batch, each message once; the one whose call the kill cut may
        # be lost (marked unknown, never sent again): at most one per kill, never a double
        assert 29 <= len(first) <= 30 and sent_before >= 1
    rows = Lab.open(folder).records.ledger.rows()
    assert [r.experiment for r in rows] == [1, 2]  # the baseline, then the test: decided
    state = folder.parent / "runs"
    for path in [p for p in state.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in git(folder.parent, "log", "--all", "-p")
