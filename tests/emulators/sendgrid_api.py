"""A loopback emulator of SendGrid's v3 Mail Send API, and the posts SendGrid makes to us.

The real `sendgrid` SDK talks to it through its `host=` option:
`SendGridAPIClient(api_key, host=emulator.url)`. `POST /v3/mail/send` checks the Bearer key,
validates the body the way the real API does (personalizations, from, subject, content,
reply_to, custom_args, headers, mail_settings.sandbox_mode) and answers 202 with an
X-Message-Id (200 and no id in sandbox mode), or 400 with SendGrid's `errors` list. It can be
told to answer 429 (with Retry-After or X-RateLimit-Reset) or a 5xx the next N times, to hold
the answer to the Nth accepted message until released (to kill a sender mid-call), and it
records every request.

The other direction: `post_events` signs an Event Webhook post the way SendGrid does (ECDSA
P-256 over timestamp + payload, SHA-256, base64 DER) with a key pair from `keypair()`;
`post_inbound` posts an Inbound Parse form (multipart/form-data); `event` builds an event for a
message the emulator received, custom_args as top-level keys.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
BAD_KEY = "The provided authorization grant is invalid, expired, or revoked"


@dataclass
class Received:
    """One request to the emulator, and what it answered."""

    path: str
    headers: dict[str, str]
    body: Any
    status: int
    message_id: str | None = None

    @property
    def custom_args(self) -> dict[str, str]:
        return dict(self.body.get("custom_args") or {}) if isinstance(self.body, dict) else {}

    @property
    def to(self) -> str:
        return self.body["personalizations"][0]["to"][0]["email"]


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


def _error(message: str, field_name: str | None) -> dict[str, Any]:
    return {"message": message, "field": field_name, "help": f"{HELP}#message.{field_name}"}


def _check_address(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        return [_error(f"The {where} object must be provided and have an email.", where)]
    if not EMAIL.match(value["email"]):
        return [_error("Does not contain a valid address.", f"{where}.email")]
    if "name" in value and not isinstance(value["name"], str):
        return [_error("The name must be a string.", f"{where}.name")]
    return []


def _check_personalizations(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("personalizations")
    if not isinstance(items, list) or not items:
        return [_error("You must have at least one personalization.", "personalizations")]
    if len(items) > 1000:
        return [_error("The personalization block is limited to 1000.", "personalizations")]
    errors = []
    for i, p in enumerate(items):
        to = p.get("to") if isinstance(p, dict) else None
        if not isinstance(to, list) or not to:
            errors.append(_error("The to array is required.", f"personalizations.{i}.to"))
            continue
        seen = set()
        for j, address in enumerate(to):
            errors += _check_address(address, f"personalizations.{i}.to.{j}")
            email = str(address.get("email", "")).lower() if isinstance(address, dict) else ""
            if email in seen:
                errors.append(
                    _error("Each email address should be unique.", f"personalizations.{i}")
                )
            seen.add(email)
        if "subject" not in body and not (isinstance(p, dict) and p.get("subject")):
            errors.append(_error("The subject is required.", "subject"))
    return errors


def _check_content(body: dict[str, Any]) -> list[dict[str, Any]]:
    content = body.get("content")
    if "template_id" in body and content is None:
        return []
    if not isinstance(content, list) or not content:
        return [_error("Unless a valid template_id is provided, content is required.", "content")]
    errors = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            errors.append(_error("The content type is required.", f"content.{i}.type"))
        elif not isinstance(part.get("value"), str) or not part["value"]:
            errors.append(
                _error(
                    "The content value must be a string at least one character in length.",
                    f"content.{i}.value",
                )
            )
    types = [p.get("type") for p in content if isinstance(p, dict)]
    if "text/plain" in types and types[0] != "text/plain":
        errors.append(_error("If present, text/plain must be first.", "content"))
    return errors


def _check_extras(body: dict[str, Any]) -> list[dict[str, Any]]:
    errors = []
    if "subject" in body and (not isinstance(body["subject"], str) or not body["subject"]):
        errors.append(_error("The subject must be a non-empty string.", "subject"))
    if "reply_to" in body:
        errors += _check_address(body["reply_to"], "reply_to")
    args = body.get("custom_args")
    if args is not None:
        if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            errors.append(_error("Invalid type. Expected: object of strings.", "custom_args"))
        elif len(json.dumps(args)) > 10000:
            errors.append(_error("custom_args is limited to 10,000 bytes.", "custom_args"))
    headers = body.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            errors.append(_error("Headers must be an object of strings.", "headers"))
        elif RESERVED_HEADERS & {k.lower() for k in headers}:
            errors.append(_error("You may not set reserved headers.", "headers"))
    sandbox = (body.get("mail_settings") or {}).get("sandbox_mode")
    if sandbox is not None and not isinstance((sandbox or {}).get("enable"), bool):
        errors.append(
            _error(
                "The sandbox mode enable param should be a boolean value.",
                "mail_settings.sandbox_mode.enable",
            )
        )
    return errors


def validate(body: Any) -> list[dict[str, Any]]:
    """SendGrid's checks of a Mail Send body: the errors it would answer 400 with."""
    if not isinstance(body, dict):
        return [_error("The request body must be a JSON object.", None)]
    errors = _check_personalizations(body)
    errors += _check_address(body.get("from"), "from")
    errors += _check_content(body)
    errors += _check_extras(body)
    return errors


