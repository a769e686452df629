"""The SendGrid evaluator: cold emails A/B tested on reply rate, the result days later.

Each experiment is one batch: `batch_per_arm` prospects get the champion's copy and as many get
the challenger's, drawn at random and sent interleaved (champion, challenger, ...) in the same
hours, so that the time of day, the weekday and the list's quality hit both arms alike. The
copy is the study's editable subject and body templates, filled from the protected prospects
CSV (`{first_name}`, `{company}`, any column), plus a footer the copy cannot remove (postal
address, unsubscribe link). Every message carries custom_args (study, experiment, arm, token,
batch) and a reply-to address holding its token, so replies and events map back to their arm.

The asynchronous contract (evaluators.base.AsyncEvaluator):

- launch(): the plan (prospects, arms, tokens, both arms' copy as text); reads, never writes.
- start(): the sends, each recorded before and after its API call (email_ab.mailstore), with
  retries on 429 and 5xx that honour Retry-After; idempotent, and called again on every
  campaign run: it also sends what the daily cap held back.
- collect(): replies over delivered per arm as of the last look time (core.abtest.as_of), and
  whether the window (`window_h` after the last send) has closed.
- wait_until(): True on the simulated clock (it moves it), False on the real one.

The evaluator hands each step to the part that does it: Planner (launch), LiveSends and
SimulatedSends (start), email_ab.collect's Collector (collect) and email_ab.clock's Clock
(waited_h, wait_until); email_ab.compose renders each message from the handle alone.

`mode: auto` sends through SendGrid when SENDGRID_API_KEY is set and to the study's simulated
audience (email_ab.audience) otherwise; a batch keeps the mode it was launched in. The key is
read from the environment when sending and written nowhere.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import itertools
import logging
import os
import random
import re
import secrets
import string
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.error import URLError

from pydantic import Field, field_validator, model_validator

from core.secrets import redact
from core.study import EvaluatorConfig
from email_ab import audience
from email_ab.clock import Clock
from email_ab.collect import ARMS, Collector
from email_ab.compose import compose, custom_args, full_name, mail_body, reply_address
from email_ab.mailstore import MailStore, Stores, store_path
from evaluators.base import (
    BadCandidate,
    Collected,
    Kind,
    Launch,
    Measurement,
    NotNow,
    Unavailable,
    iso,
)

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}
PLACEHOLDER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EMAIL = re.compile(r"^[^@\s,;<>\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
RESERVED_DOMAINS = re.compile(
    r"(^|\.)(example\.(com|net|org)|test|example|invalid|localhost)$", re.IGNORECASE
)
SIM_PUBLIC_URL = "https://inbox.example.invalid"
MAX_SUBJECT = 200
MAX_BODY = 20000
CHUNK = 500  # simulated sends per transaction


class CopyError(BadCandidate):
    """Copy that cannot be sent (missing file, unknown placeholder, empty subject); the message
    names the file. For the challenger's copy it is the candidate's fault: record a crash."""


class ProspectsError(Unavailable, ValueError):
    """A prospects CSV that cannot be used; the message names the file and the lines."""


class NoCapacity(NotNow):
    """Not enough prospects may be mailed now (suppressed, cooling down, planned elsewhere):
    launch nothing this time; `retry_at` (ISO 8601) says when trying again is worth it."""


class SendError(Unavailable):
    """Sending cannot go on: no API key, a refused key, live mode not configured. The campaign
    should stop; unsent messages stay planned for the next start()."""


# Configuration -------------------------------------------------------------------------


class SendGridConfig(EvaluatorConfig):
    kind: Literal["sendgrid"] = "sendgrid"
    subject: str = "subject.txt"  # editable: the subject template
    body: str = "body.txt"  # editable: the body template (plain text)
    prospects: str = "prospects.csv"  # protected: email + any columns (.csv or .csv.gz)
    audience: str = "audience.py"  # protected: the simulated audience (offline runs)
    mode: Literal["auto", "simulate", "live"] = "auto"
    from_email: str
    from_name: str = ""
    reply_to: str  # replies+<token>@... is derived from it: Inbound Parse's hostname
    public_url: str | None = None  # where `autoresearch inbox` is reached (unsubscribe links)
    postal_address: str = ""  # the sender's postal address, in every footer (required live)
    footer: str = "\n\n--\n{from_name}, {postal_address}\nNo more emails: {unsubscribe_url}\n"
    batch_per_arm: int = Field(3000, ge=1)
    window_h: float = Field(72, gt=0)  # a reply counts when it comes within this of its send
    look_every_h: float = Field(24, gt=0)  # counts change for the decision only this often
    max_wait_h: float = Field(336, gt=0)  # undecided by then: discarded as inconclusive
    max_pending: int = Field(2, ge=1)  # A/B tests in flight at once
    daily_cap: int = Field(1000, ge=1)  # messages in any 24 hours, all tests together
    cooldown_days: float = Field(30, ge=0)  # never the same person twice within this
    sandbox_mode: bool = True  # SendGrid validates and delivers nothing: the first live runs
    send_to_reserved_domains: bool = False  # example.com & co. outside sandbox: emulators only
    api_host: str = "https://api.sendgrid.com"
    api_key_env: str = "SENDGRID_API_KEY"
    timeout_s: float = Field(20, gt=0)
    max_attempts: int = Field(6, ge=1)  # per message, on 429, 5xx and refused connections
    max_backoff_s: float = Field(60, gt=0)  # a longer Retry-After stops this start()

    @field_validator("from_email", "reply_to")
    @classmethod
    def _address(cls, value: str) -> str:
        if not EMAIL.match(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @field_validator("reply_to")
    @classmethod
    def _plus_free(cls, value: str) -> str:
        if "+" in value.split("@")[0]:
            raise ValueError("must have no '+': the message's token is added as +<token>")
        return value

    @field_validator("footer")
    @classmethod
    def _unsubscribe(cls, value: str) -> str:
        if "{unsubscribe_url}" not in value:
            raise ValueError("must contain {unsubscribe_url}: every message can unsubscribe")
        return value

    @model_validator(mode="after")
    def _windows(self) -> SendGridConfig:
        if self.max_wait_h <= self.window_h:
            raise ValueError(
                f"max_wait_h ({self.max_wait_h:g}) must exceed window_h ({self.window_h:g})"
            )
        return self

    def describe(self) -> str:
        return (
            f"Each experiment emails the champion's copy and yours to {self.batch_per_arm} "
            f"prospects each, at random and in the same hours; the metric is replies within "
            f"{self.window_h:g} h over delivered messages (out-of-office answers and bounces "
            f"do not count), known days later. The copy is {self.subject} and {self.body}: "
            "plain text with {column} placeholders from the prospects list."
        )

    def resolved_mode(self) -> Literal["simulate", "live"]:
        if self.mode != "auto":
            return self.mode
        return "live" if os.environ.get(self.api_key_env) else "simulate"


# Copy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    subject: str
    body: str

    def placeholders(self) -> set[str]:
        return placeholders(self.subject, "subject") | placeholders(self.body, "body")


def placeholders(template: str, origin: str) -> set[str]:
    """The {names} a template uses; CopyError for anything but plain {column} fields."""
    names = set()
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            if not PLACEHOLDER.match(name) or spec or conversion:
                raise CopyError(
                    f"{origin}: placeholder {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}} is not a plain {{column}}; write a literal "
                    "brace as {{ or }}"
                )
            names.add(name)
    except ValueError as exc:
        if isinstance(exc, CopyError):
            raise
        raise CopyError(f"{origin}: {exc}; write a literal brace as {{{{ or }}}}") from None
    return names


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CopyError(f"{path}: the file is missing") from None
    except UnicodeDecodeError as exc:
        raise CopyError(f"{path}: not UTF-8 text (offset {exc.start})") from None


def read_copy(folder: Path, config: SendGridConfig, columns: set[str]) -> Copy:
    """The copy checked out in a study folder, checked against the prospects' columns."""
    subject_path, body_path = folder / config.subject, folder / config.body
    subject, body = _read_text(subject_path).strip(), _read_text(body_path)
    if not subject:
        raise CopyError(f"{subject_path}: the subject is empty")
    if "\n" in subject:
        raise CopyError(f"{subject_path}: the subject must be one line")
    if len(subject) > MAX_SUBJECT:
        raise CopyError(f"{subject_path}: the subject has {len(subject)} characters (max 200)")
    if not body.strip():
        raise CopyError(f"{body_path}: the body is empty")
    if len(body) > MAX_BODY:
        raise CopyError(f"{body_path}: the body has {len(body)} characters (max {MAX_BODY})")
    for path, text in ((subject_path, subject), (body_path, body)):
        unknown = placeholders(text, str(path)) - columns
        if unknown:
            names = ", ".join("{" + u + "}" for u in sorted(unknown))
            raise CopyError(
                f"{path}: unknown placeholder(s) {names}; the prospects have "
                f"{', '.join(sorted(columns))}"
            )
    return Copy(subject, body)


