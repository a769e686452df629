"""`autoresearch inbox`: the HTTP receiver for what SendGrid posts back about a study's mail.

Put it behind the study's public hostname (TLS at a reverse proxy):

- `POST /sendgrid/events`: the Event Webhook (a JSON array of delivered, bounce, dropped,
  deferred, unsubscribe, group_unsubscribe, spamreport ... events), verified with SendGrid's
  ECDSA signature (sendgrid.helpers.eventwebhook.EventWebhook, the headers
  X-Twilio-Email-Event-Webhook-Signature and -Timestamp): 401 without them, 403 when the
  signature is wrong or the timestamp is older than `max_age_s`.
- `POST /sendgrid/inbound`: Inbound Parse (multipart/form-data, parsed or raw), optionally
  behind HTTP Basic auth (the password in the Parse URL: https://parse:SECRET@host/...).
- `GET` or `POST /unsubscribe/<token>`: the link in every footer and the one-click
  List-Unsubscribe header: the address goes on the suppression list.

Bodies over the limits are refused with 413 before they are read. Everything is stored in the
study's mail store (email_ab.mailstore), idempotently: SendGrid retries, and a retried post
counts once. Classification (automatic replies, bounces, suppressions) happens there, so the
simulated audience goes through the same code.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server as werkzeug_server
from werkzeug.wrappers import Request, Response

from email_ab.mailstore import MailStore, reply_from_parse

log = logging.getLogger(__name__)

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TOKEN_PATH = re.compile(r"^/unsubscribe/([a-z2-7]{16})/?$")
FUTURE_SKEW_S = 60.0
UNSUBSCRIBED_PAGE = (
    "<!doctype html><meta charset=utf-8><title>Unsubscribed</title>"
    "<p>You are unsubscribed: you will get no more email from us.</p>"
)


class InboxError(ValueError):
    """An inbox that cannot start (a bad verification key); the message says what to fix."""


@dataclass(frozen=True)
class Limits:
    max_event_bytes: int = 2 * 1024 * 1024
    max_inbound_bytes: int = 10 * 1024 * 1024
    max_age_s: float = 600.0  # an older signed timestamp is refused (replays)


def verifier(public_key: str) -> Any:
    """SendGrid's verifier for the Event Webhook's verification key (base64, as SendGrid
    shows it under Mail Settings; PEM armour is accepted too)."""
    from sendgrid.helpers.eventwebhook import EventWebhook

    key = "".join(line for line in public_key.strip().splitlines() if not line.startswith("-----"))
    try:
        return EventWebhook(public_key=key)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InboxError(
            f"the Event Webhook verification key is not a base64 ECDSA public key ({exc}); "
            "copy it from SendGrid: Settings, Mail Settings, Event Webhook, Signature "
            "Verification"
        ) from None


class Inbox:
    """The WSGI application. One mail store connection per request (each in its thread)."""

    def __init__(
        self,
        state_dir: Path,
        public_key: str | None,
        limits: Limits = Limits(),
        inbound_password: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.webhook = verifier(public_key) if public_key else None
        self.limits = limits
        self.inbound_password = inbound_password
        self.clock = clock
        MailStore.open(self.state_dir, "live").close()  # a broken store fails at startup

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.route(request)
        except HTTPException as exc:  # werkzeug's own limits (form parts, sizes): 4xx
            response = self.text(exc.code or 400, exc.description or exc.name)
        except Exception:  # noqa: BLE001 (a 500 makes SendGrid retry later)
            log.exception("inbox: %s %s failed", request.method, request.path)
            response = self.text(500, "internal error; retry later")
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/sendgrid/events" and method == "POST":
            return self.events(request)
        if path == "/sendgrid/inbound" and method == "POST":
            return self.inbound(request)
        match = TOKEN_PATH.match(path)
        if match and method in ("GET", "POST"):
            return self.unsubscribe(match.group(1))
        if path == "/health":
            return self.text(200, "ok")
        return self.text(404, "not found")

    @staticmethod
    def text(status: int, message: str) -> Response:
        return Response(message + "\n", status=status, mimetype="text/plain")

    def too_big(self, request: Request, limit: int) -> Response | None:
        """413 before reading a body over the limit; 411 when its length is not given."""
        length = request.content_length
        if length is None:
            return self.text(411, "Content-Length required")
        if length > limit:
            return self.text(413, f"body of {length} bytes is over the limit of {limit}")
        return None

    # -- the Event Webhook

    def events(self, request: Request) -> Response:
        refused = self.too_big(request, self.limits.max_event_bytes)
        if refused:
            return refused
        if self.webhook is None:
            return self.text(401, "no verification key configured: signed events only")
        signature, stamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
        if not signature or not stamp:
            return self.text(401, f"missing {SIGNATURE} or {TIMESTAMP}")
        problem = self.stale(stamp)
        if problem:
            return self.text(403, problem)
        try:
            payload = request.get_data(cache=False).decode("utf-8")
        except UnicodeDecodeError:
            return self.text(400, "the body is not UTF-8")
        if not self.signed(payload, signature, stamp):
            return self.text(403, "bad signature")
        try:
            events = json.loads(payload)
        except json.JSONDecodeError:
            return self.text(400, "the body is not JSON")
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            return self.text(400, "expected a JSON array of event objects")
        now = self.clock()
        with MailStore.open(self.state_dir, "live") as store:
            new = sum(store.inbound.record_event(e, now) for e in events)
        return Response(
            json.dumps({"received": len(events), "new": new}), mimetype="application/json"
        )

    def stale(self, stamp: str) -> str | None:
        try:
            sent = float(stamp)
        except ValueError:
            return "the timestamp is not a number"
        age = self.clock() - sent
        if age > self.limits.max_age_s:
            return f"the timestamp is {age:.0f} s old (limit {self.limits.max_age_s:g} s)"
        if age < -FUTURE_SKEW_S:
            return "the timestamp is in the future"
        return None

    def signed(self, payload: str, signature: str, stamp: str) -> bool:
        try:
            return bool(self.webhook.verify_signature(payload, signature, stamp))
        except (ValueError, TypeError, binascii.Error):
            return False

    # -- Inbound Parse

    def inbound(self, request: Request) -> Response:
        if self.inbound_password and not self.authorized(request):
            response = self.text(401, "authorization required")
            response.headers["WWW-Authenticate"] = 'Basic realm="inbound"'
            return response
        refused = self.too_big(request, self.limits.max_inbound_bytes)
        if refused:
            return refused
        request.max_content_length = self.limits.max_inbound_bytes
        request.max_form_memory_size = self.limits.max_inbound_bytes  # a raw message is one field
        fields = {k: request.form.get(k, "") for k in request.form.keys()}
        if "email" in fields and "headers" not in fields:
            fields = raw_fields(fields["email"])
        reply = reply_from_parse(fields)
        with MailStore.open(self.state_dir, "live") as store:
            stored = store.inbound.record_reply(reply, self.clock())
        what = "automatic reply" if reply.automatic else "reply"
        log.info(
            "inbox: %s for %s (%s)", what, reply.token or "no token", "new" if stored else "known"
        )
        return self.text(200, "ok")  # 2xx always, or SendGrid retries for three days

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        password = decoded.partition(":")[2]
        return hmac.compare_digest(password.encode(), (self.inbound_password or "").encode())

    # -- the unsubscribe link

    def unsubscribe(self, token: str) -> Response:
        with MailStore.open(self.state_dir, "live") as store:
            store.inbound.record_unsubscribe(token, self.clock())
        return Response(UNSUBSCRIBED_PAGE, mimetype="text/html")  # the same for any token


def raw_fields(raw: str) -> dict[str, str]:
    """Inbound Parse's raw mode posts the whole message as `email`: take what we need."""
    message = BytesParser(policy=policy.default).parsebytes(raw.encode("utf-8", "replace"))
    body = message.get_body(preferencelist=("plain", "html"))
    headers = "".join(f"{k}: {v}\n" for k, v in message.items())
    return {
        "headers": headers,
        "from": str(message.get("From", "")),
        "to": str(message.get("To", "")),
        "cc": str(message.get("Cc", "")),
        "subject": str(message.get("Subject", "")),
        "text": body.get_content() if body is not None else "",
    }


def make_server(
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    public_key: str | None = None,
    limits: Limits = Limits(),
    inbound_password: str | None = None,
    clock: Callable[[], float] = time.time,
) -> BaseWSGIServer:
    """A threaded HTTP server for the inbox (port 0: any free port); call serve_forever()."""
    app = Inbox(state_dir, public_key, limits, inbound_password, clock)
    return werkzeug_server(host, port, app, threaded=True)


def serve_inbox(
    state_dir: Path,
    port: int = 8025,
    host: str = "127.0.0.1",
    public_key: str | None = None,
    inbound_password: str | None = None,
    limits: Limits = Limits(),
) -> None:
    """Serve until Ctrl-C. Without a public key, event posts are refused (401)."""
    server = make_server(state_dir, host, port, public_key, limits, inbound_password)
    where = f"http://{host}:{server.server_port}"
    log.info(
        "inbox for %s on %s: POST /sendgrid/events, POST /sendgrid/inbound, GET /unsubscribe/",
        state_dir,
        where,
    )
    if public_key is None:
        log.warning("no Event Webhook verification key: event posts will be refused (401)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
