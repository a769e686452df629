"""A loopback emulator of the Anthropic Messages API, for tests that use the real anthropic client.

anthropic 2.x speaks HTTP through httpx2, which transport mocks do not intercept, so the tests
talk to a real HTTP server on 127.0.0.1 in a background thread. It is scripted with replies
(tool calls with any edits, thinking blocks first, plain text) and faults (429, 529, 500, 401, a
spend-limit 429, a reply slower than the client's timeout). It records every request (headers
and JSON body), validates requests the way the real API would (alternating roles, a tool_result
for every tool_use, at most 4 cache breakpoints, no forced tool choice), and reports usage with
cache fields computed by a small model of prompt caching: a prefix up to a cache breakpoint is
written once and read by later requests that share it.

A `responder` (body -> Reply or None) answers before the script: a stand-in for a model whose
answer depends on the request, such as the model a judged prompt is run on.

With `auto=True` it answers unscripted requests itself: a `propose_change` call that changes one
numeric literal of the first `<file path="...">` block in the prompt, or a `write_learnings` call
that appends the outcome to the learnings, so that whole campaigns can run against it.

It also speaks what Claude Code (the `claude` CLI) needs: `/v1/messages?beta=true`, streaming
(`"stream": true`: the server-sent events of the real API, message_start to message_stop, with
text, thinking and input_json deltas), `role: "system"` turns between the others (the
`mid-conversation-system` beta) and `/v1/messages/count_tokens`. `working_directory(body)` reads
the folder Claude Code says it runs in, for scripted calls of its own tools (Read, Edit, Write).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

KEY_PLACEHOLDER = "{API_KEY}"  # in scripted text: replaced by the credential the client sent
FILE_RE = re.compile(r'<file path="([^"]+)">\n(.*?)\n</file>', re.DOTALL)
NUMBER_RE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
SPEND_LIMIT_MESSAGE = (
    "This request would exceed your account's monthly spend limit. "
    "Raise the limit in the console or try again after it resets."
)


# Replies -------------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer: a message (status 200) or an error body, optionally late."""

    status: int = 200
    content: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    stop_reason: str = "tool_use"


def tool_use(
    name: str,
    tool_input: dict[str, Any],
    *,
    thinking: str | None = None,
    text: str | None = None,
) -> Reply:
    """A tool call, optionally preceded by a thinking block and/or a text block."""
    content: list[dict[str, Any]] = []
    if thinking is not None:
        content.append({"type": "thinking", "thinking": thinking, "signature": _sig(thinking)})
    if text is not None:
        content.append({"type": "text", "text": text})
    content.append({"type": "tool_use", "id": "", "name": name, "input": tool_input})
    return Reply(content=content)


def propose(
    hypothesis: Any,
    edits: Any,
    *,
    thinking: str | None = None,
    text: str | None = None,
) -> Reply:
    """A `propose_change` call; hypothesis and edits may be anything, to test malformed input."""
    payload: dict[str, Any] = {}
    if hypothesis is not None:
        payload["hypothesis"] = hypothesis
    if edits is not None:
        payload["edits"] = edits
    return tool_use("propose_change", payload, thinking=thinking, text=text)


def edit(path: str, search: str, replace: str) -> dict[str, str]:
    return {"path": path, "search": search, "replace": replace}


def learnings(text: str) -> Reply:
    return tool_use("write_learnings", {"text": text})


def text_reply(text: str) -> Reply:
    return Reply(content=[{"type": "text", "text": text}], stop_reason="end_turn")


def error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, error={"type": kind, "message": message}, headers=headers or {})


def rate_limited() -> Reply:
    """A plain 429 that asks for a retry after one millisecond (the SDK honours retry-after-ms)."""
    return error(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit.",
        {"retry-after-ms": "1", "retry-after": "0"},
    )


def overloaded() -> Reply:
    return error(529, "overloaded_error", "Overloaded", {"retry-after-ms": "1"})


def server_error() -> Reply:
    return error(500, "api_error", "Internal server error", {"retry-after-ms": "1"})


