"""Claude as the researcher: proposals and learnings through the Anthropic Messages API.

Faults are sorted by what the campaign should do about them:
- transient (429, 5xx, 529, timeouts, connection errors): the SDK retries them; when its retries
  are spent the SDK's exception propagates, so the caller (a Prefect task retry) may try again;
- permanent (no key, a rejected key, the spend limit, a model that does not exist, a request the
  API refuses): StopCampaign with a clear message. The spend limit is a 429 that the SDK would
  retry after a long wait, so a middleware stops it at the first answer;
- a model that cannot produce a usable change after two rounds of feedback: InvalidProposal.
A proposal that repeats a tried candidate (`proposers.novelty`) goes back to the model with the
earlier experiment, its status and metric: the same candidate once normalised is refused, a near
one may be submitted again unchanged when the model holds that the difference matters.
The API key goes to the SDK only; it is never logged and is scrubbed from every text we return.
The SDK is imported when a proposer is built (it takes a second to import), not with the module.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from core.secrets import holds_secret, known_secrets, redact
from core.study import ProposerConfig, Strict
from proposers import novelty, prompt
from proposers.base import (
    Context,
    InvalidProposal,
    Kind,
    Learned,
    Outcome,
    Proposal,
    StopCampaign,
    Usage,
)

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger(__name__)

FEEDBACK_ROUNDS = 2  # a rejected proposal goes back to the model at most this many times
EPHEMERAL = {"type": "ephemeral"}
HYPOTHESIS_CHARS = 500


class Prices(Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float = Field(ge=0)
    cache_read: float = Field(ge=0)


class ClaudeConfig(ProposerConfig):
    kind: Literal["claude"] = "claude"
    model: str = "claude-sonnet-5"
    max_tokens: int = Field(8192, gt=0)
    temperature: float = Field(1.0, ge=0, le=1)
    base_url: str | None = None
    prices: dict[str, Prices] = {}
    timeout_s: float = Field(900, gt=0)  # one request, the SDK's retries included


# USD per million tokens: input, output, 5-minute cache write, cache read. Matched by the longest
# model-name prefix; a study's `proposer.prices` entries take precedence.
DEFAULT_PRICES: dict[str, Prices] = {
    "claude-opus-4": Prices(input=5, output=25, cache_write=6.25, cache_read=0.5),
    "claude-opus-4-0": Prices(input=15, output=75, cache_write=18.75, cache_read=1.5),
    "claude-opus-4-1": Prices(input=15, output=75, cache_write=18.75, cache_read=1.5),
    "claude-opus-4-2025": Prices(input=15, output=75, cache_write=18.75, cache_read=1.5),
    "claude-sonnet-4": Prices(input=3, output=15, cache_write=3.75, cache_read=0.3),
    "claude-haiku-4": Prices(input=1, output=5, cache_write=1.25, cache_read=0.1),
    "claude-opus-5": Prices(input=5, output=25, cache_write=6.25, cache_read=0.5),
    "claude-opus-5-5": Prices(input=4, output=20, cache_write=5, cache_read=0.2),
    "claude-sonnet-5": Prices(input=2, output=10, cache_write=2.5, cache_read=0.2),
    "claude-sonnet-5-5": Prices(input=2, output=10, cache_write=2.5, cache_read=0.1),
    "claude-haiku-5-5": Prices(input=0.1, output=0.5, cache_write=0.125, cache_read=0.01),
    "claude-fable-5": Prices(input=10, output=50, cache_write=12.5, cache_read=1.0),
    "claude-fable-5-1": Prices(input=10, output=50, cache_write=12.5, cache_read=0.25),
}
_unpriced_warned: set[str] = set()
MISSING_KEY = (
    "the claude proposer needs an API key: set ANTHROPIC_API_KEY (for a local "
    "Anthropic-compatible server at ANTHROPIC_BASE_URL any non-empty value works), "
    "or use `--proposer mutate`"
)

SPEND_LIMIT_RE = re.compile(
    r"spend[ _-]?limit|usage limits|credit balance is too low|billing", re.IGNORECASE
)

PROPOSE_SCHEMA: dict[str, Any] = {
    "name": prompt.PROPOSE_TOOL,
    "description": (
        "Submit the one change to try in this experiment: a hypothesis and search/replace edits "
        "of the editable files."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "hypothesis": {
                "type": "string",
                "description": "One sentence: what changes and why the metric should improve.",
            },
            "edits": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "An editable file's path."},
                        "search": {
                            "type": "string",
                            "description": "Exact text that occurs exactly once in the file.",
                        },
                        "replace": {"type": "string", "description": "Its new text."},
                    },
                    "required": ["path", "search", "replace"],
                },
            },
        },
        "required": ["hypothesis", "edits"],
    },
}
LEARN_SCHEMA: dict[str, Any] = {
    "name": prompt.LEARN_TOOL,
    "description": "Replace the learnings (resource.md) with this full new text.",
    "input_schema": {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "The full new resource.md."}},
        "required": ["text"],
    },
}
# Both tools in every request: the tool list opens the cached prefix, so it must not change.
TOOLS = [PROPOSE_SCHEMA, LEARN_SCHEMA]


class Rejected(Exception):
    """A proposal that goes back to the model with this reason."""


class SpendLimitReached(Exception):
    """Raised inside the SDK's retry loop so that a spend-limit 429 is not retried."""