# Prospects -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prospects:
    columns: tuple[str, ...]  # email first
    rows: tuple[tuple[str, ...], ...]


_PROSPECTS: dict[tuple[str, int, int], Prospects] = {}


def load_prospects(path: Path) -> Prospects:
    """The prospects CSV (or .csv.gz), with an `email` column; duplicates after the first are
    dropped; a malformed address is an error naming its line. Cached by path, size and mtime."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ProspectsError(f"{path}: the prospects file is missing") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _PROSPECTS:
        _PROSPECTS.clear()
        _PROSPECTS[key] = _parse_prospects(path)
    return _PROSPECTS[key]


def _parse_prospects(path: Path) -> Prospects:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        header = [h.strip() for h in (reader.fieldnames or [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ProspectsError(f"{path}: not a UTF-8 CSV file ({exc})") from None
    if "email" not in header:
        raise ProspectsError(f"{path}: no `email` column (columns: {', '.join(header)})")
    columns = ("email", *[h for h in header if h != "email"])
    rows, seen, bad = [], set(), []
    for line, record in enumerate(reader, start=2):
        values = {k.strip(): (v or "").strip() for k, v in record.items() if k}
        email = values.get("email", "").lower()
        if not EMAIL.match(email):
            bad.append(f"line {line}: {email or '(empty)'!r}")
            continue
        if email not in seen:
            seen.add(email)
            rows.append((email, *[values.get(c, "") for c in columns[1:]]))
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ProspectsError(f"{path}: {len(bad)} malformed email address(es): {shown}")
    if not rows:
        raise ProspectsError(f"{path}: no prospects")
    return Prospects(columns, tuple(rows))


# Times ---------------------------------------------------------------------------------


def new_token() -> str:
    """16 characters of base32: 80 random bits, safe in an email's local part."""
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()


