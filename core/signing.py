"""HMAC-SHA256 over canonical JSON: what a campaign asks a worker to measure, and what the
worker measured, signed under a key that only the campaign and its workers hold.

Anyone who reaches the Prefect API (with its credentials) can write artifacts, parameters
and states; only a holder of the key can write a signature that verifies. Each signature
names what it is for (`purpose`), so that a signed request is never read as a measurement.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

REQUEST = "request"  # the parameters of a flow run of `evaluate`, signed by the campaign
MEASUREMENT = "measurement"  # a worker's result, bound to its flow run, experiment and commits


def canonical(data: Any) -> bytes:
    """One byte string for one value: sorted keys, no spaces, ASCII; floats as Python's repr,
    which survives a JSON round trip exactly."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(key: bytes, purpose: str, data: Any) -> str:
    """The hex HMAC-SHA256 of `purpose` and `data` under `key`."""
    message = purpose.encode() + b"\n" + canonical(data)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify(key: bytes, purpose: str, data: Any, signature: object) -> bool:
    """Whether `signature` is `sign(key, purpose, data)`; constant time."""
    if not isinstance(signature, str) or not signature:
        return False
    return hmac.compare_digest(sign(key, purpose, data), signature)
