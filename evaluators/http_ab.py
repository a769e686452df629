"""An A/B test behind any HTTP API, decided days later: the asynchronous form of `http`.

For landing pages, push notifications, ads: a service that serves two variants and counts their
conversions. `start` sends the launch request once (with the batch as its Idempotency-Key, so a
repeat after a kill creates nothing new) carrying both variants, the champion's and the
challenger's editable files as text, and keeps the test's id; `collect`, polled by later runs,
reads each arm's (successes, trials) and whether the test has closed; `finish` sends the
optional stop request. `${NAME}` in URLs, headers and bodies is filled from the environment and
masked again in every log, as in `http`.

    evaluator:
      kind: http_ab
      variant: [landing.html]
      headers: {Authorization: "Bearer ${AB_TOKEN}"}
      launch: {url: "https://ab.example.com/tests", id_path: id,
               body: {name: "{batch}", variants: {A: "{champion}", B: "{challenger}"}}}
      collect: {url: "https://ab.example.com/tests/{id}", closed_path: done,
                champion: [arms.A.conversions, arms.A.visitors],
                challenger: [arms.B.conversions, arms.B.visitors]}
      stop: {method: POST, url: "https://ab.example.com/tests/{id}/stop"}
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, Literal

import requests
from pydantic import Field

from core.files import atomic_write
from core.study import EvaluatorConfig, Strict
from evaluators.base import (
    BadCandidate,
    Collected,
    Kind,
    Launch,
    Measurement,
    Unavailable,
    iso,
)
from evaluators.http import (
    HttpEvalError,
    _session,
    as_number,
    expand,
    expand_body,
    mask,
    parse_json_path,
    resolve,
)

ARMS = ("champion", "challenger")


class Request(Strict):
    method: str = "GET"
    url: str
    body: Any = None


class LaunchRequest(Request):
    method: str = "POST"
    id_path: str  # where the answer holds the test's id


class CollectRequest(Request):
    champion: tuple[str, str]  # json paths of (successes, trials)
    challenger: tuple[str, str]
    closed_path: str | None = None  # a boolean: the test is over, nothing more will count


class HttpABConfig(EvaluatorConfig):
    kind: Literal["http_ab"]
    variant: list[str] = Field(min_length=1)  # the files a variant is made of (the editable)
    launch: LaunchRequest
    collect: CollectRequest
    stop: Request | None = None
    headers: dict[str, str] = {}
    timeout_s: float = Field(30, gt=0)
    retries: int = Field(3, ge=0)
    poll_every_h: float = Field(4, gt=0)  # how often collecting again is worth it
    max_pending: int = Field(2, ge=1)
    max_wait_h: float = Field(336, gt=0)

    def describe(self) -> str:
        return (
            f"Each experiment is an A/B test of the champion's files against yours, run by "
            f"{self.launch.url}; the metric is each arm's successes over trials, known later."
        )


class HttpABEvaluator:
    def __init__(self, config: HttpABConfig, metric: str) -> None:
        self.config = config
        self.metric = metric

    @property
    def max_pending(self) -> int:
        return self.config.max_pending

    @property
    def max_wait_h(self) -> float:
        return self.config.max_wait_h

    def evaluate(
        self, workdir: Path, log_path: Path, sandbox: Any = None, env: Any = None
    ) -> Measurement:
        reason = "the http_ab evaluator is asynchronous: its counts are known after a launch"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(reason + "\n")
        return Measurement.crash(reason)

    # the contract ------------------------------------------------------------------------

    def launch(self, launch: Launch) -> dict[str, Any]:
        """Both variants as text, and a batch name: no request yet."""
        return {
            "kind": "http_ab",
            "batch": f"{launch.study}-{launch.experiment}-{secrets.token_hex(4)}",
            "planned_at": time.time(),
            "variants": {
                "champion": _files(launch.champion, self.config.variant),
                "challenger": _files(launch.challenger, self.config.variant),
            },
        }

    def start(self, handle: dict[str, Any], state_dir: Path) -> None:
        """The launch request, once: its id is kept; a repeat carries the same key."""
        record = _record(state_dir, handle)
        if record.exists():
            return
        launch = self.config.launch
        fills = {"batch": handle["batch"], **handle["variants"]}
        answer = self._call(launch, launch.body, {"Idempotency-Key": handle["batch"]}, fills)
        test_id = resolve(answer, parse_json_path(launch.id_path))
        atomic_write(record, json.dumps({"id": test_id}))

    def collect(self, handle: dict[str, Any], state_dir: Path) -> Collected:
        record = _record(state_dir, handle)
        now = time.time()
        due = iso(now + self.config.poll_every_h * 3600)
        if not record.exists():
            empty = {arm: (0, 0) for arm in ARMS}
            return Collected(empty, False, iso(now), {}, "not launched yet")
        test_id = json.loads(record.read_text())["id"]
        cfg = self.config.collect
        answer = self._call(cfg.model_copy(update={"url": _id(cfg.url, test_id)}), None)
        arms = {arm: self._counts(answer, getattr(cfg, arm), arm) for arm in ARMS}
        closed = bool(cfg.closed_path and resolve(answer, parse_json_path(cfg.closed_path)))
        detail = {arm: {"successes": float(s), "trials": float(n)} for arm, (s, n) in arms.items()}
        log = ", ".join(f"{arm} {s}/{n}" for arm, (s, n) in arms.items())
        said = f"test {test_id}: {log}"
        return Collected(arms, closed, None if closed else due, detail, said, iso(now))

    def wait_until(self, when: str, state_dir: Path) -> bool:
        return False  # the real clock: a later run collects

    def waited_h(self, handle: dict[str, Any], state_dir: Path) -> float:
        return (time.time() - handle["planned_at"]) / 3600.0

    def finish(self, handle: dict[str, Any], state_dir: Path, status: str) -> int:
        record = _record(state_dir, handle)
        stop = self.config.stop
        if stop is not None and record.exists():
            test_id = json.loads(record.read_text())["id"]
            self._call(stop.model_copy(update={"url": _id(stop.url, test_id)}), stop.body)
        return 0

    # requests ----------------------------------------------------------------------------

    def _call(
        self,
        request: Request,
        body: Any,
        extra: dict[str, str] | None = None,
        fills: dict[str, Any] | None = None,
    ) -> Any:
        """One request with retries; its JSON answer. Unavailable (the campaign stops) when the
        service cannot be reached or refuses. The study's `${VAR}`s are expanded in its own
        template before the `fills` (the candidates' text) go in: a `${ANTHROPIC_API_KEY}` in a
        candidate's page is sent as written."""
        used: dict[str, str] = {}
        try:
            url = expand(request.url, "url", used)
            headers = {k: expand(v, f"headers.{k}", used) for k, v in self.config.headers.items()}
            payload = _fill(expand_body(body, used), fills or {})
            with _session(self.config.retries) as session:
                response = session.request(
                    request.method.upper(), url, headers=headers | (extra or {}),
                    json=payload, timeout=self.config.timeout_s,
                )  # fmt: skip
            if response.status_code >= 400:
                raise HttpEvalError(f"HTTP {response.status_code}: {response.text[:200]!r}")
            return response.json() if response.text.strip() else {}
        except (HttpEvalError, requests.RequestException, ValueError) as exc:
            why = mask(f"{request.method.upper()} {request.url}: {exc}", used)
            raise Unavailable(why) from None

    def _counts(self, answer: Any, paths: tuple[str, str], arm: str) -> tuple[int, int]:
        s, n = (as_number(resolve(answer, parse_json_path(p)), p) for p in paths)
        if not 0 <= s <= n:
            raise Unavailable(f"{arm}: {s} successes of {n} trials is not a count")
        return int(s), int(n)


def _files(folder: Path, names: list[str]) -> dict[str, str]:
    """A variant: the text of each of its files, as the service receives it."""
    try:
        return {name: (folder / name).read_text() for name in names}
    except (OSError, UnicodeDecodeError) as exc:
        raise BadCandidate(f"{exc}") from None


def _fill(body: Any, fills: dict[str, Any]) -> Any:
    """The body with each string "{name}" that names a fill replaced by it."""
    if isinstance(body, str):
        key = body[1:-1] if body.startswith("{") and body.endswith("}") else None
        return fills[key] if key in fills else body
    if isinstance(body, list):
        return [_fill(v, fills) for v in body]
    if isinstance(body, dict):
        return {k: _fill(v, fills) for k, v in body.items()}
    return body


def _record(state_dir: Path, handle: dict[str, Any]) -> Path:
    return state_dir / "http_ab" / f"{handle['batch']}.json"


def _id(url: str, test_id: Any) -> str:
    return url.replace("{id}", str(test_id))


KIND = Kind(HttpABConfig, HttpABEvaluator, runs_code=False, asynchronous=True)