# Sending through the API ---------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What became of one API call: sent, unknown (maybe sent), failed (refused for good),
    refused (the key), retry (not taken: try again after `wait_s`), later (gave up for now),
    skipped (suppressed while waiting to retry)."""

    kind: Literal["sent", "unknown", "failed", "refused", "retry", "later", "skipped"]
    message_id: str | None = None
    reason: str = ""
    wait_s: float = 0.0


class _RedactFilter(logging.Filter):
    """python_http_client logs request headers (the API key) at DEBUG: scrub every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def quiet_http_client_logs() -> None:
    """The SDK's HTTP layer must never log the Authorization header."""
    logger = logging.getLogger("python_http_client")
    logger.setLevel(logging.WARNING)
    inner = logging.getLogger("python_http_client.client")
    if not any(isinstance(f, _RedactFilter) for f in inner.filters):
        inner.addFilter(_RedactFilter())


def retry_after_s(headers: Any, attempt: int, now: float) -> float:
    """How long to wait before trying again: Retry-After (seconds or a date), else
    X-RateLimit-Reset (epoch seconds), else exponential backoff with jitter."""
    value = headers.get("Retry-After") if headers is not None else None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset") if headers is not None else None
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return min(30.0, 2.0 ** (attempt - 1)) * (0.5 + random.random() / 2)


def _api_errors(body: Any) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    return redact(" ".join(text.split()))[:300]


