"""Keep secrets out of everything we write: ledgers, learnings, logs, prompts, reports."""

from __future__ import annotations

import os
import re

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
KEY_PATTERNS = [
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"),
    re.compile(r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\b(?:ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bxox[abpr]-[A-Za-z0-9\-]{10,}"),
    re.compile(r"(?<=://)[^\s/:@]+:[^\s/@]+(?=@)"),  # user:password@ in a URL
]
REDACTED = "[redacted]"


def is_secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


def known_secrets(*extra: str | None) -> list[str]:
    """Secret values to scrub: the given ones and those of secret-named environment variables."""
    values = [v for v in extra if v] + [v for k, v in os.environ.items() if is_secret_name(k)]
    return sorted({v for v in values if len(v) >= 8}, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """Text with every known secret value and anything that looks like an API key removed."""
    for value in known_secrets() if secrets is None else secrets:
        text = text.replace(value, REDACTED)
    for pattern in KEY_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def holds_secret(text: str, secrets: list[str] | None = None) -> bool:
    return redact(text, secrets) != text


def safe_environ(env: dict[str, str]) -> dict[str, str]:
    """The environment without secrets: no secret-named variable, and no variable whose value
    holds a known secret or a credential (a key, `user:password@` in a URL)."""
    secrets = known_secrets()
    return {k: v for k, v in env.items() if not is_secret_name(k) and not holds_secret(v, secrets)}
