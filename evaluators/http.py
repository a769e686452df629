"""A metric behind any HTTP API: one request, one JSON path to the number.

The study names the request (method, URL, headers, body) and where the number sits in the JSON
answer (`data.results[0].score`). `${NAME}` in the URL, header values and body strings is filled
from the environment, so API keys live in the environment, never in study.yaml or a log: the log
shows the templates, and any filled-in value that the server echoes back is masked again.

Retries (urllib3's Retry, small exponential backoff) cover connection errors, timeouts and 5xx
answers; a 4xx is final. `timeout_s` bounds the connect and each read of one attempt. Every
failure becomes a crash Measurement whose reason says what went wrong.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import requests
import urllib3
from pydantic import Field, field_validator
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from core.sandbox import Sandbox
from core.study import EvaluatorConfig
from evaluators.base import Kind, Measurement

BODY_LOG_CHARS = 2000
BACKOFF_FACTOR = 0.2  # seconds; urllib3 doubles it on each consecutive retry
BACKOFF_MAX = 5.0
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
PATH_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(-?\d+)\]|\[\"([^\"]*)\"\]")

PathStep = str | int


class HttpEvalError(Exception):
    """A failed measurement; the message is the crash reason."""


# JSON paths ----------------------------------------------------------------------------


def parse_json_path(path: str) -> list[PathStep]:
    """`data.results[0].score` -> ['data', 'results', 0, 'score']; `$.` prefix allowed.

    Keys with dots or brackets can be written as `["a.b"]`. Raises ValueError on bad syntax.
    """
    text = path.strip()
    text = text[1:] if text.startswith("$") else text
    text = text[1:] if text.startswith(".") else text
    steps: list[PathStep] = []
    pos = 0
    while pos < len(text):
        match = PATH_TOKEN.match(text, pos)
        if match is None or (match.group(1) is not None and pos > 0 and text[pos] != "."):
            raise ValueError(f"json_path {path!r}: cannot parse at character {pos}: {text[pos:]!r}")
        key, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (quoted if quoted is not None else key))
        pos = match.end()
    if not steps:
        raise ValueError(f"json_path {path!r}: empty path")
    return steps


def _show(steps: list[PathStep]) -> str:
    """The path walked so far, as written in a json_path (`$` for the root)."""
    out = ""
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif re.fullmatch(r"[^.\[\]\"]+", step):
            out += f".{step}" if out else step
        else:
            out += f'["{step}"]'
    return out or "$"


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def resolve(document: Any, steps: list[PathStep]) -> Any:
    """The value at steps; HttpEvalError names the first segment that is missing."""
    node = document
    for i, step in enumerate(steps):
        here = _show(steps[:i])
        if isinstance(step, int):
            if not isinstance(node, list):
                raise HttpEvalError(f"json_path: expected an array at {here}, found {_kind(node)}")
            if not -len(node) <= step < len(node):
                raise HttpEvalError(
                    f"json_path: index [{step}] missing at {here} (array of length {len(node)})"
                )
            node = node[step]
        else:
            if not isinstance(node, dict):
                raise HttpEvalError(f"json_path: expected an object at {here}, found {_kind(node)}")
            if step not in node:
                keys = ", ".join(list(node)[:10]) or "none"
                raise HttpEvalError(f"json_path: key {step!r} missing at {here} (keys: {keys})")
            node = node[step]
    return node


def as_number(value: Any, where: str) -> float:
    """A JSON number as float; booleans, strings and the rest are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HttpEvalError(f"value at {where} is {_kind(value)} ({value!r:.60}), not a number")
    return float(value)


# ${ENV} templates ----------------------------------------------------------------------


def expand(template: str, where: str, used: dict[str, str]) -> str:
    """Fill ${NAME} from os.environ, recording each value in used (for masking)."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise HttpEvalError(f"environment variable {name} is not set (needed by {where})")
        used[name] = os.environ[name]
        return os.environ[name]

    return ENV_REF.sub(fill, template)


def expand_body(body: Any, used: dict[str, str]) -> Any:
    """The body with ${NAME} filled in every string it holds (keys included)."""
    if isinstance(body, str):
        return expand(body, "body", used)
    if isinstance(body, list):
        return [expand_body(v, used) for v in body]
    if isinstance(body, dict):
        return {expand_body(k, used): expand_body(v, used) for k, v in body.items()}
    return body


def mask(text: str, used: dict[str, str]) -> str:
    """Replace every filled-in value by its ${NAME} again, longest first."""
    for name, value in sorted(used.items(), key=lambda kv: -len(kv[1])):
        if value:
            text = text.replace(value, "${" + name + "}")
    return text


# The evaluator -------------------------------------------------------------------------


def _session(retries: int) -> requests.Session:
    """A session that retries connection errors, read timeouts and 5xx with a short backoff."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=None,  # metric APIs often answer POST queries; retry them too
        status_forcelist=list(range(500, 600)),
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=BACKOFF_MAX,
        raise_on_status=False,  # keep the last 5xx answer so its body reaches the log
        respect_retry_after_header=False,  # a long Retry-After must not stall the campaign
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _is_timeout(exc: BaseException) -> bool:
    """True when a requests error comes from a timeout, also inside exhausted retries."""
    if isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError):
        return True
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, urllib3.exceptions.MaxRetryError):
            reason = arg.reason
            # NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError.
            return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
                reason, urllib3.exceptions.NewConnectionError
            )
    return False


