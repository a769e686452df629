"""A study: one artifact to change, one fixed evaluator, one goal. Loaded from study.yaml.

Every problem in a study file is collected and reported together, by file, key and what is
wrong, before anything is written anywhere. The evaluator and proposer sections hold the fields
every kind shares; each kind's own model (in evaluators/ and proposers/) checks the rest, when
the caller passes the registries (`Kinds`).
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core import devices, rules
from core.audit import AuditConfig
from core.constraints import Constraint
from core.ledger import KARPATHY, OURS
from core.rules.config import AnyDecision, DecisionConfig

if TYPE_CHECKING:
    from core.rules.base import Rule

STUDY_FILE = "study.yaml"


class StudyError(Exception):
    """A study that cannot be used; the message names the file, the key and the problem."""

    exit_code = 2


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StageConfig(Strict):
    """A cheap first look at a candidate (a smaller data set, a shorter budget, a quick
    correctness check): a command that prints `metric: value`. The candidate passes when its
    value is within `within` (a fraction) of the champion's value at this stage, or better."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    command: str
    metric: str | None = None  # the number it prints (default: the study's metric)
    timeout_s: float = Field(60, gt=0)
    within: float = Field(0.1, ge=0)


class EvaluatorConfig(Strict):
    """What every evaluator kind has. Each kind's model subclasses it (evaluators/<kind>.py)."""

    kind: str = "command"
    # evaluate each candidate as a flow run on this Prefect work pool (workers anywhere), the
    # candidate fetched from the study's `remote`
    work_pool: str | None = None
    # cheap commands run first: a candidate that fails one is `screened`, never fully measured
    stages: list[StageConfig] = []

    def describe(self) -> str:
        """One sentence for the researcher's prompt: how the number is measured."""
        return f"The evaluator is of kind `{self.kind}`."

    def wants_network(self) -> bool:
        """Whether its evaluations get a network (of their own) in the sandbox."""
        return False

    def environment(self) -> tuple[dict[str, str], list[str]]:
        """What its commands get beyond the allowlist: variables as written, names passed on
        (a holdout command gets the same)."""
        return {}, []


class ProposerConfig(Strict):
    """What every proposer kind has. Each kind's model subclasses it (proposers/<kind>.py)."""

    kind: str = "auto"
    seed: int = 0
    history_rows: int = Field(20, ge=0)  # ledger rows shown to a model
    learnings_max_chars: int = Field(6000, gt=200)  # resource.md stays under this


LOOSE = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)


class AnyEvaluator(EvaluatorConfig):
    """An evaluator section before its kind's model has checked the keys of its own."""

    model_config = LOOSE


class AnyProposer(ProposerConfig):
    """A proposer section before its kind's model has checked the keys of its own."""

    model_config = LOOSE


class Kinds(Protocol):
    """The registries of evaluator and proposer kinds (section is "evaluator" or "proposer")."""

    def names(self, section: str) -> list[str]: ...

    def model(self, section: str, kind: str) -> type[BaseModel]: ...


RESERVED = {c for c in KARPATHY + OURS if c != "{metric}"}


NUMBER_NAME = r"^[A-Za-z_][A-Za-z0-9_.]*$"  # a number an evaluator prints


