"""The inbox over real HTTP: signed events, Inbound Parse replies, unsubscribe links, limits;
what it stores is what the sendgrid evaluator counts."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("sendgrid")

from email_ab.inbox import InboxError, Limits, make_server  # noqa: E402
from email_ab.mailstore import MailStore  # noqa: E402
from email_ab.sendgrid import SendGridEvaluator  # noqa: E402
from tests.emulators.sendgrid_api import (  # noqa: E402
    SendGridEmulator,
    event,
    inbound_reply,
    keypair,
    post,
    post_events,
    post_inbound,
    sign,
)
from tests.test_sendgrid import BODY, KEY, SUBJECT, config, people, write_folder  # noqa: E402

LIMITS = Limits(max_event_bytes=20_000, max_inbound_bytes=20_000, max_age_s=600)


class Setup:
    """A live batch of 20 messages sent to the emulator, and an inbox on the same state."""

    def __init__(
        self,
        tmp_path: Path,
        emulator: SendGridEmulator,
        password: str | None,
        limits: Limits = LIMITS,
    ) -> None:
        rows = people(40)
        folders = (
            write_folder(tmp_path / "a", SUBJECT, BODY, rows),
            write_folder(tmp_path / "b", "Hi {first_name}\n", BODY, rows),
        )
        from evaluators.base import Launch

        self.state = tmp_path / "state"
        self.ev = SendGridEvaluator(config(emulator), "reply_rate")
        self.handle = self.ev.launch(Launch("cold-email", 1, *folders, self.state))
        self.ev.start(self.handle, self.state)
        self.sent = emulator.accepted
        self.private, public = keypair()
        self.server = make_server(
            self.state, public_key=public, limits=limits, inbound_password=password
        )
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def events(self, events: list[dict], **kw) -> tuple[int, bytes]:
        return post_events(f"{self.url}/sendgrid/events", events, self.private, **kw)

    def reply(self, fields: dict[str, str], auth: tuple[str, str] | None = None) -> int:
        return post_inbound(f"{self.url}/sendgrid/inbound", fields, auth)[0]

    def totals(self) -> dict[str, float]:
        detail = self.ev.collect(self.handle, self.state).detail
        return {k: detail["champion"][k] + detail["challenger"][k] for k in detail["champion"]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    with SendGridEmulator(KEY) as emu:
        yield emu


@pytest.fixture
def setup(tmp_path, emulator):
    s = Setup(tmp_path, emulator, None)
    yield s
    s.close()


def stored_events(state: Path) -> int:
    with MailStore.open(state, "live") as store:
        return store.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def test_a_webhook_delivered_twice_counts_once_and_a_bounce_leaves_the_denominator(setup) -> None:
    batch = [event(m, "delivered") for m in setup.sent[1:]]
    batch.append(event(setup.sent[0], "bounce", type="bounce", reason="550 5.1.1 no such user"))
    batch.append(event(setup.sent[1], "open"))
    status, body = setup.events(batch)
    assert status == 200 and json.loads(body) == {"received": 21, "new": 21}
    status, body = setup.events(batch)  # SendGrid retries: the same sg_event_ids
    assert status == 200 and json.loads(body)["new"] == 0
    totals = setup.totals()
    assert totals["sent"] == 20 and totals["bounced"] == 1 and totals["delivered"] == 19
    with MailStore.open(setup.state, "live") as store:
        assert setup.sent[0].to in store.suppressions.emails()  # never mailed again


def test_unsigned_forged_replayed_and_stale_event_posts_are_refused(setup) -> None:
    good = [event(setup.sent[0], "delivered")]
    assert post_events(f"{setup.url}/sendgrid/events", good, None)[0] == 401  # no headers
    other, _ = keypair()
    assert post_events(f"{setup.url}/sendgrid/events", good, other)[0] == 403  # wrong key
    stamp = str(int(time.time()))
    forged = sign(setup.private, json.dumps(good), stamp)
    tampered = [event(setup.sent[0], "spamreport")]
    assert setup.events(tampered, timestamp=stamp, signature=forged)[0] == 403
    assert setup.events(good, signature="not base64 at all!")[0] == 403
    assert setup.events(good, timestamp=str(int(time.time()) - 3600))[0] == 403  # too old
    assert setup.events(good, timestamp=str(int(time.time()) + 3600))[0] == 403  # future
    assert stored_events(setup.state) == 0
    assert setup.events(good)[0] == 200 and stored_events(setup.state) == 1


def test_bodies_over_the_limit_are_refused_with_413(setup) -> None:
    huge = [event(setup.sent[0], "delivered", note="x" * 30_000)]
    status, body = setup.events(huge)
    assert status == 413 and b"over the limit" in body
    fields = inbound_reply(setup.sent[0], text="y" * 30_000)
    assert setup.reply(fields) == 413
    assert stored_events(setup.state) == 0


def test_automatic_replies_are_recorded_but_not_counted(setup) -> None:
    m = setup.sent
    autos = [
        inbound_reply(m[0], headers="Auto-Submitted: auto-replied\n", subject="Automatic reply"),
        inbound_reply(m[1], headers="X-Autoreply: yes\n"),
        inbound_reply(m[2], headers="Precedence: bulk\n"),
        inbound_reply(m[3], subject="Out of Office: back Monday"),
        inbound_reply(m[4], **{"from": "MAILER-DAEMON@mx.example.net"}),
    ]
    for fields in autos:
        assert setup.reply(fields) == 200
    human = inbound_reply(m[5], text="Yes, Tuesday works.")
    assert setup.reply(human) == 200
    assert setup.reply(human) == 200  # Inbound Parse retried: the same Message-ID
    assert setup.reply(inbound_reply(m[6], headers="Auto-Submitted: no\n")) == 200  # a person
    totals = setup.totals()
    assert totals["auto_replies"] == 5 and totals["replied"] == 2
    with MailStore.open(setup.state, "live") as store:
        suppressed = store.suppressions.emails()
        assert store.db.execute("SELECT COUNT(*) FROM replies").fetchone()[0] == 7
    assert m[5].to in suppressed and m[0].to not in suppressed  # people who answered leave


def test_a_reply_after_the_decision_is_shown_not_counted(setup) -> None:
    assert setup.reply(inbound_reply(setup.sent[0])) == 200
    setup.ev.finish(setup.handle, setup.state, "discard")
    time.sleep(0.01)
    assert setup.reply(inbound_reply(setup.sent[1])) == 200
    totals = setup.totals()
    assert totals["replied"] == 1 and totals["late_replies"] == 1


def test_the_unsubscribe_link_suppresses_the_address(setup) -> None:
    token = setup.sent[0].custom_args["token"]
    status, page = post(f"{setup.url}/unsubscribe/{token}", None, {}, method="GET")
    assert status == 200 and b"unsubscribed" in page
    status, _ = post(f"{setup.url}/unsubscribe/{setup.sent[1].custom_args['token']}", b"", {})
    assert status == 200  # RFC 8058 one-click: a POST
    assert post(f"{setup.url}/unsubscribe/{'a' * 16}", None, {}, method="GET")[0] == 200
    assert post(f"{setup.url}/unsubscribe/nope", None, {}, method="GET")[0] == 404
    with MailStore.open(setup.state, "live") as store:
        assert {setup.sent[0].to, setup.sent[1].to} <= store.suppressions.emails()
    assert setup.totals()["unsubscribed"] == 2


def test_raw_inbound_posts_are_understood(setup) -> None:
    m = setup.sent[2]
    raw = (
        f"From: {m.to}\r\nTo: {m.body['reply_to']['email']}\r\nSubject: Re: hi\r\n"
        "Message-ID: <raw-1@example.net>\r\nContent-Type: text/plain\r\n\r\nTell me more.\r\n"
    )
    assert setup.reply({"email": raw, "to": m.body["reply_to"]["email"]}) == 200
    assert setup.totals()["replied"] == 1


def test_inbound_parse_behind_a_password(tmp_path, emulator) -> None:
    s = Setup(tmp_path, emulator, "s3cret-parse-password")
    try:
        fields = inbound_reply(s.sent[0])
        assert s.reply(fields) == 401
        assert s.reply(fields, auth=("parse", "wrong")) == 401
        assert s.reply(fields, auth=("parse", "s3cret-parse-password")) == 200
        assert s.totals()["replied"] == 1
    finally:
        s.close()


def test_a_long_reply_under_the_limit_is_taken(tmp_path, emulator) -> None:
    """One form field bigger than werkzeug's 500 kB default, under our own limit."""
    s = Setup(tmp_path, emulator, None, Limits(max_inbound_bytes=2_000_000))
    try:
        assert s.reply(inbound_reply(s.sent[0], text="z" * 700_000)) == 200
        assert s.totals()["replied"] == 1
    finally:
        s.close()


def test_a_bad_verification_key_stops_the_inbox_at_startup(tmp_path) -> None:
    with pytest.raises(InboxError, match="verification key"):
        make_server(tmp_path / "state", public_key="bm90IGEga2V5")


def test_the_campaign_and_the_inbox_write_at_once(setup, emulator) -> None:
    """The inbox storing events while the campaign sends the next batch: no 'database is
    locked', nothing lost."""
    from evaluators.base import Launch

    folders = (setup.state.parent / "a", setup.state.parent / "b")
    ev = SendGridEvaluator(config(emulator, cooldown_days=0), "reply_rate")
    second = ev.launch(Launch("cold-email", 2, *folders, setup.state))
    rounds = [[event(m, "delivered") for m in setup.sent] for _ in range(5)]
    statuses: list[int] = []
    poster = threading.Thread(target=lambda: statuses.extend(setup.events(r)[0] for r in rounds))
    poster.start()
    ev.start(second, setup.state)
    poster.join(30)
    assert statuses == [200] * 5
    assert stored_events(setup.state) == 100
    assert len(emulator.accepted) == 40
    assert urllib.request.urlopen(f"{setup.url}/health").status == 200