class LiveSender:
    """One API call at a time through the official SDK, with a timeout.

    A 429, a 5xx or an error while connecting and writing the request (urllib's URLError) means
    SendGrid did not take the message: `retry`. An error while waiting for the answer (a
    timeout, a dropped connection) means it may have: `unknown`, never tried again.
    """

    def __init__(self, config: SendGridConfig) -> None:
        key = os.environ.get(config.api_key_env)
        if not key:
            raise SendError(
                f"{config.api_key_env} is not set: live sending needs a SendGrid API key with "
                "Mail Send permission in the environment"
            )
        from sendgrid import SendGridAPIClient

        quiet_http_client_logs()
        self.client = SendGridAPIClient(api_key=key, host=config.api_host)
        self.client.client.timeout = config.timeout_s

    def post(self, body: dict[str, Any], attempt: int) -> Attempt:
        from python_http_client.exceptions import HTTPError

        try:
            response = self.client.client.mail.send.post(request_body=body)
            return Attempt("sent", response.headers.get("X-Message-Id"))
        except HTTPError as exc:
            code = exc.status_code
            reason = f"HTTP {code}: {_api_errors(exc.body)}"
            if code in (401, 403):
                return Attempt("refused", reason=reason)
            if code not in RETRY_STATUS:
                return Attempt("failed", reason=reason)
            return Attempt(
                "retry", reason=reason, wait_s=retry_after_s(exc.headers, attempt, time.time())
            )
        except URLError as exc:  # the request did not get through whole: not sent
            reason = f"connection failed: {exc.reason}"
            return Attempt("retry", reason=reason, wait_s=retry_after_s(None, attempt, time.time()))
        except (OSError, ValueError) as exc:  # after the request went out: may be sent
            return Attempt("unknown", reason=f"no answer: {exc!r}"[:300])


# launch: the plan ----------------------------------------------------------------------


class Planner:
    """launch(): who gets which arm's copy, from the study folders and the store. It reads and
    never writes: the campaign saves the plan before anything is sent."""

    def __init__(self, config: SendGridConfig, stores: Stores, clock: Clock) -> None:
        self.config = config
        self.stores = stores
        self.clock = clock

    def plan(self, launch: Launch) -> dict[str, Any]:
        """One A/B batch's handle: the prospects in pairs, one of each arm, in random order."""
        cfg = self.config
        mode = cfg.resolved_mode()
        if mode == "live":
            self._check_live()
        prospects = load_prospects(launch.champion / cfg.prospects)
        columns = set(prospects.columns)
        try:
            champion = read_copy(launch.champion, cfg, columns)
        except CopyError as exc:
            raise CopyError(f"the champion's copy: {exc}") from None
        challenger = read_copy(launch.challenger, cfg, columns)
        now, excluded = self._exclusions(launch.state_dir, mode)
        chosen = self._choose(prospects, excluded, mode, launch, now)
        nonce = secrets.token_hex(4)
        messages = pairs(chosen, random.Random(f"{launch.study}:{launch.experiment}:{nonce}"))
        handle: dict[str, Any] = {
            "kind": "sendgrid",
            "version": 1,
            "batch": f"{launch.study}-{launch.experiment}-{nonce}",
            "study": launch.study,
            "experiment": launch.experiment,
            "mode": mode,
            "planned_at": now,
            "planned_at_iso": iso(now),
            "window_h": cfg.window_h,
            "look_every_h": cfg.look_every_h,
            "sender": self._sender(),
            "arms": {
                "champion": {"subject": champion.subject, "body": champion.body},
                "challenger": {"subject": challenger.subject, "body": challenger.body},
            },
            "columns": list(prospects.columns),
            "messages": messages,
        }
        if mode == "simulate":
            handle["audience"] = self._audience_snapshot(launch.champion)
        return handle

    def _check_live(self) -> None:
        cfg = self.config
        missing = [
            name
            for name, value in (
                ("public_url", cfg.public_url),
                ("postal_address", cfg.postal_address),
            )
            if not value
        ]
        if missing:
            raise SendError(
                f"evaluator.{' and evaluator.'.join(missing)} must be set to send for real: "
                "the unsubscribe link points at the inbox, and the footer carries the address"
            )

    def _exclusions(self, state_dir: Path, mode: str) -> tuple[float, set[str]]:
        """Now, and the addresses not to plan: suppressed, cooling down, planned elsewhere."""
        if not store_path(state_dir, mode).exists():
            return self.clock.now(None, mode), set()
        with self.stores.open(state_dir, mode) as store:
            now = self.clock.now(store, mode)
            cooldown_s = self.config.cooldown_days * 86400.0
            excluded = store.suppressions.emails() | store.sends.mailed_since(now - cooldown_s)
            return now, excluded | store.plans.reserved()

    def _choose(
        self, prospects: Prospects, excluded: set[str], mode: str, launch: Launch, now: float
    ) -> list[list[str]]:
        cfg = self.config
        need = 2 * cfg.batch_per_arm
        # nothing reaches a reserved test domain offline or in sandbox mode
        reserved_ok = cfg.send_to_reserved_domains or mode == "simulate" or cfg.sandbox_mode
        fresh = [row for row in prospects.rows if row[0] not in excluded]
        eligible = [
            list(row)
            for row in fresh
            if reserved_ok or not RESERVED_DOMAINS.search(row[0].split("@")[1])
        ]
        if len(eligible) < need:
            reserved = len(fresh) - len(eligible)
            why = f"; {reserved} at reserved test domains (example.com...)" if reserved else ""
            raise NoCapacity(
                f"only {len(eligible)} of {len(prospects.rows)} prospects may be mailed now "
                f"({len(prospects.rows) - len(fresh)} suppressed, cooling down or planned{why}); "
                f"a batch needs {need}",
                iso(now + 86400.0),
            )
        rng = random.Random(f"{launch.study}:{launch.experiment}:{now}")
        return rng.sample(eligible, need)

    def _sender(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "from_email": cfg.from_email,
            "from_name": cfg.from_name,
            "reply_to": cfg.reply_to,
            "public_url": (cfg.public_url or SIM_PUBLIC_URL).rstrip("/"),
            "postal_address": cfg.postal_address,
            "footer": cfg.footer,
            "sandbox_mode": cfg.sandbox_mode,
        }

    def _audience_snapshot(self, folder: Path) -> dict[str, str]:
        path = folder / self.config.audience
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise audience.AudienceError(
                f"{path}: no audience model; offline runs need one (or set mode: live)"
            ) from None
        audience.load_model(source, str(path))  # fails here, not at the first send
        return {"origin": str(path), "sha256": audience.digest(source), "source": source}