class MetricConfig(Strict):
    name: str = Field(pattern=NUMBER_NAME)
    direction: Literal["minimize", "maximize"] = "minimize"
    min_delta: float = Field(0.0, ge=0)  # the practical bar a candidate must clear
    decision: DecisionConfig = AnyDecision()  # loaded: the rule's own model (core.rules)
    # other numbers the evaluator prints: bounds a candidate must hold (core.constraints)
    constraints: dict[str, Constraint] = {}
    # other numbers to draw a Pareto front over, beside the metric (core.pareto)
    objectives: dict[str, Literal["minimize", "maximize"]] = {}

    @field_validator("constraints", "objectives")
    @classmethod
    def _numbers(cls, numbers: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        for name in numbers:
            if not re.match(NUMBER_NAME, name):
                raise ValueError(f"{name!r} is not a number's name")
            if name == info.data.get("name"):
                raise ValueError(
                    f"{name} is the metric itself: its bar is metric.min_delta"
                    if info.field_name == "constraints"
                    else f"{name} is the metric: it is always the first objective"
                )
        return numbers

    @property
    def all_objectives(self) -> dict[str, Literal["minimize", "maximize"]]:
        """The metric first, then the other objectives (empty: a study of one number)."""
        if not self.objectives:
            return {}
        return {self.name: self.direction, **self.objectives}

    @field_validator("decision", mode="before")
    @classmethod
    def _any_rule(cls, data: Any) -> Any:
        """Any rule's keys, until load_study checks them by the rule's own model."""
        return AnyDecision.model_validate(data) if isinstance(data, dict) else data

    @field_validator("name")
    @classmethod
    def _not_a_column(cls, name: str) -> str:
        if name in RESERVED:
            raise ValueError(f"{name!r} is a column of results.tsv already; name it otherwise")
        return name


class HoldoutConfig(Strict):
    command: str
    metric: str
    timeout_s: float = Field(600, gt=0)
    every: int = Field(5, ge=1)
    tolerance: float = Field(0.0, ge=0)


class SandboxConfig(Strict):
    """Where candidates run (core.sandbox). `sandbox: false` in study.yaml turns it off."""

    enabled: bool = True
    readable: list[str] = []  # more paths to show read-only (e.g. a data set under $HOME)
    writable: list[str] = []  # paths an evaluation may write (e.g. a cache); created if missing

    @model_validator(mode="before")
    @classmethod
    def _a_bool_says_on_or_off(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data


class LimitsConfig(Strict):
    """What one evaluation may use (core.sandbox): a runaway candidate fails its own run, not
    the machine. `null` lifts a limit."""

    processes: int | None = Field(4096, ge=16)  # processes and threads, in its sandbox
    memory_mb: int | Literal["auto"] | None = "auto"  # each process's heap; auto: 3/4 of RAM
    file_mb: int | None = Field(8192, ge=1)  # the largest file it may write
    tmp_mb: int | None = Field(4096, ge=1)  # each of its /tmp, /dev/shm and home (RAM-backed)
    open_files: int | None = Field(65536, ge=64)

    @field_validator("memory_mb")
    @classmethod
    def _enough_memory(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 64:
            raise ValueError("memory_mb must be at least 64 (or auto, or null for no limit)")
        return value


class SearchConfig(Strict):
    """Where the next candidate starts from (core.search): the champion (`greedy`); any
    measured node close behind it (`tree`), by UCB over how far behind it is and how often it
    was extended; or the best of its island (`islands`), the best of all migrating to every
    island every `migrate_every` experiments."""

    strategy: Literal["greedy", "tree", "islands"] = "greedy"
    exploration: float = Field(1.0, ge=0)  # tree: UCB's weight on nodes extended less
    margin: float = Field(0.1, gt=0)  # tree: how far behind the champion (a fraction of it)
    islands: int = Field(4, ge=2)  # islands: how many (experiment n is island (n - 2) % k)
    migrate_every: int = Field(10, ge=1)  # islands: experiments between migrations


class BudgetConfig(Strict):
    experiments: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)
    usd: float | None = Field(None, gt=0)


class SlotsConfig(Strict):
    """`slots:` each slot's environment, as a list (`- {CUDA_VISIBLE_DEVICES: "0"}`); or `auto`:
    a GPU each (core.devices), never one GPU for two slots unless `{auto: true, share: true}`."""

    auto: bool = False
    share: bool = False  # auto: slots may share a GPU when there are fewer GPUs than slots
    envs: list[dict[str, str]] = []

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, list):
            return {"envs": value}
        if value == "auto":
            return {"auto": True}
        if isinstance(value, str):
            raise ValueError(f"{value!r}: give a list of environments, `auto`, or {{auto: true}}")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> SlotsConfig:
        if self.auto and self.envs:
            raise ValueError("either `auto` or a list of environments, not both")
        if self.share and not self.auto:
            raise ValueError("`share` applies to `auto` slots only")
        return self


class StudyConfig(Strict):
    """The schema of study.yaml."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    repo: str | None = None
    editable: list[str] = Field(min_length=1)
    protected: list[str] = []
    program: str | None = None
    evaluator: AnyEvaluator  # loaded with Kinds: the kind's own model
    metric: MetricConfig
    holdout: HoldoutConfig | None = None
    audit: AuditConfig = AuditConfig()  # of every keep (core.audit, steps.audit)
    proposer: AnyProposer = AnyProposer()  # loaded with Kinds: the kind's own model
    budget: BudgetConfig = BudgetConfig()
    search: SearchConfig = SearchConfig()
    sandbox: SandboxConfig = SandboxConfig()
    limits: LimitsConfig = LimitsConfig()
    stop_after_crashes: int = Field(5, ge=0)  # in a row; 0: never stop for crashes
    parallel: int | None = Field(None, ge=1)  # candidates in flight (default 1, or len(slots))
    slots: SlotsConfig = SlotsConfig()  # each slot's environment, or a GPU each (`auto`)
    remote: str | None = None  # a git URL the candidates travel by to workers
    trackers: list[Literal["mlflow"]] = []  # where runs are recorded too (trackers/)
    state_dir: str | None = None

    @model_validator(mode="after")
    def _enough_slots(self) -> StudyConfig:
        envs = self.slots.envs
        if envs and self.parallel is not None and self.parallel > len(envs):
            raise ValueError(f"parallel is {self.parallel} but slots gives {len(envs)} env")
        if self.evaluator.work_pool and not self.remote:
            raise ValueError("evaluator.work_pool needs `remote:` (a git URL the workers fetch)")
        return self

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
    def parallel(self) -> int:
        """How many candidates may be in flight: `parallel`, else one per `slots` entry (with
        `slots: auto`, one per GPU found)."""
        slots = self.config.slots
        if self.config.parallel or not slots.auto:
            return self.config.parallel or max(1, len(slots.envs))
        return max(1, len(devices.gpus()))

    @cached_property
    def rule(self) -> Rule:
        """The decision rule, as `metric.decision` describes it."""
        m = self.config.metric
        return rules.make(m.decision, m.direction, m.min_delta)

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

    def path_option(self, text: str) -> Path:
        """A path from study.yaml: `~` expanded, relative to the study folder."""
        return (self.folder / Path(text).expanduser()).resolve()

    def program_text(self, default: Path | None = None) -> str:
        if self.config.program:
            return (self.folder / self.config.program).read_text()
        return default.read_text() if default and default.exists() else ""


# Loading -------------------------------------------------------------------------------


def _loc(prefix: str, err: Any) -> str:
    return ".".join([prefix, *(str(x) for x in err["loc"])]).strip(".") or "(top)"


def _problems(prefix: str, exc: ValidationError) -> list[str]:
    return [f"{_loc(prefix, e)}: {e['msg']}" for e in exc.errors()]


def _format(file: Path, problems: list[str]) -> StudyError:
    lines = [f"{file}: {len(problems)} problem(s):"] + [f"  - {p}" for p in problems]
    return StudyError("\n".join(lines))


def find_repo_root(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
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


def _read(file: Path) -> dict[str, Any]:
    """The study file as a mapping, or a StudyError saying why it is not one."""
    data = file.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StudyError(
            f"{file}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{file}: expected a mapping of keys at the top level")
    return raw


def _kind_section(
    raw: dict[str, Any], section: str, default: str, kinds: Kinds
) -> tuple[BaseModel | None, list[str]]:
    """One plugin section validated by its kind's own model."""
    data = raw.get(section, {})
    if not isinstance(data, dict):
        return None, []  # the base schema says so already
    data = {"kind": default} | data
    kind = data["kind"]
    names = kinds.names(section)
    if kind not in names:
        return None, [f"{section}.kind: unknown kind {kind!r}; choose one of {', '.join(names)}"]
    try:
        model = kinds.model(section, kind)
    except ValueError as exc:  # its plugin cannot load: an optional package is missing
        return None, [f"{section}.kind: {exc}"]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, _problems(section, exc)


def _decision(raw: dict[str, Any]) -> tuple[BaseModel | None, list[str]]:
    """metric.decision checked by its rule's own model (core.rules)."""
    metric = raw.get("metric")
    data = metric.get("decision", {}) if isinstance(metric, dict) else {}
    if not isinstance(data, dict):
        return None, []  # the base schema says so already
    key = "metric.decision"
    if "min_delta" in data:
        return None, [f"{key}.min_delta: write it as metric.min_delta (one bar for every rule)"]
    name = data.get("rule", rules.DEFAULT)
    if not isinstance(name, str):
        return None, [f"{key}.rule: the name of a rule, not {name!r}"]
    try:
        model = rules.rule_class(name).Config
    except (ValueError, ImportError) as exc:
        return None, [f"{key}.rule: {exc}"]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, _problems(key, exc)


def _path_problems(raw: dict[str, Any], folder: Path, repo_root: Path) -> list[str]:
    """Editable, protected and program paths: inside the repository, present, apart."""
    problems = []
    lists = {k: raw.get(k) or [] for k in ("editable", "protected")}
    for key, paths in lists.items():
        if not isinstance(paths, list):
            continue
        for i, p in enumerate(paths):
            if not isinstance(p, str) or not p or Path(p).is_absolute():
                continue  # the schema names it
            full = folder / p
            if not _inside(full, repo_root):
                problems.append(f"{key}.{i}: {p!r} is outside the repository {repo_root}")
            elif not full.exists():
                problems.append(f"{key}.{i}: {p!r} does not exist in {folder}")
    strings = {k: v if isinstance(v, list) else [] for k, v in lists.items()}
    for e in (p for p in strings["editable"] if isinstance(p, str)):
        for p in (p for p in strings["protected"] if isinstance(p, str)):
            if _overlaps(e, p):
                problems.append(f"editable/protected: {e!r} overlaps protected {p!r}")
    program = raw.get("program")
    if isinstance(program, str) and not (folder / program).is_file():
        problems.append(f"program: {program!r} does not exist in {folder}")
    return problems


def _repo_root(raw: dict[str, Any], folder: Path) -> tuple[Path | None, list[str]]:
    repo = raw.get("repo")
    if isinstance(repo, str) and repo:
        root = find_repo_root((folder / repo).resolve())
        return root, [] if root else [f"repo: {repo!r} is not inside a git repository"]
    root = find_repo_root(folder)
    return root, [] if root else [f"repo: the study folder {folder} is not inside a git repository"]


def load_study(path: str | Path, kinds: Kinds | None = None) -> Study:
    """Load and validate a study folder (or its study.yaml); a StudyError lists every problem.

    With `kinds`, the evaluator and proposer sections are checked by their kind's model too, and
    the Study carries those typed configs.
    """
    path = Path(path).resolve()
    folder = path.parent if path.is_file() else path
    file = folder / STUDY_FILE
    if not file.is_file():
        raise StudyError(f"{file}: no study file here (expected {STUDY_FILE} in {folder})")
    raw = _read(file)
    problems: list[str] = []
    config: StudyConfig | None = None
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        problems += _problems("", exc)
    typed: dict[str, BaseModel | None] = {}
    if kinds is not None:
        for section, default in (("evaluator", "command"), ("proposer", "auto")):
            if section in raw or section == "proposer":
                typed[section], found = _kind_section(raw, section, default, kinds)
                problems += found
    decision, found = _decision(raw)
    problems += found
    repo_root, found = _repo_root(raw, folder)
    problems += found
    if repo_root is not None:
        if not _inside(folder, repo_root):
            problems.append(f"repo: the study folder is outside the repository {repo_root}")
        else:
            problems += _path_problems(raw, folder, repo_root)
    if problems or config is None or repo_root is None:
        raise _format(file, list(dict.fromkeys(problems)))
    if typed:
        config = config.model_copy(update={k: v for k, v in typed.items() if v is not None})
    if decision is not None:
        metric = config.metric.model_copy(update={"decision": decision})
        config = config.model_copy(update={"metric": metric})
    study = Study(config, folder, repo_root)
    if config.search.strategy != "greedy" and study.rule.paired:
        why = (
            f"a {config.search.strategy} search compares each node with the champion's "
            f"recorded runs: not with rule {study.rule.name} or rebaseline"
        )
        raise _format(file, [f"search.strategy: {why}"])
    return study
