"""A study: one artifact to change, one fixed evaluator, one goal. Loaded from study.yaml.

Every problem in a study file is collected and reported together, by file, key and what is
wrong, before anything is written anywhere.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

STUDY_FILE = "study.yaml"


class StudyError(Exception):
    """A study that cannot be used; the message names the file, the key and the problem."""

    exit_code = 2


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Evaluators ----------------------------------------------------------------------------


class CommandEvaluatorConfig(Strict):
    kind: Literal["command"] = "command"
    command: str
    timeout_s: float = Field(600, gt=0)
    env: dict[str, str] = {}
    max_log_mb: float = Field(20, gt=0)


class HttpEvaluatorConfig(Strict):
    kind: Literal["http"]
    method: str = "GET"
    url: str
    headers: dict[str, str] = {}
    body: Any = None
    json_path: str
    timeout_s: float = Field(30, gt=0)
    retries: int = Field(3, ge=0)


class JudgeEvaluatorConfig(Strict):
    kind: Literal["judge"]
    prompt_file: str
    cases: str
    model: str = "claude-sonnet-5"
    judge_model: str | None = None
    base_url: str | None = None
    max_tokens: int = Field(1024, gt=0)
    timeout_s: float = Field(600, gt=0)


EvaluatorConfig = Annotated[
    CommandEvaluatorConfig | HttpEvaluatorConfig | JudgeEvaluatorConfig,
    Field(discriminator="kind"),
]


# Decisions -----------------------------------------------------------------------------


class DecisionConfig(Strict):
    rule: Literal["threshold", "sigma", "mannwhitney", "beta_binomial"] = "threshold"
    min_delta: float = Field(0.0, ge=0)
    relative: bool = False
    # sigma
    calibration_runs: int = Field(5, ge=2)
    k: float = Field(2.0, gt=0)
    # mannwhitney
    repeats: int = Field(5, ge=2)
    alpha: float = Field(0.01, gt=0, lt=1)
    min_effect: float = Field(0.02, ge=0)
    # beta_binomial
    probability: float = Field(0.95, gt=0.5, lt=1)
    max_expected_loss: float = Field(0.001, ge=0)
    # shared
    complexity_cost: float = Field(0.0, ge=0)
    rebaseline: bool = False


class MetricConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
    direction: Literal["minimize", "maximize"] = "minimize"
    min_delta: float | None = Field(None, ge=0)
    decision: DecisionConfig = DecisionConfig()


class HoldoutConfig(Strict):
    command: str
    metric: str
    timeout_s: float = Field(600, gt=0)
    every: int = Field(5, ge=1)
    tolerance: float = Field(0.0, ge=0)


# Proposers -----------------------------------------------------------------------------


class Prices(Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float = Field(ge=0)
    cache_read: float = Field(ge=0)


class ProposerConfig(Strict):
    kind: Literal["auto", "mutate", "claude", "agent_cli"] = "auto"
    seed: int = 0
    # mutate
    step: float = Field(0.2, gt=0)
    mutate_lines: list[str] = []  # regexes: only numbers on matching lines are perturbed
    # claude
    model: str = "claude-sonnet-5"
    max_tokens: int = Field(8192, gt=0)
    temperature: float = Field(1.0, ge=0, le=1)
    base_url: str | None = None
    prices: dict[str, Prices] = {}
    history_rows: int = Field(20, ge=0)
    learnings_max_chars: int = Field(6000, gt=200)
    # agent_cli
    command: str | None = None
    timeout_s: float = Field(900, gt=0)


class BudgetConfig(Strict):
    experiments: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)
    usd: float | None = Field(None, gt=0)


class StudyConfig(Strict):
    """The schema of study.yaml."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    repo: str | None = None
    editable: list[str] = Field(min_length=1)
    protected: list[str] = []
    program: str | None = None
    evaluator: EvaluatorConfig
    metric: MetricConfig
    holdout: HoldoutConfig | None = None
    proposer: ProposerConfig = ProposerConfig()
    budget: BudgetConfig = BudgetConfig()
    state_dir: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _command_by_default(cls, data: Any) -> Any:
        ev = data.get("evaluator") if isinstance(data, dict) else None
        if isinstance(ev, dict) and "kind" not in ev:
            data = data | {"evaluator": ev | {"kind": "command"}}
        return data

    @field_validator("editable", "protected")
    @classmethod
    def _relative(cls, paths: list[str]) -> list[str]:
        for p in paths:
            if not p or Path(p).is_absolute():
                raise ValueError(f"{p!r} must be a path relative to the study folder")
        return paths


