"""The claude proposer against a loopback Messages API, through the real anthropic client."""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from core.ledger import Row, Status
from proposers import prompt
from proposers.base import Context, InvalidProposal, Outcome, Proposal, StopCampaign
from proposers.claude import ClaudeConfig, ClaudeProposer, Prices, price_for
from steps.plugins import load_study
from tests.emulators import anthropic_api as emu_api
from tests.emulators.anthropic_api import AnthropicEmulator, edit, propose

MODEL_PY = """\
import math

WINDOW = 12
ALPHA = 0.35


def forecast(series):
    weights = [ALPHA * (1 - ALPHA) ** i for i in range(WINDOW)]
    total = sum(weights)
    recent = series[-WINDOW:][::-1]
    return sum(w * x for w, x in zip(weights, recent)) / total


def damp(x):
    return x * 0.5


def also_damp(x):
    return x * 0.5
"""

EVALUATE_PY = """\
from model import forecast

print("rmse", abs(forecast([1.0] * 30) - 1.0))
"""

STUDY_YAML = """\
name: forecast
editable: [model.py]
protected: [evaluate.py]
program: program.md
evaluator: {kind: command, command: "python evaluate.py"}
metric: {name: rmse, direction: minimize}
"""

PROGRAM_MD = "Make the forecast more accurate: lower rmse on the held-out series.\n"
TARGET = "study/model.py"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture(autouse=True)
def _no_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    study = root / "study"
    study.mkdir(parents=True)
    (study / "study.yaml").write_text(STUDY_YAML)
    (study / "model.py").write_text(MODEL_PY)
    (study / "evaluate.py").write_text(EVALUATE_PY)
    (study / "program.md").write_text(PROGRAM_MD)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baseline")
    return study


def make_context(folder: Path, **overrides: object) -> Context:
    study = load_study(folder)
    fields: dict[str, object] = {
        "study": study,
        "program": study.program_text(),
        "files": {p: (study.repo_root / p).read_text() for p in study.editable},
        "protected": study.protected,
        "history": [],
        "learnings": "",
        "last_crash": None,
        "experiment": 1,
        "workdir": study.repo_root,
    }
    fields.update(overrides)
    return Context(**fields)  # type: ignore[arg-type]


@pytest.fixture
def key() -> str:
    return "sk-ant-test-" + secrets.token_hex(16)


@pytest.fixture
def emu(key: str) -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator(api_key=key, min_cache_tokens=64) as server:
        yield server


def proposer(
    emu: AnthropicEmulator, key: str, *, retries: int = 2, **config: object
) -> ClaudeProposer:
    settings: dict[str, object] = {
        "kind": "claude",
        "model": "claude-sonnet-4-6",
        "base_url": emu.url,
        "timeout_s": 5,
    }
    settings.update(config)
    return ClaudeProposer(ClaudeConfig(**settings), api_key=key, max_retries=retries)


def good_reply(**kw: object) -> emu_api.Reply:
    return propose(
        "A longer window should smooth noise and lower rmse",
        [edit(TARGET, "WINDOW = 12", "WINDOW = 24")],
        **kw,  # type: ignore[arg-type]
    )