def pairs(chosen: list[list[str]], rng: random.Random) -> list[list[str]]:
    """The plan's messages [token, arm, email, columns...]: the chosen shuffled, then each
    pair split between the arms in a random order, so that both arms go out in the same hours."""
    rng.shuffle(chosen)
    messages = []
    for i in range(0, len(chosen) - 1, 2):
        arms = list(ARMS)
        rng.shuffle(arms)
        for arm, row in zip(arms, chosen[i : i + 2], strict=True):
            messages.append([new_token(), arm, *row])
    return messages


# start: the sends ----------------------------------------------------------------------


class LiveSends:
    """start() live: one API call per message, each claimed under the suppressions, the
    cool-down and the daily cap, retried on 429 and 5xx, its state written before and after."""

    def __init__(self, config: SendGridConfig) -> None:
        self.config = config
        self.sleep = time.sleep  # tests may speed the backoff up

    def send(self, handle: dict[str, Any], store: MailStore) -> None:
        """Send the batch's planned messages in plan order, until the cap or SendGrid stops."""
        cfg = self.config
        sender = LiveSender(cfg)
        by_token = {m[0]: m for m in handle["messages"]}
        sent, sandbox = 0, bool(handle["sender"]["sandbox_mode"])
        for row in store.plans.planned(handle["batch"]):
            reason = self._claim(store, row["token"], sandbox)
            if reason == "cap":
                log.info("%s: daily cap of %d reached", handle["batch"], cfg.daily_cap)
                break
            if reason:
                continue
            mail = mail_body(handle, by_token[row["token"]])
            outcome = self._send_one(store, sender, row["token"], mail, sandbox)
            if not self._record(store, row["token"], outcome, handle["batch"]):
                break
            sent += outcome.kind == "sent"
        log.info("%s: %d message(s) sent", handle["batch"], sent)

    def _claim(self, store: MailStore, token: str, sandbox: bool) -> str | None:
        """In one transaction: check the suppressions, the cool-down and the cap, then mark the
        message `sending`. Returns why it was not claimed ('cap': not now), or None."""
        cfg = self.config
        with store.transaction():
            now, row = time.time(), store.plans.message(token)
            reason = store.sends.why_not(row, now, cfg.daily_cap, cfg.cooldown_days * 86400.0)
            domain = row["email"].split("@")[1]
            if reason is None and not (cfg.send_to_reserved_domains or sandbox):
                reason = "reserved domain" if RESERVED_DOMAINS.search(domain) else None
            if reason and reason != "cap":
                store.sends.set_state(row["token"], "skipped", reason)
            if reason is None:
                store.sends.mark_sending(row["token"], now)
            return reason

    def _send_one(
        self, store: MailStore, sender: LiveSender, token: str, body: dict[str, Any], sandbox: bool
    ) -> Attempt:
        """Call the API until it takes the message or gives a final answer. The message is
        `sending` only while a call is out: released (planned) before each backoff sleep, so
        a kill while sleeping loses nothing."""
        cfg = self.config
        for attempt in range(1, cfg.max_attempts + 1):
            if attempt > 1:  # claimed again: the list may have changed while we slept
                reason = self._claim(store, token, sandbox)
                if reason == "cap":
                    return Attempt("later", reason="daily cap reached while retrying")
                if reason:
                    return Attempt("skipped", reason=reason)
            outcome = sender.post(body, attempt)
            if outcome.kind != "retry":
                return outcome
            with store.transaction():
                store.sends.release(token, outcome.reason)
            if attempt == cfg.max_attempts or outcome.wait_s > cfg.max_backoff_s:
                break
            log.info("SendGrid: %s; retrying in %.1f s", outcome.reason, outcome.wait_s)
            self.sleep(outcome.wait_s)
        return Attempt("later", reason=f"{outcome.reason} (after {attempt} attempt(s))")

    def _record(self, store: MailStore, token: str, outcome: Attempt, batch: str) -> bool:
        """Write down what the API call did; False when sending must stop for now."""
        with store.transaction():
            if outcome.kind == "sent":
                store.sends.mark_sent(token, time.time(), outcome.message_id)
            elif outcome.kind in ("unknown", "failed"):
                store.sends.set_state(token, outcome.kind, outcome.reason)
            elif outcome.kind != "skipped":
                store.sends.release(token, outcome.reason)
        if outcome.kind == "refused":
            raise SendError(
                f"SendGrid refused the request ({outcome.reason}); check "
                f"{self.config.api_key_env}, its Mail Send permission and that from_email is a "
                "verified sender"
            )
        if outcome.kind == "later":
            log.warning("%s: SendGrid is not taking mail now (%s)", batch, outcome.reason)
            return False
        if outcome.kind in ("unknown", "failed"):
            log.warning("%s: message %s %s: %s", batch, token, outcome.kind, outcome.reason)
        return True