# Prices --------------------------------------------------------------------------------


def price_for(model: str, table: dict[str, Prices]) -> Prices | None:
    """The prices of the longest prefix of `model` in the study's table, else in the defaults."""
    for source in (table, DEFAULT_PRICES):
        matches = [p for p in source if model.startswith(p)]
        if matches:
            return source[max(matches, key=len)]
    return None


def cost_usd(usage: Usage, prices: Prices | None) -> float:
    if prices is None:
        return 0.0
    return (
        usage.input_tokens * prices.input
        + usage.output_tokens * prices.output
        + usage.cache_write_tokens * prices.cache_write
        + usage.cache_read_tokens * prices.cache_read
    ) / 1e6


def usage_of(message: Any) -> Usage:
    u = message.usage
    return Usage(
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_write_tokens=u.cache_creation_input_tokens or 0,
        cache_read_tokens=u.cache_read_input_tokens or 0,
    )


# Spend limit ---------------------------------------------------------------------------


def spend_limit_message(body: Any) -> str | None:
    """The API's message when an error body says the spend limit (or credit) is exhausted."""
    if not isinstance(body, dict):
        return None
    err = body.get("error", body)
    if not isinstance(err, dict):
        return None
    text = " ".join(str(err.get(k, "")) for k in ("type", "code", "message"))
    return str(err.get("message") or text) if SPEND_LIMIT_RE.search(text) else None


def stop_on_spend_limit(request: Any, call_next: Any) -> Any:
    """SDK middleware: turn a spend-limit error into an exception the SDK does not retry."""
    response = call_next(request)
    if response.status_code in (400, 402, 429):
        try:
            body = json.loads(response.http_response.read())
        except (ValueError, TypeError):
            return response
        message = spend_limit_message(body)
        if message:
            raise SpendLimitReached(message)
    return response


def _supports_middleware() -> bool:
    import anthropic

    return "middleware" in inspect.signature(anthropic.Anthropic.__init__).parameters