def tool_results(body: dict) -> list[dict]:
    last = body["messages"][-1]["content"]
    return [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"]


# A good proposal -----------------------------------------------------------------------


def test_a_good_proposal_after_thinking_and_text_blocks(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(good_reply(thinking="The window is short.", text="Here is my change."))
    result = proposer(emu, key).propose(make_context(folder))
    assert result.hypothesis == "A longer window should smooth noise and lower rmse"
    assert list(result.files) == [TARGET]
    assert result.files[TARGET] == MODEL_PY.replace("WINDOW = 12", "WINDOW = 24")
    assert result.proposer == "claude"
    assert result.key == prompt.files_key({TARGET: result.files[TARGET]})
    assert result.usage.input_tokens + result.usage.cache_write_tokens > 0
    assert result.usage.output_tokens > 0
    assert (folder / "model.py").read_text() == MODEL_PY  # the proposer never edits files
    body = emu.messages_requests[0].body
    assert body["tool_choice"] == {"type": "auto"}
    assert [t["name"] for t in body["tools"]] == ["propose_change", "write_learnings"]
    assert "temperature" not in body  # the default is not sent: newer models reject it
    assert body["model"] == "claude-sonnet-4-6"


def test_the_key_is_sent_only_as_the_auth_header(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(good_reply())
    proposer(emu, key).propose(make_context(folder))
    (rec,) = emu.messages_requests
    assert key not in rec.raw.decode() and key not in rec.path
    holders = [name for name, value in rec.headers.items() if key in value]
    assert holders in (["x-api-key"], ["authorization"])  # anthropic 2.x sends a Bearer token
    assert rec.headers.get("x-api-key", key) == key
    assert rec.headers.get("authorization", f"Bearer {key}") == f"Bearer {key}"


def test_a_study_relative_path_is_understood(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(propose("bigger window", [edit("model.py", "WINDOW = 12", "WINDOW = 13")]))
    result = proposer(emu, key).propose(make_context(folder))
    assert "WINDOW = 13" in result.files[TARGET]


# The prompt and its cache breakpoints --------------------------------------------------


def test_cache_control_marks_the_stable_prefix_only(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    history = [
        Row(
            experiment=i,
            commit=f"abc{i:04d}ff",
            metric=float(f"0.{90 - i}"),
            status=Status.KEEP if i % 3 == 0 else Status.DISCARD,
            description=f"idea number {i}",
        )
        for i in range(1, 31)
    ]
    ctx = make_context(
        folder,
        history=history,
        learnings="## What worked\n- person's note: ALPHA near 0.3 helps\n",
        last_crash="Traceback (most recent call last):\nZeroDivisionError: division by zero",
        experiment=31,
    )
    emu.push(good_reply(), good_reply())
    p = proposer(emu, key, history_rows=5)
    first = p.propose(ctx)
    ctx.experiment = 32
    ctx.history.append(
        Row(experiment=31, commit="d", metric=0.5, status=Status.DISCARD, description="window 24")
    )
    second = p.propose(ctx)

    body = emu.messages_requests[0].body
    (system,) = body["system"]
    assert system["cache_control"] == {"type": "ephemeral"}
    assert PROGRAM_MD.strip() in system["text"] and "rmse" in system["text"]
    files_block, task_block = body["messages"][0]["content"]
    assert files_block["cache_control"] == {"type": "ephemeral"}
    assert f'<file path="{TARGET}">\n{MODEL_PY}</file>' in files_block["text"]
    assert "study/evaluate.py" in files_block["text"]
    assert "python evaluate.py" in files_block["text"]
    assert task_block["cache_control"] == {"type": "ephemeral"}  # for retries and learn()
    task = task_block["text"]
    assert "experiment\tcommit\trmse\tstatus\tdescription" in task
    assert "idea number 30" in task and "idea number 25" not in task  # the last 5 rows only
    assert "ALPHA near 0.3" in task and "ZeroDivisionError" in task
    assert "rmse = 0.600000 (experiment 30)" in task  # the champion: the last kept row
    assert json.dumps(body).count('"cache_control"') == 3
    for text in (system["text"], files_block["text"]):  # nothing that changes each experiment
        assert "idea number" not in text and "ALPHA near" not in text and "Experiment" not in text

    assert first.usage.cache_read_tokens == 0 and first.usage.cache_write_tokens > 0
    # the second reads system and files from the cache and writes only its new task part
    assert 0 < second.usage.cache_write_tokens < second.usage.cache_read_tokens
    assert second.usage.cache_read_tokens + second.usage.cache_write_tokens == pytest.approx(
        first.usage.cache_write_tokens, abs=10
    )


def test_temperature_is_sent_when_not_the_default(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(good_reply())
    proposer(emu, key, temperature=0.3).propose(make_context(folder))
    assert emu.messages_requests[0].body["temperature"] == 0.3


# Rejected proposals --------------------------------------------------------------------


def test_edits_to_a_protected_file_are_rejected_every_time(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    forbidden = edit("study/evaluate.py", 'print("rmse"', 'print("rmse", 0) or print(')
    emu.push(*[propose("cheat", [forbidden]) for _ in range(3)])
    with pytest.raises(InvalidProposal, match="protected") as info:
        proposer(emu, key).propose(make_context(folder))
    assert len(emu.messages_requests) == 3
    for rec in emu.messages_requests[1:]:
        (result,) = tool_results(rec.body)
        assert result["is_error"] is True and "protected" in result["content"]
    assert (folder / "evaluate.py").read_text() == EVALUATE_PY
    assert info.value.usage.output_tokens > 0  # type: ignore[attr-defined]


def test_malformed_then_ambiguous_then_good(emu: AnthropicEmulator, key: str, folder: Path) -> None:
    emu.push(
        propose("no edits given", None),
        propose("ambiguous", [edit(TARGET, "return x * 0.5", "return x * 0.6")]),
        good_reply(),
    )
    result = proposer(emu, key).propose(make_context(folder))
    assert "WINDOW = 24" in result.files[TARGET]
    second, third = emu.messages_requests[1:]
    assert "edits must be a non-empty list" in tool_results(second.body)[0]["content"]
    assert "occurs 2 times" in tool_results(third.body)[0]["content"]
    # the conversation is sent back whole, and usage is summed over the three requests
    assert [m["role"] for m in third.body["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    answered = [body["usage"] for status, body in emu.responses if status == 200]
    assert len(answered) == 3
    assert result.usage.output_tokens == sum(u["output_tokens"] for u in answered)
    assert result.usage.input_tokens == sum(u["input_tokens"] for u in answered)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (edit("study/other.py", "x", "y"), "not an editable file"),
        (edit(TARGET, "WINDOW = 99", "WINDOW = 1"), "not found"),
        (edit(TARGET, "", "WINDOW = 1"), "search is empty"),
        (edit(TARGET, "WINDOW = 12", "WINDOW = 12"), "change nothing"),
        ({"path": TARGET, "search": 3}, "string fields"),
    ],
)
def test_each_kind_of_bad_edit_goes_back_with_its_reason(
    emu: AnthropicEmulator, key: str, folder: Path, bad: dict, reason: str
) -> None:
    emu.push(propose("try", [bad]), good_reply())
    result = proposer(emu, key).propose(make_context(folder))
    assert "WINDOW = 24" in result.files[TARGET]
    assert reason in tool_results(emu.messages_requests[1].body)[0]["content"]


def test_a_reply_without_the_tool_call_is_asked_again(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(emu_api.text_reply("I would increase the window."), good_reply())
    proposer(emu, key).propose(make_context(folder))
    last = emu.messages_requests[1].body["messages"][-1]["content"]
    assert "propose_change" in last[0]["text"]


def test_a_change_already_tried_is_refused(emu: AnthropicEmulator, key: str, folder: Path) -> None:
    tried_files = {TARGET: MODEL_PY.replace("WINDOW = 12", "WINDOW = 24")}
    ctx = make_context(folder, tried={prompt.files_key(tried_files)})
    emu.push(good_reply(), propose("alpha", [edit(TARGET, "ALPHA = 0.35", "ALPHA = 0.3")]))
    result = proposer(emu, key).propose(ctx)
    assert "ALPHA = 0.3\n" in result.files[TARGET]
    assert "already tried" in tool_results(emu.messages_requests[1].body)[0]["content"]


# Faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [emu_api.rate_limited, emu_api.overloaded, emu_api.server_error])
def test_transient_faults_are_retried_by_the_sdk(
    emu: AnthropicEmulator, key: str, folder: Path, fault: object
) -> None:
    emu.push(fault(), fault(), good_reply())  # type: ignore[operator]
    start = time.monotonic()
    result = proposer(emu, key, retries=2).propose(make_context(folder))
    assert "WINDOW = 24" in result.files[TARGET]
    assert len(emu.messages_requests) == 3
    assert time.monotonic() - start < 2


def test_retries_spent_raise_the_sdk_error_for_the_task_retry(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(emu_api.overloaded(), emu_api.overloaded())
    with pytest.raises(anthropic.InternalServerError):
        proposer(emu, key, retries=1).propose(make_context(folder))
    assert len(emu.messages_requests) == 2


def test_a_slow_reply_times_out(emu: AnthropicEmulator, key: str, folder: Path) -> None:
    emu.push(emu_api.slow(5, good_reply()))
    start = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        proposer(emu, key, retries=0, timeout_s=0.3).propose(make_context(folder))
    assert time.monotonic() - start < 2


def test_a_rejected_key_stops_the_campaign(emu: AnthropicEmulator, key: str, folder: Path) -> None:
    wrong = "sk-ant-test-wrong-" + secrets.token_hex(8)
    with pytest.raises(StopCampaign, match="401") as info:
        proposer(emu, wrong).propose(make_context(folder))
    assert wrong not in str(info.value) and key not in str(info.value)
    assert len(emu.messages_requests) == 1  # not retried


def test_a_scripted_401_stops_the_campaign(emu: AnthropicEmulator, key: str, folder: Path) -> None:
    emu.push(emu_api.unauthorized())
    with pytest.raises(StopCampaign, match="ANTHROPIC_API_KEY"):
        proposer(emu, key).propose(make_context(folder))


def test_the_spend_limit_stops_at_its_first_answer(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(emu_api.spend_limit(retry_after_s=4), good_reply())  # the SDK would wait 4 s
    start = time.monotonic()
    with pytest.raises(StopCampaign, match="spend limit"):
        proposer(emu, key, retries=3).propose(make_context(folder))
    assert time.monotonic() - start < 3
    assert len(emu.messages_requests) == 1


def test_a_spend_limit_during_learning_stops_too(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(emu_api.spend_limit(retry_after_s=4))
    ctx = make_context(folder)
    with pytest.raises(StopCampaign, match="spend limit"):
        proposer(emu, key).learn(ctx, outcome(ctx, "keep"))


def test_a_missing_key_stops_with_a_clear_message(folder: Path) -> None:
    p = ClaudeProposer(ClaudeConfig())  # the flow stops at propose, cleanly
    with pytest.raises(StopCampaign, match="ANTHROPIC_API_KEY"):
        p.propose(make_context(folder))


def test_the_key_comes_from_the_environment(
    emu: AnthropicEmulator, key: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.url)
    emu.push(good_reply())
    ClaudeProposer(ClaudeConfig(model="claude-sonnet-4-6")).propose(make_context(folder))
    assert len(emu.messages_requests) == 1


# Learnings -----------------------------------------------------------------------------


def outcome(ctx: Context, status: str, hypothesis: str = "window 24") -> Outcome:
    files = {TARGET: MODEL_PY.replace("WINDOW = 12", "WINDOW = 24")}
    return Outcome(
        proposal=Proposal(hypothesis=hypothesis, files=files, proposer="claude"),
        status=status,
        metric=0.41 if status != "crash" else None,
        champion_metric=0.52,
        reason="better by 0.11",
        log_tail="Traceback: boom" if status == "crash" else "",
    )


def test_learn_returns_the_new_resource_md(emu: AnthropicEmulator, key: str, folder: Path) -> None:
    text = "## What worked\n- window 24: rmse 0.52 -> 0.41\n## Ideas not yet tried\n- alpha 0.3\n"
    emu.push(emu_api.learnings(text))
    ctx = make_context(folder, learnings="## What worked\n- a person wrote this\n")
    p = proposer(emu, key)
    learned = p.learn(ctx, outcome(ctx, "keep"))
    assert learned.text == text
    body = emu.messages_requests[0].body
    task = body["messages"][0]["content"][1]["text"]
    assert "a person wrote this" in task and "status: keep" in task
    assert "+WINDOW = 24" in task and "at most 6000 characters" in task
    assert learned.usage.output_tokens > 0 and learned.cost_usd > 0


def test_learn_continues_the_conversation_of_the_proposal(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    ctx = make_context(folder)
    emu.push(good_reply(thinking="hmm"), emu_api.learnings("## What did not work\n- x\n"))
    p = proposer(emu, key)
    proposal = p.propose(ctx)
    result = Outcome(proposal, "discard", 0.6, 0.52, "not better by more than 0")
    learned = p.learn(ctx, result)
    assert learned.text == "## What did not work\n- x\n"
    first, second = (r.body for r in emu.messages_requests)
    assert first["system"] == second["system"] and first["tools"] == second["tools"]
    assert second["messages"][0] == first["messages"][0]
    said = second["messages"][1]
    assert said["role"] == "assistant" and said["content"][0]["type"] == "thinking"
    call = said["content"][-1]
    assert call["type"] == "tool_use" and call["name"] == "propose_change"
    answer, ask = second["messages"][2]["content"]
    assert answer["type"] == "tool_result" and answer["tool_use_id"] == call["id"]
    assert "status: discard" in answer["content"] and "rmse: 0.6 " in answer["content"]
    assert "write_learnings" in ask["text"] and "edited the learnings" not in ask["text"]
    # everything the proposal request sent is read back from the cache
    u = proposal.usage
    assert learned.usage.cache_read_tokens == u.input_tokens + u.cache_write_tokens
    assert learned.usage.input_tokens < learned.usage.cache_read_tokens / 4


def test_a_person_s_edit_between_propose_and_learn_is_shown(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    ctx = make_context(folder, learnings="## Ideas not yet tried\n- alpha\n")
    emu.push(good_reply(), emu_api.learnings("## What worked\n- y\n"))
    p = proposer(emu, key)
    proposal = p.propose(ctx)
    ctx.learnings = "## Ideas not yet tried\n- alpha\n- a person's idea: damping\n"
    p.learn(ctx, Outcome(proposal, "keep", 0.4, 0.52, "better"))
    ask = emu.messages_requests[1].body["messages"][-1]["content"][-1]["text"]
    assert "A person edited the learnings" in ask and "a person's idea: damping" in ask


def test_learnings_over_the_bound_are_asked_shorter_then_cut(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    long = "## What worked\n" + "".join(f"- point {i}: {'x' * 60}\n" for i in range(20))
    emu.push(emu_api.learnings(long), emu_api.learnings(long))
    ctx = make_context(folder)
    text = proposer(emu, key, learnings_max_chars=500).learn(ctx, outcome(ctx, "discard")).text
    assert text is not None and len(text) <= 500 and text.startswith("## What worked\n- point 0")
    assert "limit is 500" in tool_results(emu.messages_requests[1].body)[0]["content"]


def test_learn_gives_up_quietly_on_a_transient_fault(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(emu_api.server_error())
    ctx = make_context(folder)
    assert proposer(emu, key, retries=0).learn(ctx, outcome(ctx, "crash")).text is None


# Secrets -------------------------------------------------------------------------------


def test_the_key_never_reaches_returned_text_or_files(
    emu: AnthropicEmulator,
    key: str,
    folder: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's debug logs included
    leak = emu_api.KEY_PLACEHOLDER
    emu.push(
        propose("store it", [edit(TARGET, "ALPHA = 0.35", f"ALPHA = 0.35  # {leak}")]),
        propose(f"window 24 (key {leak})", [edit(TARGET, "WINDOW = 12", "WINDOW = 24")]),
        emu_api.learnings(f"## What worked\n- the key is {leak}\n- also sk-ant-api03-abcdefgh\n"),
    )
    ctx = make_context(folder)
    p = proposer(emu, key)
    result = p.propose(ctx)
    learned = p.learn(ctx, outcome(ctx, "keep", result.hypothesis)).text
    assert "credential" in tool_results(emu.messages_requests[1].body)[0]["content"]
    assert key in json.dumps(emu.responses[0][1])  # the emulated model did echo it back
    assert key not in emu.messages_requests[1].raw.decode()  # but it is not sent back
    assert learned is not None and "[redacted]" in learned and "sk-ant-api03" not in learned
    # what the core would write: the change, the commit message, the learnings, a log
    for path, text in result.files.items():
        (folder.parent / path).write_text(text)
    (tmp_path / "resource.md").write_text(learned)
    (tmp_path / "results.tsv").write_text(f"1\t{result.hypothesis}\t{result.cost_usd}\n")
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert written and not [f for f in written if key.encode() in f.read_bytes()]
    assert "Request options" in caplog.text and key not in caplog.text


# Usage and cost ------------------------------------------------------------------------


def test_cost_follows_the_usage_and_the_price_table(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    emu.push(good_reply())
    prices = {"claude-sonnet-4-6": Prices(input=3, output=15, cache_write=3.75, cache_read=0.3)}
    result = proposer(emu, key, prices=prices).propose(make_context(folder))
    u = result.usage
    expected = (
        u.input_tokens * 3
        + u.output_tokens * 15
        + u.cache_write_tokens * 3.75
        + u.cache_read_tokens * 0.3
    ) / 1e6
    assert result.cost_usd == pytest.approx(expected) and result.cost_usd > 0


def test_an_unknown_model_costs_nothing_and_says_so_once(
    emu: AnthropicEmulator, key: str, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emu.push(good_reply(), good_reply())
    p = proposer(emu, key, model="llama3.1:8b")
    with caplog.at_level(logging.WARNING, logger="proposers.claude"):
        assert p.propose(make_context(folder)).cost_usd == 0
        assert p.propose(make_context(folder)).cost_usd == 0
    assert sum("no price known" in r.message for r in caplog.records) == 1


def test_prices_match_the_longest_model_prefix() -> None:
    assert price_for("claude-opus-4-1-20250805", {}).input == 15  # type: ignore[union-attr]
    assert price_for("claude-opus-4-6", {}).input == 5  # type: ignore[union-attr]
    assert price_for("claude-sonnet-4-5-20250929", {}).output == 15  # type: ignore[union-attr]
    assert price_for("claude-haiku-4-5", {}).cache_read == 0.1  # type: ignore[union-attr]
    own = {"claude-sonnet-4": Prices(input=1, output=2, cache_write=3, cache_read=4)}
    assert price_for("claude-sonnet-4-6", own).input == 1  # type: ignore[union-attr]
    assert price_for("gpt-5", {}) is None


def test_usage_adds_up_over_feedback_rounds(emu: AnthropicEmulator, key: str, folder: Path) -> None:
    emu.push(propose("bad", [edit(TARGET, "nope", "x")]), good_reply())
    p = proposer(emu, key)
    result = p.propose(make_context(folder))
    assert result.usage == p.usage_total
    assert result.usage.output_tokens > 0 and p.spent_usd == pytest.approx(result.cost_usd)


# A whole campaign against the emulator's auto mode ------------------------------------


def test_auto_mode_supports_a_short_campaign(key: str, folder: Path) -> None:
    with AnthropicEmulator(api_key=key, auto=True, min_cache_tokens=64) as server:
        p = proposer(server, key)
        ctx = make_context(folder)
        for n in range(1, 6):
            ctx.experiment = n
            result = p.propose(ctx)
            assert result.key not in ctx.tried
            ctx.tried.add(result.key)
            status = "keep" if n % 2 else "discard"
            learned = p.learn(ctx, Outcome(result, status, 0.5, 0.52, "simulated")).text
            assert learned and result.hypothesis in learned
            ctx.learnings = learned
            if status == "keep":
                ctx.files = {**ctx.files, **result.files}
            ctx.history.append(
                Row(
                    experiment=n,
                    commit="c",
                    metric=0.5,
                    status=Status(status),
                    description=result.hypothesis,
                )
            )
    assert p.usage_total.cache_read_tokens > p.usage_total.input_tokens


# The emulator holds the client to the real API's protocol ------------------------------


def test_the_emulator_refuses_what_the_real_api_refuses(emu: AnthropicEmulator, key: str) -> None:
    client = anthropic.Anthropic(api_key=key, base_url=emu.url, max_retries=0)
    hello = [{"role": "user", "content": "hello"}]
    tool = {"name": "t", "input_schema": {"type": "object"}}
    dangling = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "x", "name": "t", "input": {}}],
        },
        {"role": "user", "content": "and?"},
    ]
    marked = {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}
    for kwargs, reason in [
        ({"messages": hello, "tools": [tool], "tool_choice": {"type": "any"}}, "forcing"),
        ({"messages": dangling}, "tool_result"),
        ({"messages": [{"role": "user", "content": [marked] * 5}]}, "maximum of 4"),
    ]:
        with pytest.raises(anthropic.BadRequestError, match=reason):
            client.messages.create(model="claude-sonnet-4-6", max_tokens=10, **kwargs)


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [(400, "invalid_request_error", "refused the request"), (404, "not_found_error", "model")],
)
def test_a_request_no_retry_can_fix_stops_the_campaign(
    emu: AnthropicEmulator, key: str, folder: Path, status: int, kind: str, expected: str
) -> None:
    emu.push(emu_api.error(status, kind, "prompt is too long"))
    with pytest.raises(StopCampaign, match=expected):
        proposer(emu, key).propose(make_context(folder))
    assert len(emu.messages_requests) == 1


def test_the_prompt_states_the_decision_rule_and_the_simplicity_cost(folder: Path) -> None:
    from dataclasses import replace

    from core import rules
    from core.study import Study
    from proposers.prompt import system_text

    ctx = make_context(folder)
    assert "better than the champion by more than 0" in system_text(ctx)
    sigma = rules.config(rule="sigma", complexity_cost=0.01)
    metric = ctx.study.config.metric.model_copy(update={"decision": sigma})
    config = ctx.study.config.model_copy(update={"metric": metric})
    study = Study(config, ctx.study.folder, ctx.study.repo_root)
    text = system_text(replace(ctx, study=study))
    assert "2 standard deviations" in text and "deletes code is kept" in text
