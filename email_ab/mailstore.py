"""The mail store: every message, event, reply and suppression of one study, in SQLite.

It lives in the study's state folder (`mail/live.sqlite3`, or `mail/simulate.sqlite3` for the
simulated audience) and is written by two processes at once: the campaign (plans and sends) and
the inbox (webhooks and replies). WAL mode, a busy timeout and short `BEGIN IMMEDIATE`
transactions make that safe. Every write is idempotent: an event is keyed by its `sg_event_id`,
a reply by its Message-ID, a suppression by its address, so a webhook delivered twice counts
once.

A message goes planned -> sending -> sent, with its state committed before and after the API
call. A message found `sending` by the next start() was in flight when the sender died: it
becomes `unknown` and is never sent again (a send may be lost, never doubled); any event or
reply for it later proves it was sent. The other ends: skipped (suppressed, cooling down, a
reserved domain), failed (refused by the API), cancelled (its test was decided first).

Times are seconds since the epoch on the store's clock: the real one, or the simulated one kept
here (meta `sim_now`) and moved only by the simulated audience.

A MailStore is the connection and its transactions; each job over the tables is one of its
parts: `plans` (a batch's messages), `sends` (one message's states, the cap, the cool-down),
`suppressions`, `inbound` (events, unsubscribes, replies), `counts` (per arm) and `sim` (the
simulated clock and queue).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 15000
TOKEN_RE = re.compile(r"\+([a-z2-7]{16})@", re.IGNORECASE)
SENDING, SENT, UNKNOWN = "sending", "sent", "unknown"
OUT = (SENDING, SENT, UNKNOWN)  # states that count as mailed (cap, cool-down)
UNDELIVERED = ("bounce", "dropped", "blocked")
SUPPRESSING = {
    "bounce": "bounced",
    "blocked": "bounced",
    "dropped": "dropped",
    "spamreport": "spam report",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
SNIPPET_CHARS = 300
AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?(reply|response)|out of (the )?office|"
    r"autoreply|auto:|abwesenheit|absence|r[ée]ponse automatique|respuesta autom[áa]tica|"
    r"risposta automatica|autosvar|automatisch antwoord|on vacation|away from)",
    re.IGNORECASE,
)
AUTO_SENDER = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply)@", re.IGNORECASE)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    token TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    arm TEXT NOT NULL,
    email TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'planned',
    reason TEXT,
    planned_at REAL NOT NULL,
    sending_at REAL,
    sent_at REAL,
    message_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_batch ON messages(batch, seq);
CREATE INDEX IF NOT EXISTS messages_email ON messages(email, sending_at);
CREATE INDEX IF NOT EXISTS messages_out ON messages(sending_at);
CREATE INDEX IF NOT EXISTS messages_mid ON messages(message_id);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    token TEXT,
    kind TEXT NOT NULL,
    email TEXT,
    at REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_token ON events(token, kind);
CREATE TABLE IF NOT EXISTS replies (
    reply_id TEXT PRIMARY KEY,
    token TEXT,
    sender TEXT,
    automatic INTEGER NOT NULL,
    why TEXT,
    subject TEXT,
    snippet TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS replies_token ON replies(token, automatic);
CREATE TABLE IF NOT EXISTS suppressions (
    email TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    source TEXT,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    batch TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sim_queue (
    id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sim_queue_at ON sim_queue(at);
"""


class StoreError(Exception):
    """A mail store that cannot be used; the message names the file."""


# Replies: what an Inbound Parse post says, classified ---------------------------------


@dataclass(frozen=True)
class Reply:
    """One inbound email, as far as the study cares: whose message it answers, and whether a
    person wrote it."""

    reply_id: str
    token: str | None
    sender: str
    automatic: str | None  # why it is an automatic reply, or None for a person's reply
    subject: str
    snippet: str


def token_in(addresses: Iterable[str]) -> str | None:
    """The first message token in plus-addresses like replies+<token>@reply.example.com."""
    for address in addresses:
        m = TOKEN_RE.search(address or "")
        if m:
            return m.group(1).lower()
    return None


