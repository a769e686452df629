"""Keep secrets out of everything we write: ledgers, learnings, logs, artifacts, reports."""

from __future__ import annotations

import os
import re

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
KEY_PATTERNS = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}|SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}")
REDACTED = "[redacted]"


def is_secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


def secret_values() -> list[str]:
    """Values of secret-looking environment variables long enough to be worth hiding."""
    return sorted(
        (v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= 8),
        key=len,
        reverse=True,
    )


def redact(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, REDACTED)
    return KEY_PATTERNS.sub(REDACTED, text)
