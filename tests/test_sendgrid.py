"""The sendgrid evaluator against a loopback SendGrid (the real SDK, real HTTP, real SQLite),
and offline against the study's simulated audience."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("sendgrid")

from core import rules  # noqa: E402
from core.abtest import interim  # noqa: E402
from email_ab.compose import mail_body  # noqa: E402
from email_ab.mailstore import MailStore  # noqa: E402
from email_ab.sendgrid import (  # noqa: E402
    CopyError,
    LiveSender,
    NoCapacity,
    SendError,
    SendGridConfig,
    SendGridEvaluator,
    quiet_http_client_logs,
)
from evaluators.base import Launch, from_iso  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.emulators.sendgrid_api import SendGridEmulator, event  # noqa: E402

KEY = "SG.emulatorKeyAbcdefghij.klmnopqrstuvwxyz0123456789ABCDEFGHIJ"
STUDY = ROOT / "artifacts" / "cold-email"
SUBJECT = "A question for {company}\n"
BODY = "Hi {first_name},\n\nWould a 15-minute call on Tuesday help {company}?\n\nSam\n"
SENDER = """
import json, sys
from pathlib import Path
from email_ab.sendgrid import SendGridConfig, SendGridEvaluator
config = SendGridConfig.model_validate_json(Path(sys.argv[1]).read_text())
handle = json.loads(Path(sys.argv[2]).read_text())
SendGridEvaluator(config, "reply_rate").start(handle, Path(sys.argv[3]))
"""


def people(n: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {
            "email": f"person{i}@company{i}.example.com",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "company": f"Company {i}",
        }
        for i in range(start, start + n)
    ]


def write_folder(folder: Path, subject: str, body: str, rows: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "subject.txt").write_text(subject)
    (folder / "body.txt").write_text(body)
    with open(folder / "prospects.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(STUDY / "audience.py", folder / "audience.py")
    return folder


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    rows = people(40)
    champion = write_folder(tmp_path / "champion", SUBJECT, BODY, rows)
    challenger = write_folder(tmp_path / "challenger", "Hello {first_name}\n", BODY, rows)
    return champion, challenger


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    with SendGridEmulator(KEY) as emu:
        yield emu


def config(emulator: SendGridEmulator | None = None, **overrides) -> SendGridConfig:
    values = {
        "mode": "live" if emulator else "simulate",
        "api_host": emulator.url if emulator else "https://api.sendgrid.com",
        "from_email": "sam@brightline.example.com",
        "from_name": "Sam",
        "reply_to": "replies@reply.brightline.example.com",
        "public_url": "https://inbox.brightline.example.com",
        "postal_address": "1 Example Street",
        "batch_per_arm": 10,
        "sandbox_mode": False,
        "send_to_reserved_domains": True,
        "timeout_s": 5,
        "max_backoff_s": 5,
        "cooldown_days": 30,
    }
    return SendGridConfig(**(values | overrides))


def launch(ev: SendGridEvaluator, folders: tuple[Path, Path], state: Path, n: int = 1) -> dict:
    return ev.launch(Launch("cold-email", n, folders[0], folders[1], state))


def states(state: Path, handle: dict, mode: str = "live") -> dict[str, str]:
    with MailStore.open(state, mode) as store:
        return {r["token"]: r["state"] for r in store.plans.messages(handle["batch"])}


# The plan ------------------------------------------------------------------------------


def test_launch_plans_a_fair_batch_and_writes_nothing(folders, tmp_path, emulator) -> None:
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator), "reply_rate")
    handle = launch(ev, folders, state)
    assert not state.exists()  # a plan: no side effects
    json.dumps(handle)  # JSON-able, to be saved before anything is sent
    arms = [m[1] for m in handle["messages"]]
    assert arms.count("champion") == arms.count("challenger") == 10
    assert all({arms[i], arms[i + 1]} == {"champion", "challenger"} for i in range(0, 20, 2))
    tokens = [m[0] for m in handle["messages"]]
    assert len(set(tokens)) == 20 and all(len(t) == 16 for t in tokens)
    assert handle["arms"]["challenger"]["subject"] == "Hello {first_name}"
    assert KEY not in json.dumps(handle)
    c = ev.collect(handle, state)  # saved but never started: open, and nothing is created
    assert not c.closed and c.arms["champion"] == (0, 0) and not state.exists()


def test_a_challenger_with_an_unknown_placeholder_is_a_copy_error(folders, tmp_path) -> None:
    (folders[1] / "body.txt").write_text("Hi {firstname},\n")
    with pytest.raises(CopyError, match=r"body.txt: unknown placeholder\(s\) \{firstname\}"):
        launch(SendGridEvaluator(config(), "reply_rate"), folders, tmp_path / "state")
    (folders[1] / "body.txt").write_text("Hi {first_name:>10},\n")
    with pytest.raises(CopyError, match="not a plain"):
        launch(SendGridEvaluator(config(), "reply_rate"), folders, tmp_path / "state")


def test_live_mode_needs_a_key_and_an_inbox(folders, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    ev = SendGridEvaluator(config(mode="live"), "reply_rate")
    handle = launch(ev, folders, tmp_path / "state")
    with pytest.raises(SendError, match="SENDGRID_API_KEY is not set"):
        ev.start(handle, tmp_path / "state")
    with pytest.raises(SendError, match="public_url"):
        launch(SendGridEvaluator(config(mode="live", public_url=None), "r"), folders, tmp_path)


# Sending -------------------------------------------------------------------------------


def test_each_message_goes_once_through_the_real_sdk(folders, tmp_path, emulator) -> None:
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator), "reply_rate")
    handle = launch(ev, folders, state)
    ev.start(handle, state)
    ev.start(handle, state)  # idempotent: nothing left to send
    assert sorted(emulator.tokens()) == sorted(m[0] for m in handle["messages"])
    first = emulator.accepted[0]
    body = first.body
    token = body["custom_args"]["token"]
    assert body["custom_args"]["study"] == "cold-email" and body["custom_args"]["experiment"] == "1"
    assert body["reply_to"]["email"] == f"replies+{token}@reply.brightline.example.com"
    assert body["headers"]["List-Unsubscribe"] == (
        f"<https://inbox.brightline.example.com/unsubscribe/{token}>"
    )
    assert f"/unsubscribe/{token}" in body["content"][0]["value"]
    assert body["mail_settings"]["sandbox_mode"]["enable"] is False
    assert set(states(state, handle).values()) == {"sent"}
    collected = ev.collect(handle, state)
    assert collected.detail["champion"]["sent"] == 10 and not collected.closed


def test_sandbox_mode_validates_only_and_test_domains_stay_unmailed(
    folders, tmp_path, emulator
) -> None:
    state = tmp_path / "state"
    sandboxed = config(emulator, sandbox_mode=True, send_to_reserved_domains=False)
    ev = SendGridEvaluator(sandboxed, "reply_rate")
    handle = launch(ev, folders, state)
    ev.start(handle, state)
    assert all(r.status == 200 and r.message_id is None for r in emulator.accepted)
    assert all(r.body["mail_settings"]["sandbox_mode"]["enable"] for r in emulator.accepted)
    assert "sandbox mode" in ev.collect(handle, state).log
    real = SendGridEvaluator(config(emulator, send_to_reserved_domains=False), "reply_rate")
    with pytest.raises(NoCapacity, match="reserved test domains"):
        launch(real, folders, tmp_path / "other")


def test_429_and_503_then_200_send_each_message_once(folders, tmp_path, emulator) -> None:
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator), "reply_rate")
    waits: list[float] = []
    ev.live.sleep = waits.append
    emulator.fail_next(2, 429, Retry_After="2")
    emulator.fail_next(1, 503)
    reset = str(int(time.time()) + 3)
    emulator.fail_next(1, 429, X_RateLimit_Reset=reset)
    handle = launch(ev, folders, state)
    ev.start(handle, state)
    tokens = emulator.tokens()
    assert len(tokens) == 20 and len(set(tokens)) == 20
    assert waits[:2] == [2.0, 2.0]  # Retry-After honoured
    assert 2.0 <= waits[2] < 4.0 and 1.5 < waits[3] <= 3.0  # backoff, X-RateLimit-Reset
    assert len(emulator.requests) == 24


def test_an_address_suppressed_during_a_backoff_is_not_sent(folders, tmp_path, emulator) -> None:
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator), "reply_rate")
    handle = launch(ev, folders, state)
    first = handle["messages"][0]

    def unsubscribed_meanwhile(seconds: float) -> None:
        with MailStore.open(state, "live") as store:
            store.suppressions.add(first[2], "unsubscribed", time.time(), "test")

    ev.live.sleep = unsubscribed_meanwhile
    emulator.fail_next(1, 429, Retry_After="1")
    ev.start(handle, state)
    assert first[0] not in emulator.tokens() and len(emulator.tokens()) == 19
    assert states(state, handle)[first[0]] == "skipped"


def test_a_long_retry_after_stops_and_the_next_start_resumes(folders, tmp_path, emulator) -> None:
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator), "reply_rate")
    emulator.fail_next(1, 429, Retry_After="3600")
    handle = launch(ev, folders, state)
    ev.start(handle, state)
    assert emulator.tokens() == [] and set(states(state, handle).values()) == {"planned"}
    ev.start(handle, state)
    assert sorted(emulator.tokens()) == sorted(m[0] for m in handle["messages"])


def test_a_refused_key_stops_sending_and_is_never_written(
    folders, tmp_path, emulator, monkeypatch
) -> None:
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator), "reply_rate")
    handle = launch(ev, folders, state)
    monkeypatch.setenv("SENDGRID_API_KEY", KEY.replace("SG.e", "SG.x"))
    with pytest.raises(SendError, match="refused the request") as info:
        ev.start(handle, state)
    assert "SG.x" not in str(info.value)
    assert set(states(state, handle).values()) == {"planned"}


def test_a_timeout_is_never_retried_and_the_rest_go_on(folders, tmp_path, emulator) -> None:
    """No answer within timeout_s: SendGrid may have taken it, so it is not sent again."""
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator, timeout_s=0.5), "reply_rate")
    emulator.hold_at = 3
    handle = launch(ev, folders, state)
    threading.Timer(3.0, emulator.release.set).start()
    ev.start(handle, state)
    ev.start(handle, state)
    tokens = emulator.tokens()
    assert sorted(tokens) == sorted(m[0] for m in handle["messages"])
    assert list(states(state, handle).values()).count("unknown") == 1


def test_live_sends_stop_at_the_daily_cap(folders, tmp_path, emulator) -> None:
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator, daily_cap=7), "reply_rate")
    handle = launch(ev, folders, state)
    ev.start(handle, state)
    ev.start(handle, state)
    assert len(emulator.accepted) == 7
    c = ev.collect(handle, state)
    assert c.detail["champion"]["unsent"] + c.detail["challenger"]["unsent"] == 13
    assert c.due_at is not None and from_iso(c.due_at) > time.time() + 86000
    assert sends_per_day_ok(state, 7, "live")


def test_sigkill_in_the_middle_of_start_sends_each_message_exactly_once(
    folders, tmp_path, emulator
) -> None:
    """A sender killed while the API holds its 5th message: the next start() sends the rest,
    never the 5th again (it may have gone), and a later event proves the 5th was sent."""
    state = tmp_path / "state"
    cfg = config(emulator)
    ev = SendGridEvaluator(cfg, "reply_rate")
    handle = launch(ev, folders, state)
    (tmp_path / "config.json").write_text(cfg.model_dump_json())
    (tmp_path / "handle.json").write_text(json.dumps(handle))
    emulator.hold_at = 5
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SENDGRID_API_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-c", SENDER, *(str(tmp_path / f) for f in ("config.json", "handle.json"))]
        + [str(state)],
        cwd=ROOT,
        env=env,
    )
    try:
        assert emulator.held.wait(30), "the sender never reached the 5th message"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        emulator.release.set()
        proc.kill()
    in_flight = emulator.accepted[4].custom_args["token"]
    assert states(state, handle)[in_flight] == "sending"
    ev.start(handle, state)
    tokens = emulator.tokens()
    assert sorted(tokens) == sorted(m[0] for m in handle["messages"])  # each exactly once
    assert states(state, handle)[in_flight] == "unknown"
    with MailStore.open(state, "live") as store:
        store.inbound.record_event(event(emulator.accepted[4], "delivered"), time.time())
    assert states(state, handle)[in_flight] == "sent"
    assert ev.collect(handle, state).detail["champion"]["sent"] == 10


# Caps, cool-downs, suppressions --------------------------------------------------------


def sends_per_day_ok(state: Path, cap: int, mode: str) -> bool:
    with MailStore.open(state, mode) as store:
        times = sorted(
            r["sending_at"]
            for r in store.db.execute(
                "SELECT sending_at FROM messages WHERE sending_at IS NOT NULL"
            )
        )
    return all(sum(t - 86400 < u <= t for u in times) <= cap for t in times)


def test_the_daily_cap_and_the_cooldown_are_never_exceeded(tmp_path: Path) -> None:
    rows = people(60)
    champion = write_folder(tmp_path / "a", SUBJECT, BODY, rows)
    challenger = write_folder(tmp_path / "b", "Hi {first_name}\n", BODY, rows)
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(batch_per_arm=15, daily_cap=12), "reply_rate")
    first = launch(ev, (champion, challenger), state)
    ev.start(first, state)
    ev.start(first, state)  # same day: the cap holds
    assert ev.collect(first, state).detail["champion"]["unsent"] > 0
    while ev.collect(first, state).detail["champion"]["unsent"]:
        assert ev.wait_until(ev.collect(first, state).due_at, state)
        ev.start(first, state)
    assert sends_per_day_ok(state, 12, "simulate")
    # the next batch avoids everyone mailed within 30 days; a third finds nobody left
    second = launch(ev, (champion, challenger), state, 2)
    mailed = {m[2] for m in first["messages"]}
    assert not mailed & {m[2] for m in second["messages"]}
    ev.start(second, state)  # what it does not send today stays reserved for it
    with pytest.raises(NoCapacity, match="only 0 of 60"):
        launch(ev, (champion, challenger), state, 3)
    # a stale plan naming people mailed days ago is held back at send time
    stale = json.loads(json.dumps(first))
    stale["batch"] += "-stale"
    stale["messages"] = [[m[0][::-1], *m[1:]] for m in first["messages"]]
    ev.start(stale, state)
    detail = ev.collect(stale, state).detail["champion"]
    assert detail["sent"] == 0 and detail["skipped"] == 15
    assert sends_per_day_ok(state, 12, "simulate")


def test_unsubscribed_spam_reporting_and_bounced_people_are_never_mailed_again(
    folders, tmp_path, emulator
) -> None:
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator, cooldown_days=0), "reply_rate")
    first = launch(ev, folders, state)
    ev.start(first, state)
    sent = emulator.accepted
    now = time.time()
    with MailStore.open(state, "live") as store:
        inbound = store.inbound
        bounce = event(sent[2], "bounce", type="bounce", reason="550 no such user")
        inbound.record_event(event(sent[0], "unsubscribe"), now)
        inbound.record_event(event(sent[1], "spamreport"), now)
        inbound.record_event(bounce, now)
        inbound.record_event(event(sent[3], "group_unsubscribe"), now)
        inbound.record_unsubscribe(sent[4].custom_args["token"], now)
        # a spam report about mail we cannot place still suppresses the address
        other = next(p["email"] for p in people(40) if p["email"] not in {r.to for r in sent})
        inbound.record_event({"event": "spamreport", "email": other}, now)
    gone = {r.to for r in sent[:5]} | {other}
    second = launch(ev, folders, state, 2)
    assert not gone & {m[2] for m in second["messages"]}
    # a stale plan naming them anyway: skipped at send time, never sent
    stale = json.loads(json.dumps(first))
    stale["batch"] += "-stale"
    stale["messages"] = [[m[0][::-1], *m[1:]] for m in first["messages"]]
    before = len(emulator.accepted)
    ev.start(stale, state)
    again = [r.to for r in emulator.accepted[before:]]
    assert not gone & set(again) and len(again) == 15
    skipped = [r for r in states(state, stale).items() if r[1] == "skipped"]
    assert len(skipped) == 5


# Secrets -------------------------------------------------------------------------------


def test_the_api_key_is_in_no_file_and_no_log_record(folders, tmp_path, emulator, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "state"
    ev = SendGridEvaluator(config(emulator), "reply_rate")
    emulator.fail_next(1, 500)
    ev.live.sleep = lambda s: None
    handle = launch(ev, folders, state)
    ev.start(handle, state)
    sender = LiveSender(config(emulator))
    quiet_http_client_logs()
    logging.getLogger("python_http_client").setLevel(logging.DEBUG)  # as a user might
    sender.post(mail_body(handle, handle["messages"][0]), 1)
    assert any(r.name.startswith("python_http_client") for r in caplog.records)
    for record in caplog.records:
        assert KEY not in record.getMessage()
    assert emulator.accepted[0].headers["Authorization"] == f"Bearer {KEY}"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


# Offline: the simulated audience -------------------------------------------------------


def best_copy(folder: Path) -> None:
    """The study's copy with the copywriter's good rewrites applied."""
    sys.path.insert(0, str(folder))  # the copy in tmp: no bytecode lands in the repository
    try:
        import copywriter
    finally:
        sys.path.remove(str(folder))
    subject, body = (folder / "subject.txt").read_text(), (folder / "body.txt").read_text()
    for code in ("C01", "C04", "C06", "C07", "C08", "C09"):
        rewrite = next(r for r in copywriter.REWRITES if r.code == code)
        subject, body = rewrite.apply(subject, body) or (subject, body)
    (folder / "subject.txt").write_text(subject)
    (folder / "body.txt").write_text(body)


def test_the_simulated_audience_gives_better_copy_more_replies(tmp_path: Path) -> None:
    champion, challenger = tmp_path / "champion", tmp_path / "challenger"
    ignore = shutil.ignore_patterns("runs", "__pycache__")
    shutil.copytree(STUDY, champion, ignore=ignore)
    shutil.copytree(STUDY, challenger, ignore=ignore)
    best_copy(challenger)
    state = tmp_path / "state"
    cfg = config(prospects="prospects.csv.gz", batch_per_arm=1500, daily_cap=5000)
    ev = SendGridEvaluator(cfg, "reply_rate")
    handle = launch(ev, (champion, challenger), state)
    ev.start(handle, state)
    c = ev.collect(handle, state)
    while not c.closed:
        assert ev.wait_until(c.due_at, state)  # the simulated clock moves
        c = ev.collect(handle, state)
    (hs, hn), (cs, cn) = c.arms["champion"], c.arms["challenger"]
    assert cs / cn > 1.5 * hs / hn
    assert hn < 1500 and c.detail["champion"]["bounced"] > 0  # bounces left the denominator
    assert c.detail["champion"]["auto_replies"] > 0  # out-of-office: recorded, not counted
    rule = rules.make(rules.config(rule="beta_binomial", probability=0.96), "maximize")
    d = interim(
        rule,
        c.arms["champion"],
        c.arms["challenger"],
        closed=c.closed,
        waited_h=ev.waited_h(handle, state),
        max_wait_h=cfg.max_wait_h,
        planned=1500,
    )
    assert d is not None and d.status == "keep"
    assert ev.finish(handle, state, d.ledger_status) == 0


def test_the_offline_copywriter_makes_one_change_and_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    shutil.copytree(STUDY, folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    prompt = tmp_path / "prompt.md"
    prompt.write_text("# Experiment 3\n\n## Recent experiments\n2\tabc\t0.03\tdiscard\t[C05] x\n")
    before = {f: (folder / f).read_text() for f in ("subject.txt", "body.txt")}
    run = subprocess.run(
        [sys.executable, "copywriter.py", str(prompt)],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "COPYWRITER_SEED": ""},
    )
    assert run.returncode == 0, run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("HYPOTHESIS: [C") and "[C05]" not in last and "because" in last
    after = {f: (folder / f).read_text() for f in before}
    assert after != before
    everything = " ".join(f"[C{i:02d}]" for i in range(1, 17))
    prompt.write_text(f"# Experiment 4\n{everything}\n")
    run = subprocess.run(
        [sys.executable, "copywriter.py", str(prompt)], cwd=folder, capture_output=True, text=True
    )
    assert run.returncode == 1 and "tried already" in run.stderr


def test_the_bundled_study_loads_and_says_its_evaluator_is_asynchronous(tmp_path) -> None:
    from steps.plugins import load_study

    study = load_study(STUDY)
    cfg = study.config.evaluator
    assert isinstance(cfg, SendGridConfig) and cfg.batch_per_arm == 3000
    assert "replies within 72 h" in cfg.describe()
    m = SendGridEvaluator(cfg, "reply_rate").evaluate(STUDY, tmp_path / "log.txt")
    assert m.status == "crash" and "asynchronous" in m.reason and "renders" in m.reason


def test_bad_settings_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="token is added"):
        config(reply_to="a+b@example.com")
    with pytest.raises(ValueError, match="unsubscribe_url"):
        config(footer="no link")
    with pytest.raises(ValueError, match="must exceed window_h"):
        config(window_h=100, max_wait_h=50)