def automatic_reason(headers: str, sender: str, subject: str) -> str | None:
    """Why an inbound email is an automatic reply (out of office, autoresponder, bounce), or
    None when a person wrote it. RFC 3834's Auto-Submitted first, then the vendors' headers,
    then the sender and the subject."""
    h = HeaderParser().parsestr(headers or "", headersonly=True)
    auto = (h.get("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if h.get(name) is not None:
            return f"{name} header"
    precedence = (h.get("Precedence") or "").strip().lower()
    if precedence in ("auto_reply", "bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    if "multipart/report" in (h.get("Content-Type") or "").lower():
        return "delivery report"
    address = parseaddr(sender or "")[1]
    if AUTO_SENDER.match(address):
        return f"sent by {address.split('@')[0].lower()}"
    if AUTO_SUBJECT.match(subject or ""):
        return "out-of-office subject"
    return None


def reply_from_parse(fields: dict[str, str]) -> Reply:
    """Classify one Inbound Parse post (its form fields: from, to, cc, subject, headers, text,
    envelope). The token comes from the SMTP envelope first, then the To and Cc headers."""
    headers = fields.get("headers", "")
    parsed = HeaderParser().parsestr(headers, headersonly=True)
    envelope: dict[str, Any] = {}
    try:
        loaded = json.loads(fields.get("envelope") or "{}")
        envelope = loaded if isinstance(loaded, dict) else {}
    except json.JSONDecodeError:
        pass
    rcpt = envelope.get("to") or []
    rcpt = [rcpt] if isinstance(rcpt, str) else [str(a) for a in rcpt]
    listed = [a for _, a in getaddresses([fields.get("to", ""), fields.get("cc", "")])]
    sender = fields.get("from", "") or str(parsed.get("From", ""))
    subject = fields.get("subject", "") or str(parsed.get("Subject", ""))
    message_id = str(parsed.get("Message-ID", "") or "").strip()
    text = fields.get("text") or fields.get("html") or ""
    reply_id = (
        message_id
        or "sha256:"
        + hashlib.sha256(
            json.dumps([headers, sender, subject, text], sort_keys=True).encode()
        ).hexdigest()
    )
    return Reply(
        reply_id=reply_id,
        token=token_in(rcpt + listed),
        sender=parseaddr(sender)[1].lower(),
        automatic=automatic_reason(headers, sender, subject),
        subject=subject[:200],
        snippet=" ".join(text.split())[:SNIPPET_CHARS],
    )


def event_id(event: dict[str, Any]) -> str:
    """SendGrid's own sg_event_id, or a hash of the whole event when it has none."""
    given = event.get("sg_event_id")
    if isinstance(given, str) and given:
        return given
    return "sha256:" + hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()


# The store -----------------------------------------------------------------------------


def store_path(state_dir: Path, mode: str) -> Path:
    return Path(state_dir) / "mail" / f"{mode}.sqlite3"


class MailStore:
    """One study's mail records: the connection, its transactions, and one part per job over
    the tables. Open one per thread; close it (or use `with`)."""

    def __init__(self, path: Path, durable: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._depth = 0
        try:
            self.db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                with self.transaction():
                    for statement in filter(str.strip, SCHEMA.split(";")):
                        self.db.execute(statement)
                    self._check_version()
                    self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable mail store ({exc})") from None
        self.plans = Plans(self)
        self.sends = Sends(self)
        self.suppressions = Suppressions(self)
        self.inbound = Inbound(self)
        self.counts = Counts(self)
        self.sim = SimQueue(self)

    @classmethod
    def open(cls, state_dir: Path, mode: str) -> MailStore:
        """The store of a study's state folder: `live` (durable) or `simulate`."""
        return cls(store_path(state_dir, mode), durable=mode == "live")

    def _check_version(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row["value"]) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema {row['value']} is newer than this program "
                f"({SCHEMA_VERSION}); upgrade autoresearch"
            )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> MailStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: all of it or none of it, one writer at a time. Nested
        calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self._depth = 0
            self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.execute("COMMIT")


class Stores:
    """The evaluator's stores, one connection per thread and folder, kept open between calls:
    opening one checkpoints the WAL."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def open(self, state_dir: Path, mode: str) -> Iterator[MailStore]:
        """The study's mail store, left open when the block ends."""
        stores: dict[tuple[str, str], MailStore] = self._local.__dict__.setdefault("stores", {})
        key = (str(Path(state_dir).resolve()), mode)
        store = stores.get(key)
        if store is None or not store.path.exists():
            store = stores[key] = MailStore.open(state_dir, mode)
        yield store

    def close(self) -> None:
        """Close this thread's connections."""
        for store in self._local.__dict__.pop("stores", {}).values():
            store.close()


class _Part:
    """One job's share of the store: its tables, on the store's connection and transactions."""

    def __init__(self, store: MailStore) -> None:
        self.store = store
        self.db = store.db


class Plans(_Part):
    """A batch's messages: planned, found in flight after a kill, cancelled by the decision."""

    def add(self, batch: str, messages: Iterable[tuple[str, str, str, int]], at: float) -> int:
        """Record a batch's messages (token, arm, email, seq) as planned; known ones are left
        as they are. Returns how many were new."""
        with self.store.transaction():
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO messages (token, batch, arm, email, seq, planned_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                ((t, batch, arm, email.lower(), seq, at) for t, arm, email, seq in messages),
            )
            return self.db.total_changes - before

    def planned(self, batch: str, chunk: int = 500) -> Iterator[sqlite3.Row]:
        """The batch's messages still to send, in plan order, read a chunk at a time."""
        last = -1
        while True:
            rows = self.db.execute(
                "SELECT * FROM messages WHERE batch = ? AND state = 'planned' AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (batch, last, chunk),
            ).fetchall()
            yield from rows
            if len(rows) < chunk:
                return
            last = rows[-1]["seq"]

    def size(self, batch: str) -> int:
        return self.db.execute(
            "SELECT COUNT(*) FROM messages WHERE batch = ?", (batch,)
        ).fetchone()[0]

    def in_flight_to_unknown(self, batch: str) -> int:
        """Messages a killed sender left `sending`: never sent again, proven sent by an event."""
        with self.store.transaction():
            return self.db.execute(
                "UPDATE messages SET state = 'unknown', reason = 'in flight when the sender "
                "stopped' WHERE batch = ? AND state = 'sending'",
                (batch,),
            ).rowcount

    def reserved(self) -> set[str]:
        """Addresses planned in a batch not yet sent: not to be planned twice."""
        rows = self.db.execute("SELECT DISTINCT email FROM messages WHERE state = 'planned'")
        return {r["email"] for r in rows}

    def message(self, token: str) -> sqlite3.Row:
        return self.db.execute("SELECT * FROM messages WHERE token = ?", (token,)).fetchone()

    def messages(self, batch: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM messages WHERE batch = ? ORDER BY seq", (batch,)
        ).fetchall()

    def decide(self, batch: str, status: str, now: float) -> int:
        """Record a test's decision (once) and cancel what it had not sent yet."""
        with self.store.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO decisions VALUES (?, ?, ?)", (batch, status, now)
            )
            return self.db.execute(
                "UPDATE messages SET state = 'cancelled', reason = 'test decided' "
                "WHERE batch = ? AND state = 'planned'",
                (batch,),
            ).rowcount

    def decided_at(self, batch: str) -> float | None:
        row = self.db.execute("SELECT at FROM decisions WHERE batch = ?", (batch,)).fetchone()
        return row["at"] if row else None


class Sends(_Part):
    """One message at a time through planned -> sending -> sent, and what the daily cap and
    the cool-down count. Call the writes inside transaction()."""

    def why_not(
        self, row: sqlite3.Row, now: float, cap: int, cooldown_s: float, sent: int | None = None
    ) -> str | None:
        """Why this planned message must not go now: a reason to skip it for good
        ('suppressed: ...', 'cooldown'), 'cap' (not now), or None (send it). `sent`: the
        messages of the last 24 hours, when the caller keeps count itself."""
        suppressed = self.store.suppressions.reason(row["email"])
        if suppressed is not None:
            return f"suppressed: {suppressed}"
        recent = self.db.execute(
            "SELECT 1 FROM messages WHERE email = ? AND token != ? AND state IN (?, ?, ?) "
            "AND sending_at > ? LIMIT 1",
            (row["email"], row["token"], *OUT, now - cooldown_s),
        ).fetchone()
        if recent:
            return "cooldown"
        if (self.sent_since(now - 86400.0) if sent is None else sent) >= cap:
            return "cap"
        return None

    def mailed_since(self, since: float) -> set[str]:
        """Addresses with a message out (or maybe out) since then: the cool-down's list."""
        rows = self.db.execute(
            "SELECT DISTINCT email FROM messages WHERE state IN (?, ?, ?) AND sending_at > ?",
            (*OUT, since),
        )
        return {r["email"] for r in rows}

    def sent_since(self, since: float) -> int:
        """Messages that left (or may have left) since then: what the daily cap counts."""
        return self.db.execute(
            "SELECT COUNT(*) FROM messages WHERE sending_at > ? AND state IN (?, ?, ?)",
            (since, *OUT),
        ).fetchone()[0]

    def first_send_since(self, since: float) -> float | None:
        return self.db.execute(
            "SELECT MIN(sending_at) FROM messages WHERE sending_at > ? AND state IN (?, ?, ?)",
            (since, *OUT),
        ).fetchone()[0]

    def mark_sent_now(self, token: str, now: float, message_id: str | None) -> None:
        """planned -> sent at once: for sends that cannot be lost halfway (simulated)."""
        self.db.execute(
            "UPDATE messages SET state = 'sent', sending_at = ?, sent_at = ?, message_id = ?, "
            "attempts = attempts + 1 WHERE token = ? AND state = 'planned'",
            (now, now, message_id, token),
        )

    def set_state(self, token: str, state: str, reason: str | None = None) -> None:
        self.db.execute(
            "UPDATE messages SET state = ?, reason = ? WHERE token = ?", (state, reason, token)
        )

    def mark_sending(self, token: str, now: float) -> None:
        self.db.execute(
            "UPDATE messages SET state = 'sending', sending_at = ?, attempts = attempts + 1 "
            "WHERE token = ? AND state = 'planned'",
            (now, token),
        )

    def mark_sent(self, token: str, now: float, message_id: str | None) -> None:
        self.db.execute(
            "UPDATE messages SET state = 'sent', sent_at = ?, message_id = ?, reason = NULL "
            "WHERE token = ?",
            (now, message_id, token),
        )

    def release(self, token: str, reason: str) -> None:
        """Back to planned: the API said it did not take the message (429, 5xx, refused)."""
        self.db.execute(
            "UPDATE messages SET state = 'planned', sending_at = NULL, reason = ? "
            "WHERE token = ? AND state = 'sending'",
            (reason, token),
        )


class Suppressions(_Part):
    """Addresses never mailed again (bounced, unsubscribed, replied...), whoever sent to them."""

    def add(self, email: str, reason: str, now: float, source: str = "") -> bool:
        """Suppress an address; True when it was not suppressed before."""
        if not email:
            return False
        with self.store.transaction():
            cur = self.db.execute(
                "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?, ?)",
                (email.strip().lower(), reason, source, now),
            )
            return cur.rowcount > 0

    def reason(self, email: str) -> str | None:
        """Why an address is suppressed, or None when it may be mailed."""
        hit = self.db.execute(
            "SELECT reason FROM suppressions WHERE email = ?", (email,)
        ).fetchone()
        return hit["reason"] if hit else None

    def emails(self) -> set[str]:
        return {r["email"] for r in self.db.execute("SELECT email FROM suppressions")}


class Inbound(_Part):
    """What comes back about our messages: events, unsubscribe links, replies. Each proves its
    message was sent; bounces, complaints, unsubscribes and a person's reply suppress."""

    def _token_of(self, event: dict[str, Any]) -> str | None:
        token = event.get("token")
        if isinstance(token, str):
            row = self.db.execute(
                "SELECT token FROM messages WHERE token = ?", (token.lower(),)
            ).fetchone()
            if row:
                return row["token"]
        sg_id = str(event.get("sg_message_id") or "").split(".")[0]
        if sg_id:
            row = self.db.execute(
                "SELECT token FROM messages WHERE message_id = ?", (sg_id,)
            ).fetchone()
            return row["token"] if row else None
        return None

    def _proven_sent(self, token: str) -> None:
        self.db.execute(
            "UPDATE messages SET state = 'sent', sent_at = sending_at, reason = 'proven sent "
            "by a later event' WHERE token = ? AND state = 'unknown'",
            (token,),
        )

    def record_event(self, event: dict[str, Any], now: float) -> bool:
        """One Event Webhook event. Returns True when it was new and ours. Bounces, drops,
        spam reports and unsubscribes suppress the address whoever sent the message."""
        kind = str(event.get("event", ""))
        email = str(event.get("email") or "").lower()
        if kind == "bounce" and event.get("type") == "blocked":
            kind = "blocked"
        with self.store.transaction():
            if kind in SUPPRESSING:
                self.store.suppressions.add(email, SUPPRESSING[kind], now, f"event {kind}")
            token = self._token_of(event)
            if token is None:
                return False
            cur = self.db.execute(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?)",
                (event_id(event), token, kind, email, now, json.dumps(event, sort_keys=True)),
            )
            if cur.rowcount:
                self._proven_sent(token)
            return cur.rowcount > 0

    def record_unsubscribe(self, token: str, now: float, source: str = "link") -> bool:
        """The unsubscribe link of one message was followed: suppress its address."""
        with self.store.transaction():
            row = self.db.execute(
                "SELECT email FROM messages WHERE token = ?", (token.lower(),)
            ).fetchone()
            if row is None:
                return False
            self.store.suppressions.add(row["email"], "unsubscribed", now, source)
            self.db.execute(
                "INSERT OR IGNORE INTO events VALUES (?, ?, 'unsubscribe', ?, ?, ?)",
                (f"link:{token.lower()}", token.lower(), row["email"], now, "{}"),
            )
            self._proven_sent(token.lower())
            return True

    def record_reply(self, reply: Reply, now: float) -> bool:
        """One inbound email. True when it was new and answers one of our messages. A person's
        reply takes the prospect off the list: the conversation is a person's job now."""
        with self.store.transaction():
            if reply.token is None:
                return False
            row = self.db.execute(
                "SELECT email FROM messages WHERE token = ?", (reply.token,)
            ).fetchone()
            if row is None:
                return False
            cur = self.db.execute(
                "INSERT OR IGNORE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    reply.reply_id,
                    reply.token,
                    reply.sender,
                    1 if reply.automatic else 0,
                    reply.automatic,
                    reply.subject,
                    reply.snippet,
                    now,
                ),
            )
            if cur.rowcount:
                self._proven_sent(reply.token)
                if not reply.automatic:
                    self.store.suppressions.add(row["email"], "replied", now, "reply")
            return cur.rowcount > 0


