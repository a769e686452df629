"""The simulated audience and its clock, for studies run offline.

A study's protected audience model (a Python file in the study, snapshotted into each launch's
handle) says, for one rendered message and one prospect, the probability of a reply, an
automatic reply, a bounce, an unsubscribe and a spam report, and how long each takes. Here each
simulated send draws its outcome (seeded by the message's token: the same message always does
the same thing) and queues what comes back as SendGrid would post it: Event Webhook events and
Inbound Parse form fields, with their headers. `advance` moves the simulated clock and feeds
what is due through the same code the inbox uses, so the offline demo exercises the real
bookkeeping: dedupe, automatic replies, bounces out of the denominator, suppressions.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from email_ab.mailstore import MailStore, reply_from_parse

OUTCOMES = ("reply", "auto_reply", "bounce", "unsubscribe", "spamreport")
DEFAULT_DELAYS_H = {  # lognormal: (median hours, sigma)
    "reply": (8.0, 1.2),
    "auto_reply": (0.05, 0.8),
    "bounce": (0.01, 0.5),
    "unsubscribe": (4.0, 1.5),
    "spamreport": (2.0, 1.0),
}
HUMAN_REPLIES = (
    "Thanks for reaching out. Happy to talk next week, Tuesday works.",
    "Not right now, but ask me again next quarter.",
    "Who else at your company should I loop in? Send me a few times.",
    "We already use something similar. What makes yours different?",
    "Interesting. Can you send a short case study first?",
)


class AudienceError(Exception):
    """An audience model that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Model:
    """A loaded audience model: rates per message, delays per outcome."""

    rates: Callable[[str, str, dict[str, str]], dict[str, float]]
    delays_h: dict[str, tuple[float, float]]
    origin: str


def load_model(source: str, origin: str) -> Model:
    """Run the model's source (a protected study file) and check what it defines."""
    name = f"autoresearch_audience_{digest(source)[:12]}"
    module = types.ModuleType(name)
    module.__file__ = origin
    sys.modules[name] = module  # dataclasses and pickling look a module up by its name
    try:
        exec(compile(source, origin, "exec"), module.__dict__)  # noqa: S102 (protected file)
    except Exception as exc:
        raise AudienceError(f"{origin}: the audience model failed to load: {exc!r}") from None
    rates = getattr(module, "rates", None)
    if not callable(rates):
        raise AudienceError(
            f"{origin}: an audience model defines rates(subject, body, prospect) -> "
            "{'reply': p, 'auto_reply': p, 'bounce': p, 'unsubscribe': p, 'spamreport': p}"
        )
    delays = {**DEFAULT_DELAYS_H, **getattr(module, "DELAYS_H", {})}
    return Model(rates, delays, origin)


def digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


# The clock -----------------------------------------------------------------------------


def now(store: MailStore, start: float | None = None) -> float:
    """The simulated time; the first call sets it to `start` (or the hour now)."""
    current = store.sim.now()
    if current is None:
        current = start if start is not None else math.floor(time.time() / 3600) * 3600.0
        store.sim.set_now(current)
        current = store.sim.now() or current
    return current


def advance(store: MailStore, when: float) -> int:
    """Move the simulated clock to `when` and deliver every queued event and reply due by
    then, each at its own time, in one transaction. Returns how many were delivered."""
    with store.transaction():
        store.sim.set_now(when)
        due = store.sim.due(when)
        for item in due:
            payload = json.loads(item["payload"])
            if item["kind"] == "event":
                store.inbound.record_event(payload, item["at"])
            else:
                store.inbound.record_reply(reply_from_parse(payload), item["at"])
        store.sim.dequeue(item["id"] for item in due)
    return len(due)


# Outcomes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One simulated send: what the audience sees, and how to address what comes back."""

    token: str
    arm: str
    email: str
    name: str
    subject: str
    body: str  # the copy as written, without the footer (the same in both arms)
    prospect: dict[str, str]
    at: float
    reply_to: str
    custom_args: dict[str, str]


