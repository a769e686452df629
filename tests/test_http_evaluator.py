"""HttpEvaluator against a real HTTP server on 127.0.0.1: metrics, secrets, retries, failures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from evaluators.http import HttpConfig, HttpEvaluator, parse_json_path


@dataclass
class Reply:
    status: int = 200
    body: str = "{}"
    delay_s: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Loopback:
    """Replies per path, in order (the last one repeats); records every request it gets."""

    port: int = 0
    replies: dict[str, list[Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str, *replies: Reply) -> str:
        self.replies[path] = list(replies)
        return self.url(path)

    def next_reply(self, path: str) -> Reply:
        queue = self.replies.get(path.split("?")[0], [Reply(404, '{"error": "no route"}')])
        return queue.pop(0) if len(queue) > 1 else queue[0]


def _handler(state: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            state.seen.append(Seen(self.command, self.path, dict(self.headers), body))
            reply = state.next_reply(self.path)
            time.sleep(reply.delay_s)
            data = reply.body.encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[Loopback]:
    state = Loopback()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def evaluator(url: str, json_path: str, **kw: Any) -> HttpEvaluator:
    config = HttpConfig(kind="http", url=url, json_path=json_path, **kw)
    return HttpEvaluator(config, "score")


def run(ev: HttpEvaluator, tmp_path: Path) -> tuple[Any, str]:
    log = tmp_path / "logs" / "1.log"
    result = ev.evaluate(tmp_path, log)
    return result, log.read_text()


NESTED = {"data": {"results": [{"score": 0.25}, {"score": 0.93, "n": 40}]}, "latency_ms": 12}


def test_reads_a_nested_metric_and_logs_the_request(server: Loopback, tmp_path: Path) -> None:
    url = server.on("/metrics", Reply(body=json.dumps(NESTED)))
    result, log = run(evaluator(url, "data.results[1].score"), tmp_path)
    assert result.status == "ok", result.reason
    assert result.metric == 0.93
    assert result.secondary == {"latency_ms": 12.0}
    assert f"request: GET {url}" in log
    assert "status: 200 after 1 attempt(s)" in log
    assert '"score": 0.93' in log and "score: 0.93" in log


def test_negative_index_quoted_key_and_root_array(server: Loopback, tmp_path: Path) -> None:
    url = server.on("/a", Reply(body=json.dumps([{"x.y": [1, 2, 7.5]}])))
    result, _ = run(evaluator(url, '$[0]["x.y"][-1]'), tmp_path)
    assert (result.status, result.metric) == ("ok", 7.5)


def test_env_header_reaches_the_server_but_not_the_log(
    server: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-8f3a9c1d77e2"
    monkeypatch.setenv("METRIC_API_KEY", secret)
    monkeypatch.setenv("METRIC_TEAM", "team-omega-42")
    # The server echoes the key back: the log must mask it again.
    url = server.on("/m", Reply(body=json.dumps({"score": 3, "echo": f"Bearer {secret}"})))
    ev = evaluator(
        url + "?team=${METRIC_TEAM}",
        "score",
        method="POST",
        headers={"Authorization": "Bearer ${METRIC_API_KEY}"},
        body={"query": "team ${METRIC_TEAM}", "limit": 5},
    )
    result, log = run(ev, tmp_path)
    assert result.status == "ok", result.reason
    assert result.metric == 3.0
    seen = server.seen[0]
    assert seen.method == "POST"
    assert seen.headers["Authorization"] == f"Bearer {secret}"
    assert seen.path == "/m?team=team-omega-42"
    assert json.loads(seen.body) == {"query": "team team-omega-42", "limit": 5}
    assert secret not in log and "team-omega-42" not in log
    assert secret not in result.log_tail
    assert "?team=${METRIC_TEAM}" in log and "Bearer ${METRIC_API_KEY}" in log


def test_missing_env_variable_is_named(
    server: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN_XYZ", raising=False)
    url = server.on("/m", Reply(body='{"score": 1}'))
    ev = evaluator(url, "score", headers={"X-Token": "${NO_SUCH_TOKEN_XYZ}"})
    result, log = run(ev, tmp_path)
    assert result.status == "crash"
    assert "NO_SUCH_TOKEN_XYZ" in result.reason and "headers.X-Token" in result.reason
    assert server.seen == []
    assert "crash:" in log


def test_503_twice_then_200_succeeds(server: Loopback, tmp_path: Path) -> None:
    busy = Reply(503, '{"error": "busy"}')
    url = server.on("/m", busy, busy, Reply(body='{"score": 0.5}'))
    result, log = run(evaluator(url, "score", retries=3), tmp_path)
    assert result.status == "ok", result.reason
    assert result.metric == 0.5
    assert len(server.seen) == 3
    assert "status: 200 after 3 attempt(s)" in log


def test_5xx_until_retries_are_exhausted(server: Loopback, tmp_path: Path) -> None:
    url = server.on("/m", Reply(500, '{"error": "down"}'))
    result, log = run(evaluator(url, "score", retries=1), tmp_path)
    assert result.status == "crash"
    assert "HTTP 500" in result.reason and "2 attempt(s)" in result.reason
    assert "retries exhausted" in result.reason
    assert len(server.seen) == 2
    assert '{"error": "down"}' in log


def test_4xx_is_final_and_not_retried(server: Loopback, tmp_path: Path) -> None:
    url = server.on("/m", Reply(403, '{"error": "forbidden"}'))
    result, _ = run(evaluator(url, "score", retries=3), tmp_path)
    assert result.status == "crash"
    assert "HTTP 403" in result.reason and "forbidden" in result.reason
    assert len(server.seen) == 1


def test_bad_json_is_a_clear_crash(server: Loopback, tmp_path: Path) -> None:
    url = server.on("/m", Reply(body="<html>oops</html>"))
    result, log = run(evaluator(url, "score"), tmp_path)
    assert result.status == "crash"
    assert "not JSON" in result.reason and "<html>oops" in result.reason
    assert "<html>oops</html>" in log


def test_missing_path_names_the_segment(server: Loopback, tmp_path: Path) -> None:
    url = server.on("/m", Reply(body=json.dumps(NESTED)))
    result, _ = run(evaluator(url, "data.results[1].accuracy"), tmp_path)
    assert result.status == "crash"
    assert "'accuracy' missing at data.results[1]" in result.reason
    assert "score" in result.reason  # the keys that are there
    result, _ = run(evaluator(url, "data.results[5].score"), tmp_path)
    assert "index [5] missing at data.results (array of length 2)" in result.reason
    result, _ = run(evaluator(url, "data.results.score"), tmp_path)
    assert "expected an object at data.results, found an array" in result.reason


@pytest.mark.parametrize(
    ("value", "kind"),
    [("0.93", "a string"), (True, "a boolean"), (None, "null"), ({"v": 1}, "an object")],
)
def test_non_number_is_refused(server: Loopback, tmp_path: Path, value: Any, kind: str) -> None:
    url = server.on("/m", Reply(body=json.dumps({"data": {"score": value}})))
    result, _ = run(evaluator(url, "data.score"), tmp_path)
    assert result.status == "crash"
    assert f"value at data.score is {kind}" in result.reason
    assert "not a number" in result.reason


def test_nan_is_a_crash(server: Loopback, tmp_path: Path) -> None:
    url = server.on("/m", Reply(body='{"score": NaN}'))
    result, _ = run(evaluator(url, "score"), tmp_path)
    assert result.status == "crash"
    assert "value at score is nan, not a finite number" in result.reason


def test_timeout_is_a_clear_crash(server: Loopback, tmp_path: Path) -> None:
    url = server.on("/slow", Reply(body='{"score": 1}', delay_s=1.0))
    started = time.monotonic()
    result, _ = run(evaluator(url, "score", timeout_s=0.2, retries=1), tmp_path)
    assert result.status == "crash"
    assert "timed out after 0.2 s" in result.reason and "2 attempt(s)" in result.reason
    assert len(server.seen) == 2
    assert time.monotonic() - started < 1.5


def test_a_slow_first_answer_is_retried(server: Loopback, tmp_path: Path) -> None:
    url = server.on("/m", Reply(body='{"score": 9}', delay_s=1.0), Reply(body='{"score": 2}'))
    result, _ = run(evaluator(url, "score", timeout_s=0.2, retries=2), tmp_path)
    assert (result.status, result.metric) == ("ok", 2.0)


def test_connection_refused_is_a_crash(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result, log = run(evaluator(f"http://127.0.0.1:{port}/m", "score", retries=1), tmp_path)
    assert result.status == "crash"
    assert "request failed after 2 attempt(s), retries exhausted" in result.reason
    assert "ConnectionError" in result.reason and "refused" in result.reason
    assert result.reason in log


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("data.results[0].score", ["data", "results", 0, "score"]),
        ("$.a[-1]", ["a", -1]),
        ('["a.b"].c', ["a.b", "c"]),
        ("[2][0]", [2, 0]),
    ],
)
def test_parse_json_path(path: str, steps: list[Any]) -> None:
    assert parse_json_path(path) == steps


@pytest.mark.parametrize("bad", ["", "a..b", "a.", "a[x]", "a[0]b"])
def test_bad_json_path_is_refused_at_construction(bad: str) -> None:
    with pytest.raises(ValueError, match="json_path"):
        evaluator("http://127.0.0.1:1/", bad)