def unauthorized() -> Reply:
    return error(401, "authentication_error", "invalid x-api-key")


def spend_limit(retry_after_s: int = 600) -> Reply:
    """The 429 a real account gets at its spend limit: retried by the SDK after a long wait."""
    headers = {"retry-after": str(retry_after_s)}
    reply = error(429, "rate_limit_error", SPEND_LIMIT_MESSAGE, headers)
    assert reply.error is not None
    reply.error["code"] = "enforced_spend_limit_reached"
    return reply


def slow(seconds: float, then: Reply | None = None) -> Reply:
    """A reply that arrives after `seconds` (beyond the client's timeout in the tests)."""
    reply = then or text_reply("late")
    reply.delay_s = seconds
    return reply


def _sig(text: str) -> str:
    return "sig-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def tokens(text: str) -> int:
    """The emulator's token estimate: about four characters a token."""
    return math.ceil(len(text) / 4) if text else 0


# Recorded requests ---------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any
    raw: bytes

    @property
    def route(self) -> str:
        """The path without its query (Claude Code asks for `/v1/messages?beta=true`)."""
        return urlsplit(self.path).path


# Prompt caching model ------------------------------------------------------------------


def _segments(body: dict[str, Any]) -> list[tuple[str, int, bool]]:
    """The prompt in cache order (tools, system, messages) as (identity, tokens, breakpoint)."""
    out: list[tuple[str, int, bool]] = []

    def add(block: Any, text: str) -> None:
        bp = isinstance(block, dict) and "cache_control" in block
        ident = block
        if isinstance(block, dict):
            ident = {k: v for k, v in block.items() if k != "cache_control"}
        out.append((json.dumps(ident, sort_keys=True), tokens(text), bp))

    for tool in body.get("tools") or []:
        add(tool, json.dumps(tool))
    system = body.get("system")
    if isinstance(system, str):
        add(system, system)
    elif isinstance(system, list):
        for block in system:
            add(block, _block_text(block))
    for msg in body.get("messages") or []:
        content = msg.get("content")
        if isinstance(content, str):
            add({"role": msg.get("role"), "text": content}, content)
            continue
        for block in content or []:
            add(
                {"role": msg.get("role"), **block} if isinstance(block, dict) else block,
                _block_text(block),
            )
    return out


def _block_text(block: Any) -> str:
    if not isinstance(block, dict):
        return str(block)
    if block.get("type") == "text":
        return str(block.get("text", ""))
    if block.get("type") == "thinking":
        return str(block.get("thinking", ""))
    if block.get("type") == "tool_use":
        return json.dumps(block.get("input"))
    if block.get("type") == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return "".join(_block_text(b) for b in content)
        return str(content or "")
    return json.dumps(block)


class PromptCache:
    """Prefixes written at cache breakpoints, read back by any later request sharing them."""

    def __init__(self, min_tokens: int, ttl_s: float) -> None:
        self.min_tokens = min_tokens
        self.ttl_s = ttl_s
        self.entries: dict[str, float] = {}
        self.lock = threading.Lock()

    def usage(self, body: dict[str, Any]) -> dict[str, int]:
        """input_tokens (uncached), cache_creation_input_tokens and cache_read_input_tokens."""
        segs = _segments(body)
        prefix = hashlib.sha256(str(body.get("model")).encode()).hexdigest()
        hashes, cum, total = [], [], 0
        for ident, n, _ in segs:
            prefix = hashlib.sha256((prefix + ident).encode()).hexdigest()
            total += n
            hashes.append(prefix)
            cum.append(total)
        bps = [i for i, (_, _, bp) in enumerate(segs) if bp]
        now = time.monotonic()
        with self.lock:
            self.entries = {h: t for h, t in self.entries.items() if now - t < self.ttl_s}
            read = 0
            last = bps[-1] if bps else -1
            for i in range(last, -1, -1):
                if hashes[i] in self.entries:
                    read = cum[i]
                    self.entries[hashes[i]] = now
                    break
            written = read
            for i in bps:
                if cum[i] > read and cum[i] >= self.min_tokens:
                    self.entries[hashes[i]] = now
                    written = max(written, cum[i])
        return {
            "input_tokens": total - written,
            "cache_creation_input_tokens": written - read,
            "cache_read_input_tokens": read,
        }