class Simulator:
    """Draws each message's outcome from the model and queues what SendGrid would post."""

    def __init__(self, model: Model, seed: str) -> None:
        self.model = model
        self.seed = seed

    def outcomes(self, sent: Sent) -> list[tuple[str, float, str, dict[str, Any]]]:
        """The queued items (id, at, kind, payload) for one message."""
        rng = random.Random(f"{self.seed}:{sent.token}")
        p = self._rates(sent)
        if rng.random() < p["bounce"]:
            return [self._event(sent, "bounce", self._delay(rng, "bounce"))]
        items = []
        if rng.random() < p["auto_reply"]:
            items.append(self._auto_reply(sent, rng))
        u = rng.random()
        if u < p["reply"]:
            items.append(self._reply(sent, rng))
        elif u < p["reply"] + p["unsubscribe"]:
            items.append(self._event(sent, "unsubscribe", self._delay(rng, "unsubscribe")))
        elif u < p["reply"] + p["unsubscribe"] + p["spamreport"]:
            items.append(self._event(sent, "spamreport", self._delay(rng, "spamreport")))
        return items

    def _rates(self, sent: Sent) -> dict[str, float]:
        raw = self.model.rates(sent.subject, sent.body, sent.prospect)
        out = {}
        for name in OUTCOMES:
            value = float(raw.get(name, 0.0))
            if not 0.0 <= value <= 1.0 or math.isnan(value):
                raise AudienceError(f"{self.model.origin}: rates()[{name!r}] = {value}")
            out[name] = value
        return out

    def _delay(self, rng: random.Random, outcome: str) -> float:
        median_h, sigma = self.model.delays_h[outcome]
        return median_h * 3600.0 * math.exp(sigma * rng.gauss(0.0, 1.0))

    def _event(self, sent: Sent, kind: str, delay_s: float) -> tuple[str, float, str, dict]:
        at = sent.at + delay_s
        event: dict[str, Any] = {
            "email": sent.email,
            "timestamp": int(at),
            "event": kind,
            "sg_event_id": f"sim-{sent.token}-{kind}",
            "sg_message_id": f"sim{sent.token}.filter0001.0",
            **sent.custom_args,
        }
        if kind == "bounce":
            event.update(type="bounce", status="5.1.1", reason="550 5.1.1 user unknown")
        return (f"{sent.token}:{kind}", at, "event", event)

    def _inbound(
        self, sent: Sent, at: float, subject: str, headers: list[str], text: str, tag: str
    ) -> tuple[str, float, str, dict]:
        domain = sent.email.split("@")[-1]
        head = [
            f"From: {sent.name} <{sent.email}>",
            f"To: {sent.reply_to}",
            f"Subject: {subject}",
            f"Message-ID: <sim-{tag}-{sent.token}@{domain}>",
            *headers,
        ]
        fields = {
            "from": f"{sent.name} <{sent.email}>",
            "to": sent.reply_to,
            "subject": subject,
            "headers": "\n".join(head) + "\n",
            "text": text,
            "envelope": json.dumps({"to": [sent.reply_to], "from": sent.email}),
        }
        return (f"{sent.token}:{tag}", at, "inbound", fields)

    def _auto_reply(self, sent: Sent, rng: random.Random) -> tuple[str, float, str, dict]:
        """An out-of-office answer, flagged the ways real servers flag it (or only by subject)."""
        at = sent.at + self._delay(rng, "auto_reply")
        style = rng.random()
        if style < 0.5:
            headers, subject = ["Auto-Submitted: auto-replied"], f"Automatic reply: {sent.subject}"
        elif style < 0.8:
            headers, subject = ["X-Autoreply: yes", "Precedence: auto_reply"], "Out of Office"
        else:
            headers, subject = [], f"Out of office: {sent.subject}"
        text = "I am out of the office until next week with limited access to email."
        return self._inbound(sent, at, subject, headers, text, "auto")

    def _reply(self, sent: Sent, rng: random.Random) -> tuple[str, float, str, dict]:
        at = sent.at + self._delay(rng, "reply")
        text = rng.choice(HUMAN_REPLIES)
        return self._inbound(sent, at, f"Re: {sent.subject}", [], text, "reply")