class SimulatedSends:
    """start() offline: the simulated audience gets the batch under the same suppressions,
    cool-down and daily cap, a chunk per transaction, and what it will answer is queued."""

    def __init__(self, config: SendGridConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._models: dict[str, audience.Model] = {}

    def send(self, handle: dict[str, Any], store: MailStore) -> None:
        """Send the batch's planned messages at the simulated now, until the cap."""
        sim = audience.Simulator(self._model(handle), handle["batch"])
        by_token = {m[0]: m for m in handle["messages"]}
        now = self.clock.now(store, "simulate", handle["planned_at"])
        cfg = self.config
        cooldown_s = cfg.cooldown_days * 86400.0
        planned = store.plans.planned(handle["batch"])
        sent_today = store.sends.sent_since(now - 86400.0)  # offline, no other writer: read once
        blocked = store.suppressions.emails() | store.sends.mailed_since(now - cooldown_s)
        while True:
            done = 0
            with store.transaction():  # nothing leaves the machine: a chunk at a time
                for row in itertools.islice(planned, CHUNK):
                    done += 1
                    if row["email"] in blocked:
                        store.sends.set_state(row["token"], "skipped", self._why(store, row, now))
                        continue
                    if sent_today >= cfg.daily_cap:
                        return
                    sent_today += 1
                    blocked.add(row["email"])
                    self._simulate_one(handle, store, sim, by_token[row["token"]], row, now)
            if done < CHUNK:
                return

    def _why(self, store: MailStore, row: Any, now: float) -> str:
        cfg = self.config
        cooldown_s = cfg.cooldown_days * 86400.0
        return store.sends.why_not(row, now, cfg.daily_cap, cooldown_s, 0) or "cooldown"

    def _simulate_one(
        self,
        handle: dict[str, Any],
        store: MailStore,
        sim: audience.Simulator,
        message: list[str],
        row: Any,
        now: float,
    ) -> None:
        """One simulated send: recorded sent, and what the audience will answer, queued."""
        prospect, subject, body, _ = compose(handle, message)
        store.sends.mark_sent_now(row["token"], now, f"sim{row['token']}")
        sent = audience.Sent(
            token=row["token"],
            arm=row["arm"],
            email=row["email"],
            name=full_name(prospect) or row["email"],
            subject=subject,
            body=body,
            prospect=prospect,
            at=now,
            reply_to=reply_address(handle, row["token"]),
            custom_args=custom_args(handle, row["token"], row["arm"]),
        )
        store.sim.queue(sim.outcomes(sent))

    def _model(self, handle: dict[str, Any]) -> audience.Model:
        snap = handle["audience"]
        if snap["sha256"] not in self._models:
            self._models[snap["sha256"]] = audience.load_model(snap["source"], snap["origin"])
        return self._models[snap["sha256"]]


# The evaluator -------------------------------------------------------------------------


class SendGridEvaluator:
    """Plans, sends and counts A/B batches of cold email (see the module docstring): each step
    of the asynchronous contract handed to the part that does it."""

    def __init__(self, config: SendGridConfig, metric: str) -> None:
        self.config = config
        self.metric = metric
        self.stores = Stores()
        self.clock = Clock(self.stores)
        self.planner = Planner(config, self.stores, self.clock)
        self.live = LiveSends(config)
        self.simulated = SimulatedSends(config, self.clock)
        self.collector = Collector(self.stores, self.clock, config.daily_cap)

    def close(self) -> None:
        """Close this thread's mail store connections."""
        self.stores.close()

    def evaluate(
        self, workdir: Path, log_path: Path, sandbox: Any = None, env: Any = None
    ) -> Measurement:
        """The synchronous protocol, not this kind's: checks the copy renders, then says why
        there is no number now."""
        try:
            prospects = load_prospects(workdir / self.config.prospects)
            read_copy(workdir, self.config, set(prospects.columns))
            ok = f"the copy renders for {len(prospects.rows)} prospects"
        except (CopyError, ProspectsError) as exc:
            ok = f"the copy does not render: {exc}"
        reason = (
            "the sendgrid evaluator is asynchronous: its reply rate is known days after a "
            f"campaign launches an A/B batch ({ok})"
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(reason + "\n")
        return Measurement.crash(reason)

    @property
    def max_wait_h(self) -> float:
        return self.config.max_wait_h

    @property
    def max_pending(self) -> int:
        return self.config.max_pending

    def waited_h(self, handle: dict[str, Any], state_dir: Path) -> float:
        """Hours since the batch was planned, on its own clock: for max_wait_h."""
        return self.clock.waited_h(handle, state_dir)

    def wait_until(self, when: str, state_dir: Path) -> bool:
        """Offline: move the simulated clock to `when`, deliver what is due, True. Live: False
        (a later scheduled run collects)."""
        if self.config.resolved_mode() == "live":
            return False
        self.clock.advance(when, state_dir)
        return True

    def launch(self, launch: Launch) -> dict[str, Any]:
        """Plan one A/B batch; reads the study folders and the store, writes nothing."""
        return self.planner.plan(launch)

    def start(self, handle: dict[str, Any], state_dir: Path) -> None:
        """Send what the plan still owes, within the daily cap and the suppressions."""
        mode, batch = handle["mode"], handle["batch"]
        with self.stores.open(state_dir, mode) as store:
            if store.plans.decided_at(batch) is not None:
                return
            if store.plans.size(batch) < len(handle["messages"]):
                rows = ((m[0], m[1], m[2], seq) for seq, m in enumerate(handle["messages"]))
                store.plans.add(batch, rows, handle["planned_at"])
            lost = store.plans.in_flight_to_unknown(batch)
            if lost:
                log.warning(
                    "%s: %d message(s) were in flight when the last sender stopped; they are "
                    "not sent again (an event or a reply will prove them sent)",
                    batch,
                    lost,
                )
            sends = self.simulated if mode == "simulate" else self.live
            sends.send(handle, store)

    def collect(self, handle: dict[str, Any], state_dir: Path) -> Collected:
        """Replies over delivered per arm as of the last look, and whether the window closed."""
        return self.collector.collect(handle, state_dir)

    def finish(self, handle: dict[str, Any], state_dir: Path, status: str) -> int:
        """Record the decision: what the batch had not sent is cancelled, and replies from now
        on are shown as late, never counted. Returns how many messages were cancelled."""
        mode = handle["mode"]
        with self.stores.open(state_dir, mode) as store:
            return store.plans.decide(handle["batch"], status, self.clock.now(store, mode))


KIND = Kind(SendGridConfig, SendGridEvaluator, runs_code=False, asynchronous=True)