class SendGridEmulator:
    """The Mail Send endpoint on 127.0.0.1, in a background thread."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.requests: list[Received] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.hold_at: int | None = None  # hold the answer to this accepted message (1-based)
        self.held = threading.Event()
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> SendGridEmulator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- scripting

    def fail_next(self, n: int, status: int = 429, **headers: str) -> None:
        """Answer the next n sends with this status (headers e.g. Retry_After="1")."""
        fixed = {k.replace("_", "-"): v for k, v in headers.items()}
        with self.lock:
            self.faults += [Fault(status, fixed) for _ in range(n)]

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.status in (200, 202)]

    def tokens(self) -> list[str]:
        return [r.custom_args.get("token", "") for r in self.accepted]

    # -- serving

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                emulator._answer(self)

        return Handler

    def _answer(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length)
        headers = {k: v for k, v in http.headers.items()}
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError:
            body = None
        status, extra, payload, message_id = self._decide(http.path, headers, body)
        record = Received(http.path, headers, body, status, message_id)
        with self.lock:
            self.requests.append(record)
            count = len(self.accepted)
        if status in (200, 202) and self.hold_at is not None and count == self.hold_at:
            self.held.set()
            self.release.wait(30)
        try:
            data = json.dumps(payload).encode() if payload is not None else b""
            http.send_response(status)
            for k, v in extra.items():
                http.send_header(k, v)
            http.send_header("Content-Length", str(len(data)))
            if data:
                http.send_header("Content-Type", "application/json")
            http.end_headers()
            http.wfile.write(data)
        except OSError:
            pass  # the client went away (killed while waiting): its loss

    def _decide(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any, str | None]:
        if path != "/v3/mail/send":
            return 404, {}, {"errors": [_error("Not found", None)]}, None
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {}, {"errors": [{"field": None, "message": BAD_KEY, "help": None}]}, None
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault:
            return fault.status, fault.headers, {"errors": [_error("try again", None)]}, None
        errors = validate(body)
        if errors:
            return 400, {}, {"errors": errors}, None
        if ((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable"):
            return 200, {}, None, None
        message_id = secrets.token_urlsafe(16)
        return 202, {"X-Message-Id": message_id}, None, message_id


# The other direction: what SendGrid posts to the inbox ---------------------------------


def keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair: the private key signs, the public key is given to the inbox as
    SendGrid shows it (base64 DER SubjectPublicKeyInfo)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sign(private: ec.EllipticCurvePrivateKey, payload: str, timestamp: str) -> str:
    signature = private.sign((timestamp + payload).encode(), ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def post(url: str, data: bytes, headers: dict[str, str], method: str = "POST") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_events(
    url: str,
    events: list[dict[str, Any]] | str,
    private: ec.EllipticCurvePrivateKey | None,
    *,
    timestamp: str | None = None,
    signature: str | None = None,
) -> tuple[int, bytes]:
    """Post an Event Webhook batch, signed as SendGrid signs it (unless `signature` is given)."""
    payload = events if isinstance(events, str) else json.dumps(events)
    stamp = timestamp or str(int(time.time()))
    headers = {"Content-Type": "application/json"}
    if private is not None or signature is not None:
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = stamp
        headers["X-Twilio-Email-Event-Webhook-Signature"] = signature or sign(
            private, payload, stamp
        )
    return post(url, payload.encode(), headers)


def encode_multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    """multipart/form-data, as Inbound Parse posts it."""
    boundary = "xYzZY" + secrets.token_hex(8)
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    body = "".join(parts) + f"--{boundary}--\r\n"
    return body.encode(), f"multipart/form-data; boundary={boundary}"


def post_inbound(
    url: str, fields: dict[str, str], auth: tuple[str, str] | None = None
) -> tuple[int, bytes]:
    data, content_type = encode_multipart(fields)
    headers = {"Content-Type": content_type}
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return post(url, data, headers)


def inbound_reply(
    message: Received, text: str = "Sounds good, call me.", headers: str = "", **overrides: str
) -> dict[str, str]:
    """An Inbound Parse post answering a message the emulator received."""
    reply_to = message.body["reply_to"]["email"]
    sender = message.to
    subject = overrides.pop("subject", f"Re: {message.body.get('subject', '')}")
    head = (
        f"From: {sender}\nTo: {reply_to}\nSubject: {subject}\n"
        f"Message-ID: <{secrets.token_hex(6)}@{sender.split('@')[1]}>\n{headers}"
    )
    fields = {
        "from": sender,
        "to": reply_to,
        "subject": subject,
        "headers": head,
        "text": text,
        "envelope": json.dumps({"to": [reply_to], "from": sender}),
        "spam_score": "0.1",
        "charsets": json.dumps({"to": "UTF-8", "subject": "UTF-8", "text": "UTF-8"}),
    }
    fields.update(overrides)
    return fields


def event(message: Received, kind: str, **extra: Any) -> dict[str, Any]:
    """An Event Webhook event for a received message: custom_args as top-level keys."""
    return {
        "email": message.to,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode(),
        "sg_message_id": f"{message.message_id}.filterdrecv-p3mdw1-1-2",
        "smtp-id": f"<{message.message_id}@ismtpd0001p1>",
        **message.custom_args,
        **extra,
    }