# One query: per arm, its messages joined with their events and replies as of a time (:t),
# replies counted up to the cut (:cut, the decision) and within the window (:w) of the send.
ARM_COUNTS = """
WITH m AS (SELECT * FROM messages WHERE batch = :b),
ev AS (
  SELECT e.token,
    MAX(e.kind IN ('bounce', 'dropped', 'blocked')) AS bounced,
    MAX(e.kind IN ('unsubscribe', 'group_unsubscribe')) AS unsubscribed,
    MAX(e.kind = 'spamreport') AS spam
  FROM m CROSS JOIN events e ON e.token = m.token
  WHERE e.at <= :t GROUP BY e.token),
rp AS (
  SELECT r.token,
    MIN(CASE WHEN r.automatic = 0 THEN r.at END) AS first,
    MAX(r.automatic) AS auto
  FROM m CROSS JOIN replies r ON r.token = m.token
  WHERE r.at <= :t GROUP BY r.token)
SELECT m.arm,
  COUNT(*) AS planned,
  SUM(m.state = 'sent' AND m.sent_at <= :t) AS sent,
  SUM(m.state = 'sent' AND m.sent_at <= :t AND rp.first IS NULL
      AND COALESCE(ev.bounced, 0)) AS bounced,
  SUM(m.state = 'sent' AND rp.first <= :cut AND rp.first <= m.sent_at + :w)
      AS replied,
  SUM(m.state = 'sent' AND (rp.first > m.sent_at + :w OR rp.first > :cut))
      AS late_replies,
  SUM(COALESCE(rp.auto, 0)) AS auto_replies,
  SUM(COALESCE(ev.unsubscribed, 0)) AS unsubscribed,
  SUM(COALESCE(ev.spam, 0)) AS spam_reports,
  SUM(m.state = 'planned') AS unsent,
  SUM(m.state = 'skipped') AS skipped,
  SUM(m.state = 'failed') AS failed,
  SUM(m.state IN ('sending', 'unknown')) AS unknown,
  SUM(m.state = 'cancelled') AS cancelled
FROM m LEFT JOIN ev ON ev.token = m.token LEFT JOIN rp ON rp.token = m.token
GROUP BY m.arm
"""