def _api_message(err: anthropic.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return str(err.message)


# Checking a proposal -------------------------------------------------------------------


def _resolve(context: Context, path: str) -> str:
    """The repository-relative path the model meant (it may give it study-relative)."""
    norm = posixpath.normpath(path.strip().removeprefix("./")) if path.strip() else ""
    if norm in context.files:
        return norm
    in_repo = context.study.repo_path(norm) if norm else norm
    return in_repo if in_repo in context.files else norm


def _edit_problem(context: Context, current: dict[str, str], i: int, item: Any) -> str | None:
    """Apply one edit to `current`, or say why it cannot be applied."""
    if not isinstance(item, dict) or not all(
        isinstance(item.get(k), str) for k in ("path", "search", "replace")
    ):
        return f"edits[{i}] must be an object with string fields path, search and replace"
    path = _resolve(context, item["path"])
    for candidate in (path, context.study.repo_path(path)):
        if context.is_protected(candidate):
            return f"edits[{i}]: {item['path']!r} is protected (the fixed evaluator); never edit it"
    if path not in current:
        editable = ", ".join(sorted(context.files))
        return f"edits[{i}]: {item['path']!r} is not an editable file (editable: {editable})"
    search = item["search"]
    if not search:
        return f"edits[{i}]: search is empty; copy the exact text to replace from {path}"
    count = current[path].count(search)
    if count == 0:
        return (
            f"edits[{i}]: search text not found in {path}; it must match the file exactly, "
            "whitespace included (earlier edits of the same file are applied first)"
        )
    if count > 1:
        return (
            f"edits[{i}]: search text occurs {count} times in {path}; include more surrounding "
            "lines so that it occurs exactly once"
        )
    current[path] = current[path].replace(search, item["replace"], 1)
    return None


def check_proposal(
    context: Context, tool_input: Any, secrets: list[str]
) -> tuple[str, dict[str, str]]:
    """The hypothesis and the new full text of each changed file, or Rejected with the reason."""
    if not isinstance(tool_input, dict):
        raise Rejected("the tool input must be an object with hypothesis and edits")
    hypothesis = tool_input.get("hypothesis")
    edits = tool_input.get("edits")
    if not isinstance(hypothesis, str) or not hypothesis.strip():
        raise Rejected("hypothesis is missing: give one sentence saying what and why")
    if not isinstance(edits, list) or not edits:
        raise Rejected("edits must be a non-empty list of {path, search, replace}")
    current = dict(context.files)
    problems = [p for i, e in enumerate(edits) if (p := _edit_problem(context, current, i, e))]
    if problems:
        raise Rejected("; ".join(problems))
    changed = {p: t for p, t in current.items() if t != context.files[p]}
    if not changed:
        raise Rejected("the edits change nothing; propose a real change")
    for path, text in changed.items():
        if holds_secret(text, secrets) and not holds_secret(context.files[path], secrets):
            raise Rejected(f"the edit would write a credential into {path}; never do that")
    clean = " ".join(redact(hypothesis, secrets).split())[:HYPOTHESIS_CHARS]
    return clean, changed


# The proposer --------------------------------------------------------------------------


def _blocks(message: Any, secrets: list[str]) -> list[dict[str, Any]]:
    """The reply's content as plain dicts to send back: thinking blocks unchanged (they are
    signed), the others without anything that looks like a secret (the SDK logs requests)."""
    out = []
    for block in message.content:
        data = block.model_dump(mode="json", exclude_none=True)
        if data.get("type") not in ("thinking", "redacted_thinking"):
            data = json.loads(redact(json.dumps(data), secrets))
        out.append(data)
    return out


def _tool_calls(message: Any, name: str) -> list[Any]:
    return [b for b in message.content if b.type == "tool_use" and b.name == name]


def _feedback(message: Any, tool: str, reason: str, secrets: list[str]) -> list[dict[str, Any]]:
    """The assistant turn and our answer to it: the reason, as an error result of each call."""
    calls = [b for b in message.content if b.type == "tool_use"]
    if not calls:
        cut = (
            " (your reply was cut off at max_tokens)" if message.stop_reason == "max_tokens" else ""
        )
        answer: list[dict[str, Any]] = [
            {"type": "text", "text": f"{reason}{cut}. Call the `{tool}` tool now."}
        ]
    else:
        answer = [
            {
                "type": "tool_result",
                "tool_use_id": b.id,
                "is_error": True,
                "content": f"Rejected: {reason}. Call `{tool}` again with a corrected input."
                if i == 0
                else f"Ignored: call `{tool}` once only.",
            }
            for i, b in enumerate(calls)
        ]
    said = _blocks(message, secrets) or [{"type": "text", "text": "(empty reply)"}]
    return [
        {"role": "assistant", "content": said},
        {"role": "user", "content": answer},
    ]


@dataclass
class Repeats:
    """The proposals of one experiment that repeat a tried candidate, sent back to the model:
    the same once normalised, or nearly the same (which the model may submit again, unchanged,
    when it holds that they differ in a way that matters)."""

    exact: set[str] = field(default_factory=set)  # proposal keys
    near: set[str] = field(default_factory=set)

    def check(self, context: Context, files: dict[str, str], key: str) -> None:
        """Rejected, with the earlier experiment, when the proposal repeats one."""
        found = novelty.match(context.files, files, context.tried_changes)
        if found is None or (not found.exact and key in self.near):
            return
        metric = context.study.metric.name
        if found.exact:
            self.exact.add(key)
            raise Rejected(f"{novelty.refusal(found, metric)}; propose a different idea")
        self.near.add(key)
        raise Rejected(novelty.near_request(found, metric))

    def count(self, saved: novelty.Saved, kept: str | None) -> None:
        """One evaluation saved when a repeat was sent back and not proposed in the end."""
        if self.exact:
            saved.exact += 1
        elif self.near - {kept}:
            saved.near += 1


@dataclass(frozen=True)
class Thread:
    """The conversation that produced a proposal, continued by learn() to report its outcome."""

    key: str
    system: list[dict[str, Any]]
    messages: list[dict[str, Any]]  # ends with the assistant turn holding the tool call
    tool_ids: list[str]
    learnings: str


def _outcome_results(thread: Thread, report: str, followup: str) -> dict[str, Any]:
    """The user turn that answers the proposal's tool call(s) with the outcome."""
    results: list[dict[str, Any]] = [
        {"type": "tool_result", "tool_use_id": tid, "content": report if i == 0 else "Ignored."}
        for i, tid in enumerate(thread.tool_ids)
    ]
    return {"role": "user", "content": [*results, {"type": "text", "text": followup}]}


class ClaudeProposer:
    """Proposes one change per experiment and keeps resource.md, via the Messages API.

    Cache breakpoints: the system text, the files block, and the task block. Retries and the
    learn() request continue the same conversation, so they read everything before from the
    cache and send only the new turns.
    """

    name = "claude"

    def __init__(
        self, config: ClaudeConfig, api_key: str | None = None, *, max_retries: int = 3
    ) -> None:
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        self.config = config
        self.secrets = known_secrets(key)
        self.base_url = config.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        self.client = self._client(key, max_retries) if key else None
        self.prices = price_for(config.model, config.prices)
        self.spent_usd = 0.0  # everything this proposer has cost, learnings included
        self.usage_total = Usage()
        self.threads: dict[str, Thread] = {}  # by proposal key: several may be in flight

    def _client(self, key: str, max_retries: int) -> anthropic.Anthropic:
        import anthropic

        options: dict[str, Any] = {
            "api_key": key,
            "base_url": self.base_url,
            "max_retries": max_retries,
            "timeout": self.config.timeout_s,
        }
        if _supports_middleware():
            options["middleware"] = [stop_on_spend_limit]
        return anthropic.Anthropic(**options)

    # -- money

    def cost(self, usage: Usage) -> float:
        if self.prices is None and self.config.model not in _unpriced_warned:
            _unpriced_warned.add(self.config.model)
            log.warning(
                "no price known for model %r: its cost is counted as 0 USD; add it under "
                "proposer.prices in study.yaml (USD per million tokens)",
                self.config.model,
            )
        return cost_usd(usage, self.prices)

    # -- one request

    def _request(self, system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> Any:
        import anthropic

        if self.client is None:  # raised here, not at construction, so the flow stops cleanly
            raise StopCampaign(MISSING_KEY)
        extra: dict[str, Any] = {}
        if self.config.temperature != 1.0:
            # Not a parameter of the SDK any more (newer models reject non-default sampling);
            # older models and local servers still honour it in the body.
            extra["extra_body"] = {"temperature": self.config.temperature}
        try:
            message = self.client.messages.create(
                model=self.config.model,
                max_tokens=self.config.max_tokens,
                system=system,
                messages=messages,
                tools=TOOLS,
                tool_choice={"type": "auto"},
                **extra,
            )
        except SpendLimitReached as err:
            raise StopCampaign(f"the Anthropic spend limit is reached: {err}") from None
        except anthropic.APIStatusError as err:
            stop = self._permanent(err)
            if stop is not None:
                raise stop from None
            raise
        usage = usage_of(message)
        self.usage_total += usage
        self.spent_usd += cost_usd(usage, self.prices)
        return message

    def _permanent(self, err: anthropic.APIStatusError) -> StopCampaign | None:
        """The StopCampaign for an error that no retry can fix, else None."""
        import anthropic

        text = _api_message(err)
        if spend_limit_message(err.body):
            return StopCampaign(f"the Anthropic spend limit is reached: {text}")
        if isinstance(err, anthropic.AuthenticationError):
            return StopCampaign(
                f"the Anthropic API rejected the key (401: {text}); check ANTHROPIC_API_KEY"
            )
        if isinstance(err, anthropic.PermissionDeniedError):
            return StopCampaign(f"the key may not use this API or model (403: {text})")
        if isinstance(err, anthropic.NotFoundError):
            return StopCampaign(
                f"model {self.config.model!r} or the endpoint was not found (404: {text}); "
                "check proposer.model and base_url in study.yaml"
            )
        if isinstance(err, anthropic.BadRequestError):
            return StopCampaign(f"the Anthropic API refused the request (400: {text})")
        return None

    def _prefix(
        self, context: Context, task: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """System and first message, each part ending at a cache breakpoint.

        The task part changes every experiment; its breakpoint serves the retries and learn().
        """
        system = [{"type": "text", "text": prompt.system_text(context), "cache_control": EPHEMERAL}]
        first = [
            {"type": "text", "text": prompt.files_text(context), "cache_control": EPHEMERAL},
            {"type": "text", "text": task, "cache_control": EPHEMERAL},
        ]
        return system, [{"role": "user", "content": first}]

    # -- the Proposer interface

    def propose(self, context: Context) -> Proposal:
        task = prompt.task_text(context, self.config.history_rows)
        system, messages = self._prefix(context, task)
        usage = Usage()
        reason = ""
        repeats = Repeats()
        for _ in range(FEEDBACK_ROUNDS + 1):
            message = self._request(system, messages)
            usage += usage_of(message)
            try:
                proposal = self._proposal(context, message, usage, repeats)
            except Rejected as why:
                reason = str(why)
                log.info("proposal rejected, asking again: %s", reason)
                messages += _feedback(message, prompt.PROPOSE_TOOL, reason, self.secrets)
                continue
            repeats.count(context.saved, proposal.key)
            calls = [b.id for b in message.content if b.type == "tool_use"]
            said = {"role": "assistant", "content": _blocks(message, self.secrets)}
            thread = Thread(proposal.key, system, [*messages, said], calls, context.learnings)
            self.threads[proposal.key] = thread
            return proposal
        repeats.count(context.saved, None)
        raise InvalidProposal(
            f"no usable proposal after {FEEDBACK_ROUNDS} retries: {reason}", usage, self.cost(usage)
        )

    def _proposal(self, context: Context, message: Any, usage: Usage, repeats: Repeats) -> Proposal:
        calls = _tool_calls(message, prompt.PROPOSE_TOOL)
        if not calls:
            raise Rejected(f"no `{prompt.PROPOSE_TOOL}` tool call in the reply")
        hypothesis, files = check_proposal(context, calls[0].input, self.secrets)
        key = prompt.files_key({**context.files, **files})
        repeats.check(context, files, key)
        if key in context.tried:
            repeats.exact.add(key)
            raise Rejected("this exact change was already tried; propose a different one")
        return Proposal(
            hypothesis=hypothesis,
            files=files,
            proposer=self.name,
            key=key,
            usage=usage,
            cost_usd=self.cost(usage),
        )

    def learn(self, context: Context, outcome: Outcome) -> Learned:
        """The new resource.md, written by the model (text None when the API is unavailable)."""
        import anthropic

        limit = self.config.learnings_max_chars
        system, messages = self._learn_request(context, outcome, limit)
        usage = Usage()
        text: str | None = None
        try:
            for _ in range(FEEDBACK_ROUNDS):
                message = self._request(system, messages)
                usage += usage_of(message)
                text = self._learnings(message)
                if text is not None and len(text) <= limit:
                    break
                reason = (
                    f"no `{prompt.LEARN_TOOL}` call with a text"
                    if text is None
                    else f"the text has {len(text)} characters; the limit is {limit}, shorten it"
                )
                messages += _feedback(message, prompt.LEARN_TOOL, reason, self.secrets)
        except (anthropic.APIConnectionError, anthropic.APIStatusError) as err:
            log.warning("learnings not updated this time: %s", type(err).__name__)
        bounded = None if text is None else _bound(text, limit)
        return Learned(bounded, usage, self.cost(usage))

    def _learn_request(
        self, context: Context, outcome: Outcome, limit: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Continue the proposal's conversation when we hold it, else start afresh."""
        thread = self.threads.pop(outcome.proposal.key, None)
        if thread is None:
            return self._prefix(context, prompt.learn_task(context, outcome, limit))
        report = prompt.outcome_text(context, outcome, with_diff=False)
        followup = prompt.learn_followup(context, limit, context.learnings != thread.learnings)
        return thread.system, [*thread.messages, _outcome_results(thread, report, followup)]

    def _learnings(self, message: Any) -> str | None:
        calls = _tool_calls(message, prompt.LEARN_TOOL)
        raw = calls[0].input.get("text") if calls and isinstance(calls[0].input, dict) else None
        if raw is None and not calls:
            raw = "".join(b.text for b in message.content if b.type == "text") or None
        if not isinstance(raw, str) or not raw.strip():
            return None
        return redact(raw.strip(), self.secrets) + "\n"


def _bound(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a line end."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit("\n", 1)[0].rstrip() + "\n"


KIND = Kind(ClaudeConfig, lambda config, seed: ClaudeProposer(config))