# Request validation (what the real API answers with 400) -------------------------------


def validate(body: Any, refuse_forced_tool_choice: bool, betas: str = "") -> str | None:
    """The reason the real API would reject this request, or None. With the
    `mid-conversation-system` beta, `role: "system"` turns may come between the others."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] <= 0:
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    choice = body.get("tool_choice") or {}
    if refuse_forced_tool_choice and choice.get("type") in ("any", "tool"):
        return "tool_choice forcing a tool call is not supported with this model; use auto"
    breakpoints = json.dumps(body).count('"cache_control"')
    if breakpoints > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
    if "mid-conversation-system" in betas:
        extra = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
        if any(not isinstance(m.get("content"), str | list) or not m["content"] for m in extra):
            return "system messages: content must be a non-empty string or list of blocks"
        messages = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
        if not messages:
            return "messages: at least one user message is required"
    return _validate_messages(messages)


def _validate_messages(messages: list[Any]) -> str | None:
    for i, msg in enumerate(messages):
        want = "user" if i % 2 == 0 else "assistant"
        if not isinstance(msg, dict) or msg.get("role") != want:
            return f"messages.{i}: roles must alternate starting with user (expected {want})"
        content = msg.get("content")
        if not isinstance(content, str | list) or not content:
            return f"messages.{i}: content must be a non-empty string or list of blocks"
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or isinstance(msg["content"], str):
            continue
        ids = {b.get("id") for b in msg["content"] if b.get("type") == "tool_use"}
        if not ids:
            continue
        following = messages[i + 1]["content"] if i + 1 < len(messages) else []
        results = {
            b.get("tool_use_id")
            for b in following
            if isinstance(following, list) and b.get("type") == "tool_result"
        }
        if not ids <= results:
            return (
                f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {sorted(ids - results)}"
            )
    return None


# Auto mode: plausible answers to unscripted requests -----------------------------------


def _instruction(body: dict[str, Any]) -> str:
    """The text of the last user turn: what this request asks for."""
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(_block_text(b) for b in content)


def _prompt_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for msg in body["messages"]:
        content = msg["content"]
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(_block_text(b) for b in content)
    return "\n".join(parts)


def _bump(literal: str, n: int) -> str:
    if "." in literal:
        value = float(literal) * (1.25 if n % 2 == 0 else 0.8)
        text = f"{value:.4g}"
        return text if ("." in text or "e" in text) else text + ".0"
    value = int(literal) + (1 if n % 2 == 0 else -1)
    return str(value if value >= 0 else int(literal) + 1)


def auto_propose(body: dict[str, Any], n: int) -> Reply:
    """Change the (n-th, cyclically) numeric literal of the first file shown in the prompt."""
    found = FILE_RE.search(_prompt_text(body))
    if found is None:
        return text_reply("I cannot see any file to change.")
    path, text = found.group(1), found.group(2)
    lines = text.split("\n")
    spots = [
        (i, m)
        for i, line in enumerate(lines)
        if text.count(line) == 1 and line.strip()
        for m in NUMBER_RE.finditer(line)
    ]
    if not spots:
        return text_reply(f"{path} has no numeric literal on a unique line.")
    i, m = spots[(n * 7) % len(spots)]
    line = lines[i]
    new = _bump(m.group(), n)
    replaced = line[: m.start()] + new + line[m.end() :]
    hypothesis = f"Change {m.group()} to {new} on line {i + 1} of {path} to improve the metric"
    return propose(hypothesis, [edit(path, line, replaced)], thinking="Try a nearby value.")


def auto_learn(body: dict[str, Any]) -> Reply:
    """Append the outcome to the current learnings under the section its status belongs to."""
    prompt = _prompt_text(body)
    current = re.findall(r"<learnings>\n?(.*?)\n?</learnings>", prompt, re.DOTALL)
    status = re.search(r"^status: (\S+)", prompt, re.MULTILINE)
    hypothesis = re.search(r"^hypothesis: (.*)$", prompt, re.MULTILINE)
    limit = re.search(r"at most (\d+) characters", prompt)
    max_chars = int(limit.group(1)) if limit else 4000
    kind = status.group(1) if status else "unknown"
    section = {"keep": "## What worked", "crash": "## What crashed and why"}.get(
        kind, "## What did not work"
    )
    text = current[-1].strip() if current else ""
    if text.startswith("(empty"):
        text = ""
    lines = text.split("\n") if text else ["# Learnings"]
    if section not in lines:
        lines += ["", section]
    at = lines.index(section) + 1
    lines.insert(at, f"- {kind}: {hypothesis.group(1) if hypothesis else '?'}")
    while len("\n".join(lines)) > max_chars and any(x.startswith("- ") for x in lines):
        last = max(j for j, x in enumerate(lines) if x.startswith("- "))
        del lines[last]
    return learnings("\n".join(lines) + "\n")


# The server ----------------------------------------------------------------------------


class AnthropicEmulator:
    """A Messages API on 127.0.0.1, scripted with `push` (or answering by itself when auto)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        auto: bool = False,
        min_cache_tokens: int = 1024,
        cache_ttl_s: float = 300.0,
        refuse_forced_tool_choice: bool = True,
        responder: Callable[[dict[str, Any]], Reply | None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.auto = auto
        self.responder = responder  # answers first when it returns a Reply (a model stand-in)
        self.refuse_forced_tool_choice = refuse_forced_tool_choice
        self.cache = PromptCache(min_cache_tokens, cache_ttl_s)
        self.requests: list[Recorded] = []
        self.responses: list[tuple[int, dict[str, Any]]] = []  # (status, body) as answered
        self.script: deque[Reply] = deque()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.auto_count = 0
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.emulator = self
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> AnthropicEmulator:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> AnthropicEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, *replies: Reply) -> None:
        with self.lock:
            self.script.extend(replies)

    @property
    def messages_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.route.endswith("/v1/messages")]

    # -- request handling

    def handle(self, rec: Recorded) -> tuple[int, dict[str, str], dict[str, Any], float]:
        """Status, headers, JSON body and delay for one request."""
        with self.lock:
            self.requests.append(rec)
        counting = rec.route.endswith("/v1/messages/count_tokens")
        if rec.method != "POST" or not (counting or rec.route.endswith("/v1/messages")):
            return _error(404, "not_found_error", f"no route {rec.method} {rec.path}")
        credential = _credential(rec.headers)
        if credential is None or (self.api_key is not None and credential != self.api_key):
            return _error(401, "authentication_error", "invalid x-api-key")
        betas = rec.headers.get("anthropic-beta", "")
        checked = rec.body
        if counting and isinstance(rec.body, dict):  # counting needs no max_tokens
            checked = {"max_tokens": 1, **rec.body}
        problem = validate(checked, self.refuse_forced_tool_choice, betas)
        if problem:
            return _error(400, "invalid_request_error", problem)
        if counting:
            return 200, {}, {"input_tokens": sum(n for _, n, _ in _segments(checked))}, 0.0
        reply = self._next(rec.body)
        if reply is None:
            return _error(
                500, "api_error", "emulator script exhausted", {"x-should-retry": "false"}
            )
        if reply.status != 200:
            status, headers, body, _ = _error(reply.status, "", "", reply.headers)
            body["error"] = dict(reply.error or {})
            return status, headers, body, reply.delay_s
        return 200, {}, self._message(rec.body, reply, credential), reply.delay_s

    def _next(self, body: dict[str, Any]) -> Reply | None:
        answer = self.responder(body) if self.responder else None
        if answer is not None:
            return answer
        with self.lock:
            if self.script:
                return self.script.popleft()
            if not self.auto:
                return None
            self.auto_count += 1
            n = self.auto_count
        if "write_learnings" in _instruction(body):
            return auto_learn(body)
        return auto_propose(body, n)

    def _message(self, body: dict[str, Any], reply: Reply, credential: str) -> dict[str, Any]:
        content = json.loads(json.dumps(reply.content).replace(KEY_PLACEHOLDER, credential))
        for block in content:
            if block.get("type") == "tool_use" and not block.get("id"):
                block["id"] = "toolu_" + uuid.uuid4().hex[:24]
        usage = self.cache.usage(body)
        usage["output_tokens"] = max(1, tokens(json.dumps(content)))
        return {
            "id": "msg_" + uuid.uuid4().hex[:24],
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }


def _credential(headers: dict[str, str]) -> str | None:
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None


def _error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, Any], float]:
    body = {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_" + uuid.uuid4().hex[:24],
    }
    return status, dict(headers or {}), body, 0.0


# Streaming: the server-sent events of the real API ------------------------------------

DELTA_CHARS = 24  # text and JSON arrive in pieces this long, as a real stream's do


def _pieces(text: str) -> list[str]:
    return [text[i : i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)] or [""]


def _block_events(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    """content_block_start, its deltas and content_block_stop for one block of a message."""
    kind = block.get("type")
    if kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(block.get("text", ""))]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
        deltas.append({"type": "signature_delta", "signature": block.get("signature", "")})
    elif kind == "tool_use":
        start = {**block, "input": {}}
        partial = json.dumps(block.get("input", {}))
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(partial)]
    else:  # any other block arrives whole
        start, deltas = block, []
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def sse_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole message as the events of a streamed answer: message_start (no content yet, the
    input usage), a ping, each block's events, message_delta (stop reason, output tokens),
    message_stop."""
    usage = dict(message["usage"])
    output_tokens = usage.pop("output_tokens")
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(message["content"]):
        events += _block_events(index, block)
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )
    events.append({"type": "message_stop"})
    return events


def sse_body(message: dict[str, Any]) -> bytes:
    """The text/event-stream body of a streamed message."""
    return "".join(
        f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in sse_events(message)
    ).encode()


def streamed(rec: Recorded) -> bool:
    """Whether the request asked for a stream of events."""
    return isinstance(rec.body, dict) and rec.body.get("stream") is True


# Claude Code ---------------------------------------------------------------------------

WORKDIR_RE = re.compile(r"^ *- Primary working directory: (.+?) *$", re.MULTILINE)


def working_directory(body: dict[str, Any]) -> str | None:
    """The folder Claude Code says it runs in (its system prompt's environment section), where
    the files its own tools (Read, Edit, Write) take by absolute path live."""
    system = body.get("system")
    texts = [system] if isinstance(system, str) else [_block_text(b) for b in system or []]
    texts += [_prompt_text(body)]
    for text in texts:
        if found := WORKDIR_RE.search(text):
            return found.group(1)
    return None


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of the conversation so far, in order."""
    return [
        block
        for msg in body.get("messages") or []
        if msg.get("role") == "user" and isinstance(msg.get("content"), list)
        for block in msg["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: AnthropicEmulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: tests read the recorded requests instead."""

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec = Recorded(self.command, self.path, headers, body, raw)
        emulator = self.server.emulator
        status, extra, payload, delay = emulator.handle(rec)
        with emulator.lock:
            emulator.responses.append((status, payload))
        if delay and emulator.stopping.wait(delay):
            return
        stream = status == 200 and streamed(rec) and payload.get("type") == "message"
        data = sse_body(payload) if stream else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "text/event-stream" if stream else "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", str(payload.get("request_id", payload.get("id", ""))))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a slow reply beyond its timeout)


def main() -> None:
    """Serve in auto mode until interrupted: `python -m tests.emulators.anthropic_api`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--min-cache-tokens", type=int, default=1024)
    parser.add_argument("--url-file", help="also write the base URL to this file")
    args = parser.parse_args()
    emulator = AnthropicEmulator(auto=True, min_cache_tokens=args.min_cache_tokens).start()
    print(f"ANTHROPIC_BASE_URL={emulator.url}", flush=True)
    if args.url_file:
        with open(args.url_file, "w") as f:
            f.write(emulator.url)
    try:
        emulator.stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
