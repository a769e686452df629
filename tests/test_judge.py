"""The judge evaluator and the prompt-suite study, against the loopback Messages API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from evaluators.judge import JudgeConfig, JudgeEvaluator
from steps.lab import Lab
from tests.conftest import ROOT, commit_all
from tests.emulators.anthropic_api import (
    AnthropicEmulator,
    Reply,
    auto_learn,
    edit,
    propose,
    text_reply,
)

SUITE = ROOT / "artifacts" / "prompt-suite"
KEY = "sk-ant-test-judge-key-0123456789"


def obedient_model(body: dict[str, Any]) -> Reply | None:
    """A stand-in for the model that runs the prompt: it follows only what the prompt says."""
    if body.get("tools"):
        text = json.dumps(body["messages"][-1]["content"])
        return auto_learn(body) if "write_learnings" in text else None
    system = body.get("system", "")
    system = system if isinstance(system, str) else " ".join(b["text"] for b in system)
    report = body["messages"][-1]["content"]
    if "YES or NO" in system:  # a rubric question to the judge model
        return text_reply("YES, it does." if "checkout" in report else "NO.")
    words = report.split()
    note = {
        "title": " ".join(words[:6]) if "60 characters" in system else report,
        "severity": "high" if "low, medium, high" in system else "urgent",
        "component": words[-1].strip(".").lower() if "from the report" in system else "backend",
    }
    if "JSON" not in system:
        return text_reply(f"Here is a summary: {note['title']}")
    return text_reply(json.dumps(note))


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch):
    with AnthropicEmulator(api_key=KEY, responder=obedient_model) as emu:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.url)
        yield emu


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    shutil.copytree(SUITE, tmp_path / "repo" / "prompt-suite")
    commit_all(tmp_path / "repo")
    return tmp_path / "repo" / "prompt-suite"


def judge(**kw: Any) -> JudgeEvaluator:
    return JudgeEvaluator(JudgeConfig(kind="judge", prompt_file="prompt.md",
                                               cases="cases.py", **kw), "pass_rate")  # fmt: skip


def test_scores_every_answer_against_every_check(emulator, suite, tmp_path):
    (suite / "prompt.md").write_text("Answer in JSON. Title under 60 characters.\n")
    m = judge().evaluate(suite, tmp_path / "judge.log")
    # JSON with the right keys and a short title pass; severity and component do not
    assert m.status == "ok" and m.metric == pytest.approx(20 / 40)
    assert m.secondary == {"passes": 20.0, "criteria_total": 40.0}
    log = (tmp_path / "judge.log").read_text()
    assert "PASS is_json_note" in log and "FAIL known_severity" in log
    assert KEY not in log
    assert len(emulator.messages_requests) == 10


def test_rubric_questions_go_to_the_judge_model(emulator, suite, tmp_path):
    cases = (
        (suite / "cases.py")
        .read_text()
        .replace("RUBRIC: list[str] = []", "RUBRIC = ['Is this about the checkout?']")
    )
    (suite / "cases.py").write_text(cases)
    m = judge(judge_model="claude-haiku-4-5").evaluate(suite, tmp_path / "judge.log")
    assert m.secondary["criteria_total"] == 50.0  # 10 answers x (4 checks + 1 question)
    asked = [r.body for r in emulator.messages_requests if r.body["model"] == "claude-haiku-4-5"]
    assert len(asked) == 10
    without_judge = judge().evaluate(suite, tmp_path / "judge2.log")
    assert without_judge.status == "crash" and "judge_model" in without_judge.reason


def test_bad_cases_and_missing_key_are_clear_crashes(emulator, suite, tmp_path, monkeypatch):
    good = (suite / "cases.py").read_text()
    (suite / "cases.py").write_text("CASES = []\n")
    m = judge().evaluate(suite, tmp_path / "a.log")
    assert m.status == "crash" and "CASES must be a non-empty list" in m.reason
    (suite / "cases.py").write_text(good)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    m = judge().evaluate(suite, tmp_path / "b.log")
    assert m.status == "crash" and "ANTHROPIC_API_KEY is not set" in m.reason


@pytest.mark.usefixtures("prefect_server")
def test_prompt_suite_improves_under_the_claude_proposer(emulator, suite):
    from tests.conftest import campaign

    path = "prompt-suite/prompt.md"
    start = "Read the report and summarise it."
    emulator.push(
        propose("Answers must be machine-readable",
                [edit(path, start, start + " Answer in JSON.")]),
        propose("Bound the title",
                [edit(path, "JSON.", "JSON. Title under 60 characters.")]),
        propose("Name the allowed severities",
                [edit(path, "characters.", "characters. Severity: low, medium, high.")]),
        propose("Take the component from the report",
                [edit(path, "high.", "high. Component: a word from the report.")]),
    )  # fmt: skip
    result = campaign(str(suite), experiments=5, proposer="claude")
    rows = Lab.open(suite).records.ledger.rows()
    assert [r.status for r in rows] == ["keep"] * 5
    scores = [r.metric for r in rows]
    assert scores == sorted(scores) and scores[0] < 0.2 and scores[-1] == 1.0
    assert result.best == 1.0 and all(r.cost_usd > 0 for r in rows[1:])
    assert rows[1].description == "Answers must be machine-readable"
