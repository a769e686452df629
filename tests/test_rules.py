"""A decision rule is one file and one registry line: a new rule, written here, decides a
study's experiments and describes itself to the model; a rule's options are its own."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from core import rules
from core.study import StudyError
from proposers.prompt import system_text
from steps.lab import Lab
from steps.plugins import load_study
from tests.conftest import experiment

ROOMS = {"core", "steps", "tasks", "flows", "proposers", "evaluators", "email_ab", "autoresearch"}

# the one file: a rule of its own, with an option of its own
BEST_OF = '''
from pydantic import Field

from core.decide import Verdict, gain
from core.rules.base import DecisionConfig, Rule


class BestOfConfig(DecisionConfig):
    runs: int = Field(3, ge=2)


class BestOf(Rule):
    """Keep when the candidate's best run beats the champion's best by more than the bar."""

    name = "best_of"
    Config = BestOfConfig

    @property
    def repeats(self):
        return self.config.runs

    def describe(self):
        return f"its best of {self.config.runs} runs beating the champion's best"

    def test(self, champion, candidate, bar, arms):
        best = min if self.direction == "minimize" else max
        g = gain(self.direction, best(candidate), best(champion))
        status = "keep" if g > bar else "discard"
        return Verdict(status, f"best gains {g:.6g}", f"best_of n={candidate.size} gain={g:.6g}")


RULE = BestOf
'''


@pytest.fixture
def best_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "plugged").mkdir()
    (tmp_path / "plugged" / "best_of_rule.py").write_text(BEST_OF)
    monkeypatch.syspath_prepend(str(tmp_path / "plugged"))
    monkeypatch.setitem(rules.RULES.built_in, "best_of", "best_of_rule")  # the one line
    yield "best_of"
    sys.modules.pop("best_of_rule", None)


@pytest.mark.usefixtures("prefect_server")
def test_a_new_rule_is_one_file_and_one_line(best_of, make_study, scripted):
    runs = "import model, random\nprint(f'score: {abs(model.X - 3.0) + random.random():.6f}')\n"
    folder = make_study(runs, decision="{rule: best_of, runs: 4}")
    study = load_study(folder)
    assert study.rule.name == "best_of" and study.rule.repeats == 4

    scripted += [{"study/model.py": "X = 2.9\n"}, {"study/model.py": "X = 40.0\n"}]
    assert experiment(str(folder), researcher=scripted).description == "baseline"
    better = experiment(str(folder), researcher=scripted)
    worse = experiment(str(folder), researcher=scripted)
    assert better.status == "keep" and better.evidence.startswith("best_of n=4")
    assert worse.status == "discard" and worse.evidence.startswith("best_of n=4")
    logs = {p.name for p in (study.state_dir / "logs").iterdir()}
    assert {"3.log", "3-2.log", "3-3.log", "3-4.log"} <= logs  # measured as the rule asks

    lab = Lab.open(folder)
    context = lab.briefing.context(lab.reserve(), lab.workspace)
    prompt = system_text(context)
    assert "kept only for its best of 4 runs beating the champion's best" in prompt


def test_a_rule_checks_its_own_options(make_study):
    with pytest.raises(StudyError) as exc:
        load_study(make_study(decision="{rule: threshold, k: 3}"))
    assert "metric.decision.k: Extra inputs are not permitted" in str(exc.value)


def test_a_rule_has_its_defaults(make_study):
    sigma = load_study(make_study(decision="{rule: sigma, k: 3}")).rule
    assert (sigma.repeats, sigma.baseline_runs, sigma.calibrates, sigma.paired) == (
        5,
        5,
        True,
        False,
    )
    assert "3 standard deviations" in sigma.prompt_line()


def test_min_delta_is_one_key(make_study):
    with pytest.raises(StudyError, match="metric.decision.min_delta: write it as metric.min_delta"):
        load_study(make_study(decision="{min_delta: 0.1}"))


def test_an_unknown_rule_names_the_rules_there_are(best_of, make_study):
    with pytest.raises(StudyError) as exc:
        load_study(make_study(decision="{rule: median}"))
    assert "unknown decision rule 'median'" in str(exc.value)
    assert "beta_binomial" in str(exc.value) and "best_of" in str(exc.value)


def rule_switches(root: Path) -> list[str]:
    """Where a product module compares a rule's name (==, !=, in a tuple) or keeps a dict by
    rule name, outside core/rules/."""
    names = "|".join(rules.RULES.built_in)
    compared = re.compile(rf'(==|!=|\bin\s*[(\[{{])\s*"({names})"|"({names})"\s*(==|!=)')
    keyed = re.compile(rf'"({names})"\s*:')
    found = []
    for path in sorted(root.glob("*/**/*.py")):
        room = path.relative_to(root).parts[0]
        if room not in ROOMS or path.is_relative_to(root / "core" / "rules"):
            continue
        text, where = path.read_text(), path.relative_to(root)
        found += [f"{where}: {m.group(0)}" for m in compared.finditer(text)]
        if len(set(keyed.findall(text))) >= 2:  # one key "sigma" is the noise, not a rule
            found.append(f"{where}: a dict by rule name")
    return found


def test_no_rule_name_is_switched_on_outside_the_rules() -> None:
    """The tool asks a rule what it needs; it never switches on the rule's name."""
    assert rule_switches(Path(__file__).resolve().parent.parent) == []
