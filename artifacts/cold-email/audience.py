"""The simulated audience of the cold-email study (protected: the researcher never reads it).

`rates(subject, body, prospect)` gives, for one message as the prospect would read it (the
placeholders filled in, the footer left out: it is the same in both arms), the probability of
each thing that can come back. The reply probability is a logistic model of features of the
copy that cold-email practice agrees on: a short subject, a question in it, the person's name
and company, one clear and concrete ask, a short body, few links, no spammy words or shouting,
talking about them rather than us. The baseline copy earns about 3%; the best copy about 14%.
`DELAYS_H` says how long each outcome takes (lognormal: median hours, sigma).
"""

from __future__ import annotations

import hashlib
import math
import re

BASE = -2.28  # log-odds before the copy's features; tuned so the baseline copy earns ~3%
SPAM = (
    "free",
    "guarantee",
    "guaranteed",
    "limited time",
    "act now",
    "no risk",
    "risk-free",
    "100%",
    "last chance",
    "click here",
    "special offer",
    "best on the market",
)
SPAM_RE = re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in SPAM) + r")(?!\w)")
WORD_RE = re.compile(r"[A-Za-z][A-Za-z']*")
LINK_RE = re.compile(r"https?://")
ASK = re.compile(r"\b(\d+|ten|fifteen|twenty)[- ]minute|\b(call|chat|meeting)\b", re.IGNORECASE)
DAYS = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|next week)\b", re.IGNORECASE)
THEM_RE = re.compile(r"\b(you|your|you're|yours)\b", re.IGNORECASE)
US_RE = re.compile(r"\b(we|our|us|I|my|we're|we've)\b", re.IGNORECASE)
TITLE_EFFECT = {"Founder": 0.15, "CEO": 0.05, "Sales Manager": 0.1, "Sales Director": 0.05}
INDUSTRY_EFFECT = {"software": 0.1, "media": 0.05, "manufacturing": -0.1, "finance": -0.1}
DELAYS_H = {
    "reply": (8.0, 1.2),  # half within 8 hours, ~3% after three days
    "auto_reply": (0.05, 0.8),  # out-of-office answers come within minutes
    "bounce": (0.01, 0.5),
    "unsubscribe": (4.0, 1.5),
    "spamreport": (2.0, 1.0),
}


def _words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def _spam(text: str) -> int:
    return len(SPAM_RE.findall(text.lower()))


def _ask(body: str) -> float:
    """A question near the end: concrete (a call, a length, a day) is worth most."""
    tail = " ".join(body.strip().splitlines()[-4:])
    questions = re.findall(r"[^.!?]*\?", tail)
    if not questions:
        return 0.0
    concrete = any(ASK.search(q) for q in questions) + any(DAYS.search(q) for q in questions)
    return 0.12 + 0.12 * concrete


def _pronouns(body: str) -> float:
    """From -1 (all about us) to 1 (all about them)."""
    them = len(THEM_RE.findall(body))
    us = len(US_RE.findall(body))
    return (them - us) / (them + us + 1)


def score(subject: str, body: str, prospect: dict[str, str], spam: int, links: int) -> float:
    """Log-odds of a reply (spam words and links counted by the caller)."""
    s_words = subject.split()
    b_words = _words(body)
    first_line = next((line for line in body.splitlines() if line.strip()), "")
    x = BASE
    x += 0.20 * subject.strip().endswith("?")
    x -= 0.04 * max(0, len(s_words) - 6)
    x -= 0.12 * sum(w.isupper() and len(w) >= 3 for w in s_words)
    x += 0.15 * (prospect.get("first_name", "") in first_line and bool(prospect.get("first_name")))
    x -= 0.10 * ("dear sir" in first_line.lower())
    x += 0.12 * (bool(prospect.get("company")) and prospect.get("company", "") in body)
    x += _ask(body)
    x -= 0.0035 * max(0, len(b_words) - 110) + 0.01 * max(0, 35 - len(b_words))
    x -= 0.08 * links + 0.08 * max(0, links - 1)
    x -= 0.05 * spam
    x -= 0.04 * min(5, subject.count("!") + body.count("!"))
    x += 0.05 * ("P.S." in body)
    x += 0.08 * _pronouns(body)
    x += TITLE_EFFECT.get(prospect.get("title", ""), 0.0)
    x += INDUSTRY_EFFECT.get(prospect.get("industry", ""), 0.0)
    return x


def _invalid(email: str) -> bool:
    """About 2.5% of the list are dead addresses: the same ones whatever the copy."""
    return hashlib.sha256(email.encode()).digest()[0] < 7


def rates(subject: str, body: str, prospect: dict[str, str]) -> dict[str, float]:
    spam = _spam(subject + "\n" + body)
    links = len(LINK_RE.findall(body))
    return {
        "reply": 1.0 / (1.0 + math.exp(-score(subject, body, prospect, spam, links))),
        "auto_reply": 0.05,
        "bounce": 1.0 if _invalid(prospect.get("email", "")) else 0.003,
        "unsubscribe": 0.004 * (1 + 0.5 * spam + 0.3 * links),
        "spamreport": 0.0007 * (1 + spam),
    }