class Counts(_Part):
    """What a batch's A/B test reads: its counts per arm, and whether it may still send."""

    def arm_counts(
        self, batch: str, as_of: float, window_s: float, decided_at: float | None
    ) -> dict[str, dict[str, int]]:
        """Per arm, as of a time: planned, sent, bounced, delivered, replied (a person's first
        reply within window_s of the send and not after the decision), late (after those),
        auto-replies, unsubscribes, spam reports, and the message states."""
        cutoff = as_of if decided_at is None else min(as_of, decided_at)
        rows = self.db.execute(
            ARM_COUNTS, {"b": batch, "t": as_of, "w": window_s, "cut": cutoff}
        ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            counts = {k: int(r[k] or 0) for k in r.keys() if k != "arm"}
            counts["delivered"] = counts["sent"] - counts["bounced"]
            out[r["arm"]] = counts
        return out

    def batch_times(self, batch: str) -> tuple[float | None, int]:
        """The batch's last send time and how many of its messages may still go out."""
        row = self.db.execute(
            "SELECT MAX(COALESCE(sent_at, sending_at)), SUM(state IN ('planned', 'sending')) "
            "FROM messages WHERE batch = ?",
            (batch,),
        ).fetchone()
        return row[0], int(row[1] or 0)


class SimQueue(_Part):
    """The simulated audience's clock (meta `sim_now`) and what it will post back, when."""

    def now(self) -> float | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'sim_now'").fetchone()
        return float(row["value"]) if row else None

    def set_now(self, when: float) -> None:
        """Move the simulated clock forward (never back)."""
        with self.store.transaction():
            now = self.now()
            if now is None or when > now:
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('sim_now', ?)", (repr(float(when)),)
                )

    def queue(self, items: Iterable[tuple[str, float, str, dict[str, Any]]]) -> None:
        """Schedule simulated events (id, at, kind 'event' or 'inbound', payload); call inside
        transaction()."""
        self.db.executemany(
            "INSERT OR IGNORE INTO sim_queue VALUES (?, ?, ?, ?)",
            ((i, at, kind, json.dumps(payload)) for i, at, kind, payload in items),
        )

    def due(self, until: float) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM sim_queue WHERE at <= ? ORDER BY at, id", (until,)
        ).fetchall()

    def dequeue(self, ids: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM sim_queue WHERE id = ?", ((i,) for i in ids))