def _attempts(response: requests.Response) -> int:
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) + 1 if retries is not None else 1


class HttpConfig(EvaluatorConfig):
    kind: Literal["http"]
    method: str = "GET"
    url: str
    headers: dict[str, str] = {}
    body: Any = None
    json_path: str
    timeout_s: float = Field(30, gt=0)
    retries: int = Field(3, ge=0)

    @field_validator("json_path")
    @classmethod
    def _parses(cls, path: str) -> str:
        parse_json_path(path)
        return path

    def describe(self) -> str:
        return f"The evaluator calls {self.method} {self.url} and reads `{self.json_path}`."


class HttpEvaluator:
    """Measures by asking an HTTP API; the candidate's checkout is not read."""

    def __init__(self, config: HttpConfig, metric_name: str) -> None:
        self.config = config
        self.metric_name = metric_name
        self.steps = parse_json_path(config.json_path)

    def evaluate(
        self,
        workdir: Path,
        log_path: Path,
        sandbox: Sandbox | None = None,
        env: dict[str, str] | None = None,
    ) -> Measurement:
        """One request (with retries); the number at json_path is the metric. (No candidate
        code runs here: the sandbox has nothing to hold.)"""
        started = time.monotonic()
        used: dict[str, str] = {}
        log = [f"request: {self.config.method.upper()} {self.config.url}"]
        if self.config.headers:
            log.append(f"headers: {', '.join(self.config.headers)} (values not logged)")
        try:
            value, secondary = self._measure(used, log)
            result = Measurement.of(value, secondary=secondary)
        except HttpEvalError as exc:
            result = Measurement.crash(str(exc))
        if result.status == "ok":
            log.append(f"{self.metric_name}: {result.metric}")
        else:
            log.append(f"crash: {result.reason}")
        text = mask("\n".join(log) + "\n", used)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(text)
        return replace(
            result,
            reason=mask(result.reason, used),
            log_tail="\n".join(text.splitlines()[-50:]),
            duration_s=time.monotonic() - started,
        )

    def _measure(self, used: dict[str, str], log: list[str]) -> tuple[float, dict[str, float]]:
        response = self._request(used, log)
        try:
            document = json.loads(response.text)
        except ValueError as exc:
            raise HttpEvalError(
                f"HTTP {response.status_code}: the body is not JSON ({exc}): {response.text!r:.120}"
            ) from None
        value = as_number(resolve(document, self.steps), self.config.json_path)
        if not math.isfinite(value):
            raise HttpEvalError(f"value at {self.config.json_path} is {value}, not a finite number")
        return value, self._secondary(document)

    def _request(self, used: dict[str, str], log: list[str]) -> requests.Response:
        cfg = self.config
        url = expand(cfg.url, "url", used)
        headers = {k: expand(v, f"headers.{k}", used) for k, v in cfg.headers.items()}
        headers.setdefault("Accept", "application/json")
        body = expand_body(cfg.body, used)
        payload: dict[str, Any] = {}
        if isinstance(body, str):
            payload["data"] = body.encode()
        elif body is not None:
            payload["json"] = body
        try:
            with _session(cfg.retries) as session:
                response = session.request(
                    cfg.method.upper(), url, headers=headers, timeout=cfg.timeout_s, **payload
                )
        except requests.RequestException as exc:
            tries = cfg.retries + 1
            if _is_timeout(exc):
                raise HttpEvalError(
                    f"timed out after {cfg.timeout_s:g} s ({tries} attempt(s), retries exhausted)"
                ) from None
            raise HttpEvalError(
                f"request failed after {tries} attempt(s), retries exhausted: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        attempts = _attempts(response)
        log.append(f"status: {response.status_code} after {attempts} attempt(s)")
        log.append(f"body (first {BODY_LOG_CHARS} of {len(response.text)} chars):")
        log.append(response.text[:BODY_LOG_CHARS])
        if response.status_code >= 500:
            raise HttpEvalError(
                f"HTTP {response.status_code} {response.reason} after {attempts} attempt(s), "
                "retries exhausted"
            )
        if response.status_code >= 400:
            raise HttpEvalError(
                f"HTTP {response.status_code} {response.reason} (client error, not retried): "
                f"{response.text[:200]!r}"
            )
        return response

    def _secondary(self, document: Any) -> dict[str, float]:
        """Other numeric top-level fields, as secondary metrics."""
        if not isinstance(document, dict):
            return {}
        skip = self.steps[0] if len(self.steps) == 1 else None
        return {
            k: float(v)
            for k, v in document.items()
            if k != skip
            and not isinstance(v, bool)
            and isinstance(v, int | float)
            and math.isfinite(float(v))
        }


KIND = Kind(HttpConfig, HttpEvaluator, runs_code=False)
