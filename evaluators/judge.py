"""The judge evaluator: improve a prompt (a skill) against a fixed suite of cases.

The prompt file is the artifact. For each case of the protected cases file, Claude answers with
the prompt as its system prompt; each answer is then scored against every criterion: Python
predicates from the cases file, and optional rubric questions put to a judge model.
Score = passes / (answers x criteria), e.g. 40/40 -> 1.0.

The cases file is Python:

    CASES = ["input 1", "input 2", ...]            # what the prompt is tried on
    def short(output: str, case: str) -> bool: ...  # deterministic checks
    CHECKS = [short, ...]
    RUBRIC = ["Does the answer name the failing component?"]   # optional, needs judge_model
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import anthropic
from pydantic import Field

from core.sandbox import Sandbox
from core.secrets import redact
from core.study import EvaluatorConfig
from evaluators.base import Kind, Measurement
from evaluators.command import tail

Check = Callable[[str, str], bool]
JUDGE_SYSTEM = (
    "You grade one answer against one question. Reply with YES or NO as the first word, "
    "then at most one sentence of reason."
)


def load_cases(path: Path) -> tuple[list[str], list[Check], list[str]]:
    """CASES, CHECKS and RUBRIC from the protected cases file, with clear errors."""
    if not path.is_file():
        raise ValueError(f"{path}: the cases file does not exist")
    spec = importlib.util.spec_from_file_location(f"_cases_{abs(hash(path))}", path)
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = list(getattr(module, "CASES", []))
    checks = list(getattr(module, "CHECKS", []))
    rubric = list(getattr(module, "RUBRIC", []))
    if not cases or not all(isinstance(c, str) for c in cases):
        raise ValueError(f"{path}: CASES must be a non-empty list of strings")
    if not checks and not rubric:
        raise ValueError(f"{path}: define CHECKS (predicates) or RUBRIC (questions)")
    if not all(callable(c) for c in checks):
        raise ValueError(f"{path}: every entry of CHECKS must be a function (output, case) -> bool")
    return cases, checks, rubric


def _text(message: Any) -> str:
    return "".join(b.text for b in message.content if getattr(b, "type", "") == "text").strip()


def _passes(check: Check, output: str, case: str) -> bool:
    try:
        return bool(check(output, case))
    except Exception:
        return False  # a check that cannot even run on the answer is a failed check


class JudgeConfig(EvaluatorConfig):
    kind: Literal["judge"]
    prompt_file: str
    cases: str
    model: str = "claude-sonnet-5"
    judge_model: str | None = None
    base_url: str | None = None
    max_tokens: int = Field(1024, gt=0)
    timeout_s: float = Field(600, gt=0)

    def describe(self) -> str:
        return f"The evaluator is an LLM judge scoring the cases in `{self.cases}`."


class JudgeEvaluator:
    def __init__(self, config: JudgeConfig, metric: str) -> None:
        self.config = config
        self.metric = metric

    def client(self) -> anthropic.Anthropic:
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ValueError("ANTHROPIC_API_KEY is not set: the judge evaluator calls Claude")
        base = self.config.base_url or os.environ.get("ANTHROPIC_BASE_URL")
        return anthropic.Anthropic(api_key=key, base_url=base, timeout=60.0, max_retries=3)

    def evaluate(
        self,
        workdir: Path,
        log_path: Path,
        sandbox: Sandbox | None = None,
        env: dict[str, str] | None = None,
    ) -> Measurement:
        """(No candidate code runs here: the sandbox has nothing to hold.)"""
        start = time.monotonic()
        lines: list[str] = []
        try:
            passes, total = self._score(workdir, lines, start)
        except (ValueError, anthropic.APIError, TimeoutError) as exc:
            lines.append(f"error: {exc}")
            self._write(log_path, lines)
            return Measurement.crash(
                redact(str(exc)), tail("\n".join(lines)), time.monotonic() - start
            )
        score = passes / total
        lines.append(f"{self.metric}: {score:.6f}")
        lines.append(f"passes: {passes}")
        lines.append(f"criteria_total: {total}")
        self._write(log_path, lines)
        secondary = {"passes": float(passes), "criteria_total": float(total)}
        return Measurement.of(score, secondary, tail("\n".join(lines)), time.monotonic() - start)

    def _score(self, workdir: Path, lines: list[str], start: float) -> tuple[int, int]:
        prompt_path = workdir / self.config.prompt_file
        if not prompt_path.is_file():
            raise ValueError(f"{prompt_path}: the prompt file does not exist")
        prompt = prompt_path.read_text()
        cases, checks, rubric = load_cases(workdir / self.config.cases)
        if rubric and not self.config.judge_model:
            raise ValueError(
                f"{self.config.cases}: RUBRIC needs evaluator.judge_model in study.yaml"
            )
        client = self.client()
        passes = 0
        for i, case in enumerate(cases, 1):
            if time.monotonic() - start > self.config.timeout_s:
                raise TimeoutError(f"judge ran past its {self.config.timeout_s:g}s budget")
            answer = _text(
                client.messages.create(
                    model=self.config.model,
                    max_tokens=self.config.max_tokens,
                    system=prompt,
                    messages=[{"role": "user", "content": case}],
                )
            )
            results = [(c.__name__, _passes(c, answer, case)) for c in checks]
            results += [(q, self._ask(client, q, case, answer)) for q in rubric]
            passes += sum(ok for _, ok in results)
            lines += [f"## case {i}", case, "--- answer", answer, "--- criteria"]
            lines += [f"{'PASS' if ok else 'FAIL'} {name}" for name, ok in results]
        return passes, len(cases) * (len(checks) + len(rubric))

    def _ask(self, client: anthropic.Anthropic, question: str, case: str, answer: str) -> bool:
        reply = client.messages.create(
            model=self.config.judge_model or self.config.model,
            max_tokens=64,
            system=JUDGE_SYSTEM,
            messages=[
                {
                    "role": "user",
                    "content": f"<input>\n{case}\n</input>\n<answer>\n{answer}\n</answer>\n"
                    f"Question: {question}",
                }
            ],
        )
        return _text(reply).upper().startswith("YES")

    @staticmethod
    def _write(log_path: Path, lines: list[str]) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(redact("\n".join(lines)) + "\n")


KIND = Kind(JudgeConfig, JudgeEvaluator, runs_code=False)