class Study:
    """A validated study with its paths resolved.

    Paths in study.yaml are relative to the study folder. `rel` is the study folder relative to
    the repository root, so the same files are found in a worktree of that repository.
    """

    def __init__(self, config: StudyConfig, folder: Path, repo_root: Path) -> None:
        self.config = config
        self.folder = folder
        self.repo_root = repo_root
        self.rel = folder.relative_to(repo_root)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def metric(self) -> MetricConfig:
        return self.config.metric

    @property
    def min_delta(self) -> float:
        m = self.config.metric
        return m.min_delta if m.min_delta is not None else m.decision.min_delta

    @property
    def state_dir(self) -> Path:
        if self.config.state_dir:
            return (self.folder / self.config.state_dir).resolve()
        return self.repo_root / "runs" / self.name

    def repo_path(self, path: str) -> str:
        """A study-relative path as a path relative to the repository root (posix)."""
        return (self.rel / path).as_posix()

    @property
    def editable(self) -> list[str]:
        return [self.repo_path(p) for p in self.config.editable]

    @property
    def protected(self) -> list[str]:
        return [self.repo_path(p) for p in self.config.protected]

    def program_text(self, default: Path | None = None) -> str:
        if self.config.program:
            return (self.folder / self.config.program).read_text()
        return default.read_text() if default and default.exists() else ""


def _loc(err: dict[str, Any]) -> str:
    return ".".join(str(x) for x in err["loc"]) or "(top)"


def _format(file: Path, problems: list[str]) -> StudyError:
    lines = [f"{file}: {len(problems)} problem(s):"] + [f"  - {p}" for p in problems]
    return StudyError("\n".join(lines))


def find_repo_root(folder: Path) -> Path | None:
    out = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip()).resolve() if out.returncode == 0 else None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False


def _overlaps(a: str, b: str) -> bool:
    pa, pb = Path(os.path.normpath(a)).parts, Path(os.path.normpath(b)).parts
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


def load_study(path: str | Path) -> Study:
    """Load and validate a study folder (or its study.yaml); a StudyError lists every problem."""
    path = Path(path).resolve()
    folder = path.parent if path.is_file() else path
    file = folder / STUDY_FILE
    if not file.is_file():
        raise StudyError(f"{file}: no study file here (expected {STUDY_FILE} in {folder})")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise StudyError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{file}: expected a mapping of keys at the top level")
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_loc(e)}: {e['msg']}" for e in exc.errors()]
        raise _format(file, problems) from None

    problems = []
    if config.repo:
        repo_root = find_repo_root((folder / config.repo).resolve())
        if repo_root is None:
            problems.append(f"repo: {config.repo!r} is not inside a git repository")
    else:
        repo_root = find_repo_root(folder)
        if repo_root is None:
            problems.append(f"repo: the study folder {folder} is not inside a git repository")
    if repo_root is None:
        raise _format(file, problems)
    if not _inside(folder, repo_root):
        raise _format(file, [f"repo: the study folder is outside the repository {repo_root}"])

    for key in ("editable", "protected"):
        for i, p in enumerate(getattr(config, key)):
            full = folder / p
            if not _inside(full, repo_root):
                problems.append(f"{key}.{i}: {p!r} is outside the repository {repo_root}")
            elif not full.exists():
                problems.append(f"{key}.{i}: {p!r} does not exist in {folder}")
    for e in config.editable:
        for p in config.protected:
            if _overlaps(e, p):
                problems.append(f"editable/protected: {e!r} overlaps protected {p!r}")
    if config.program and not (folder / config.program).is_file():
        problems.append(f"program: {config.program!r} does not exist in {folder}")
    if problems:
        raise _format(file, problems)
    return Study(config, folder, repo_root)
