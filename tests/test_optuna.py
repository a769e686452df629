"""The optuna proposer: the ledger is its memory, its knobs keep their ranges and their types,
and it improves a study; its default (`auto`: gp with torch, else tpe; quadratic steps) takes a
hidden quadratic to its optimum; mutate and optuna both improve the template of `autoresearch
init`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.search import SimLab, knob_values, study_of
from core import rules
from core.decide import gain
from core.ledger import Row, Status
from core.study import Study, StudyError
from proposers import optuna as optuna_proposer
from proposers.base import Proposer, StopCampaign
from proposers.mutate import MutateConfig, MutateProposer, knob_literals
from proposers.optuna import (
    GP_KNOBS,
    QUADRATIC,
    QUADRATIC_WAIT,
    Measured,
    OptunaConfig,
    OptunaProposer,
    Space,
    auto_sampler,
    default_range,
    measured,
    point_of,
    quadratic_due,
    quadratic_step,
)
from steps.plugins import load_study
from tests.conftest import ROOT, commit_all

MODEL = "RATE = 0.05\nLAYERS = 4\nOFFSET = 2.0  # tune\nNAME = 'v1.5'\n"
PATH = "study/solution.py"


def bowl(files: dict[str, str]) -> float:
    k = knob_values(files)
    return (k["RATE"] - 0.2) ** 2 * 100 + (k["LAYERS"] - 6) ** 2 + (k["OFFSET"] - 3.0) ** 2


def lab_for(config: OptunaConfig) -> SimLab:
    """An in-process lab over MODEL, scored by `bowl` under the threshold rule."""
    study = study_of("toy", config, rules.config())
    return SimLab(study, {PATH: MODEL}, bowl)


def written(files: dict[str, str], name: str) -> str:
    """A knob's literal as written in the file."""
    m = re.search(rf"^{name} = (\S+)", files[PATH], re.M)
    assert m is not None
    return m.group(1)


@pytest.mark.parametrize(("sampler", "steps"), [("tpe", 24), ("cmaes", 24), ("auto", 14)])
def test_resumes_after_a_restart_without_repeating_a_point(sampler, steps):
    """Two proposer objects take turns over one growing ledger, as a campaign stopped and
    started again would: no point twice, and each proposal is the one a brand-new proposer
    with that seed and history makes (auto: gp, and quadratic steps from the 11th point)."""
    config = OptunaConfig(seed=3, sampler=sampler)
    lab = lab_for(config)
    turns = [OptunaProposer(config), OptunaProposer(config)]
    keys = []
    for n in range(steps):
        proposer, context = turns[n % 2], lab.context()
        assert proposer.propose(context) == OptunaProposer(config).propose(context)
        keys.append(lab.step(proposer).key)
    assert len(set(keys)) == len(keys) == steps
    assert bowl(lab.files) < bowl({PATH: MODEL})


@pytest.mark.parametrize("sampler", ["tpe", "cmaes"])
def test_a_fresh_proposer_searches_where_the_ledger_says(sampler):
    """30 measured points of (X - 7)^2 in the ledger, all discarded: a new proposer's points
    gather near 7 (points drawn at random from [0, 10] would lie 2.5 away, at the median)."""
    config = OptunaConfig(seed=0, sampler=sampler, knobs={"X": (0.0, 10.0)})
    study = study_of("toy", config, rules.config())
    history = [Row(1, Status.KEEP, "baseline", metric=4.0)]
    for n, x in enumerate(np.random.default_rng(0).uniform(0, 10, 30), 2):
        x = f"{x:.4g}"
        move = f"optuna {sampler}: study/solution.py:1:0 5.0 -> {x}"
        key = f"optuna study/solution.py:1:0={x}"
        history.append(Row(n, Status.DISCARD, move, metric=(float(x) - 7) ** 2, key=key))
    lab = SimLab(study, {PATH: "X = 5.0\n"}, lambda files: 0.0)
    lab.history = history
    distances = []
    for _ in range(9):
        proposal = OptunaProposer(config).propose(lab.context())
        distances.append(abs(float(written(proposal.files, "X")) - 7))
        lab.history.append(Row(len(lab.history) + 1, Status.CRASH, "", key=proposal.key))
    assert np.median(distances) < 1.0, distances


def test_the_ledger_is_the_history_discards_count_and_crashes_fail():
    knobs = knob_literals({"s.py": "X = 0.5\nY = 2.0\n"}, [])
    history = [
        Row(1, Status.KEEP, "baseline", metric=9.0),
        Row(
            2, Status.DISCARD, "optuna tpe: a", metric=12.0, key="optuna s.py:1:0=0.3 s.py:2:0=1.0"
        ),
        Row(3, Status.CRASH, "optuna tpe: b", key="optuna s.py:1:0=0.9 s.py:2:0=1.5"),
        Row(4, Status.KEEP, "mutate s.py:1:0 0.5 -> 0.6", metric=8.0, key="s.py:1:0=0.6"),
        Row(5, Status.DISCARD, "mutate s.py:2:0 2.0 -> 2.5", metric=8.5, key="s.py:2:0=2.5"),
        Row(6, Status.DISCARD, "a model's change", metric=7.0, key="sha256:9f2c"),
    ]
    points = measured(history, knobs)
    assert [(m.point, m.value) for m in points.values()] == [
        ({"s.py:1:0": 0.3, "s.py:2:0": 1.0}, 12.0),
        ({"s.py:1:0": 0.9, "s.py:2:0": 1.5}, None),
        ({"s.py:1:0": 0.6, "s.py:2:0": 2.0}, 8.0),  # mutate's move, from the baseline
        ({"s.py:1:0": 0.6, "s.py:2:0": 2.5}, 8.5),  # and from the champion it kept
    ]


def test_never_proposes_a_point_in_flight():
    lab = lab_for(OptunaConfig(seed=0))
    for _ in range(8):
        lab.step(OptunaProposer(OptunaConfig(seed=0)))
    context = lab.context()
    first = OptunaProposer(OptunaConfig(seed=0)).propose(context)
    busy = replace(context, in_flight=[first], tried=context.tried | {first.key})
    assert OptunaProposer(OptunaConfig(seed=0)).propose(context) == first
    assert OptunaProposer(OptunaConfig(seed=0)).propose(busy).key != first.key


def test_gp_asks_away_from_the_points_in_flight():
    """Late in a search gp's best guess hardly moves between experiments: a second proposal
    while the first is in flight goes elsewhere (1% or more), not a few digits beside it."""
    pytest.importorskip("torch")
    config = OptunaConfig(seed=0)
    lab = lab_for(config)
    for _ in range(16):
        lab.step(OptunaProposer(config))
    context = lab.context()
    first = OptunaProposer(config).propose(context)
    tried = context.tried | {first.key}
    busy = replace(context, experiment=context.experiment + 1, in_flight=[first], tried=tried)
    second = OptunaProposer(config).propose(busy)
    a, b = point_of(first.key), point_of(second.key)
    assert a is not None and b is not None and first.hypothesis.startswith("optuna gp: ")
    assert max(abs(a[k] - b[k]) / abs(a[k]) for k in a) > 0.01, (first.key, second.key)


def test_ranges_are_kept_and_integers_stay_integers():
    knobs = {"RATE": (0.01, 0.1), "LAYERS": (2, 8), "OFFSET": None}
    config = OptunaConfig(seed=1, sampler="tpe", knobs=knobs)
    lab = lab_for(config)
    for _ in range(20):
        proposal = OptunaProposer(config).propose(lab.context())
        assert 0.01 <= float(written(proposal.files, "RATE")) <= 0.1
        assert re.fullmatch(r"[2-8]", written(proposal.files, "LAYERS"))
        assert "NAME = 'v1.5'" in proposal.files[PATH]
        lab.step(OptunaProposer(config))


def test_default_ranges_run_from_a_tenth_to_ten_times_the_start_on_a_linear_scale():
    assert (default_range(0.05, False).low, default_range(0.05, False).high) == (0.005, 0.5)
    assert not default_range(0.05, False).log
    layers = default_range(4, True)
    assert (layers.low, layers.high, layers.log) == (1, 40, False)
    config = OptunaConfig(seed=2, sampler="random")
    lab = lab_for(config)
    seen = {"RATE": [], "LAYERS": []}
    for _ in range(30):
        proposal = OptunaProposer(config).propose(lab.context())
        seen["RATE"].append(float(written(proposal.files, "RATE")))
        seen["LAYERS"].append(written(proposal.files, "LAYERS"))
        lab.step(OptunaProposer(config))
    assert 0.005 <= min(seen["RATE"]) and max(seen["RATE"]) <= 0.5
    assert np.median(seen["RATE"]) > 0.15  # linear: most of the range lies above the start
    assert all(re.fullmatch(r"\d+", v) and 1 <= int(v) <= 40 for v in seen["LAYERS"])


def test_mutate_lines_and_knobs_choose_what_is_searched():
    for config in (OptunaConfig(mutate_lines=["# tune"]), OptunaConfig(knobs={"OFFSET": None})):
        proposal = OptunaProposer(config).propose(lab_for(config).context())
        assert proposal.key.startswith("optuna study/solution.py:3:0=")
        assert written(proposal.files, "RATE") == "0.05"
        assert written(proposal.files, "OFFSET") != "2.0"


def test_a_knob_by_location_and_an_unknown_knob():
    located = OptunaConfig(knobs={"solution.py:2:0": (1, 9)})  # relative to the study folder
    proposal = OptunaProposer(located).propose(lab_for(located).context())
    assert re.fullmatch(r"optuna study/solution.py:2:0=[1-9]", proposal.key)
    unknown = OptunaConfig(knobs={"DEPTH": None})
    with pytest.raises(StopCampaign, match="'DEPTH' matches no number"):
        OptunaProposer(unknown).propose(lab_for(unknown).context())


def test_cmaes_improves_a_bowl_within_its_ranges():
    config = OptunaConfig(
        seed=0, sampler="cmaes", knobs={"RATE": (0.0, 1.0), "LAYERS": (1, 12), "OFFSET": (0, 6)}
    )
    lab = lab_for(config)
    for _ in range(30):
        row = lab.step(OptunaProposer(config))
        assert row.status in (Status.KEEP, Status.DISCARD)
    assert bowl(lab.files) < 0.5 * bowl({PATH: MODEL})
    assert 0 <= float(written(lab.files, "RATE")) <= 1


def test_the_gaussian_process_sampler_models_the_ledger():
    pytest.importorskip("torch")
    config = OptunaConfig(seed=0, sampler="gp", knobs={"OFFSET": (0.0, 6.0)})
    lab = lab_for(config)
    keys = [lab.step(OptunaProposer(config)).key for _ in range(10)]
    assert len(set(keys)) == 10
    assert abs(float(written(lab.files, "OFFSET")) - 3.0) < 0.05  # the optimum, from 2.0


@pytest.mark.parametrize("torch", [True, False], ids=["gp", "tpe-without-torch"])
def test_the_default_takes_a_hidden_quadratic_below_half_in_30_experiments(monkeypatch, torch):
    """The default config, no ranges given: `bowl` (three knobs, one an integer) from 7.25 to
    below 0.5 within 30 experiments, with torch (gp) and without it (tpe)."""
    if torch:
        pytest.importorskip("torch")
    monkeypatch.setattr(optuna_proposer, "has_torch", lambda: torch)
    config = OptunaConfig(seed=0)
    lab = lab_for(config)
    assert bowl(lab.files) == 7.25
    for _ in range(30):
        row = lab.step(OptunaProposer(config))
        assert row.description.startswith(
            ("optuna quadratic: ", "optuna gp: " if torch else "optuna tpe: ")
        )
        if bowl(lab.files) < 0.5:
            break
    assert bowl(lab.files) < 0.5, lab.history[-1]


def test_auto_is_gp_with_torch_and_few_knobs_else_tpe(monkeypatch):
    monkeypatch.setattr(optuna_proposer, "has_torch", lambda: True)
    assert (auto_sampler(1), auto_sampler(GP_KNOBS), auto_sampler(GP_KNOBS + 1)) == (
        "gp",
        "gp",
        "tpe",
    )
    monkeypatch.setattr(optuna_proposer, "has_torch", lambda: False)
    assert (auto_sampler(1), auto_sampler(GP_KNOBS + 1)) == ("tpe", "tpe")
    proposal = OptunaProposer(OptunaConfig(seed=0)).propose(lab_for(OptunaConfig()).context())
    assert proposal.hypothesis.startswith("optuna tpe: ")  # without torch: no error, tpe
    with pytest.raises(StopCampaign, match="gp needs torch"):  # asked for by name: a clear stop
        OptunaProposer(OptunaConfig(sampler="gp")).propose(lab_for(OptunaConfig()).context())


def space_of(lab: SimLab, config: OptunaConfig) -> Space:
    return OptunaProposer(config)._space(lab.context())[0]


def test_a_quadratic_step_goes_to_the_minimum_of_the_fit_within_the_points_spread():
    config = OptunaConfig(knobs={"RATE": (0.0, 1.0), "OFFSET": (0.0, 6.0)})
    space = space_of(lab_for(config), config)
    rate, offset = (lit.location for lit in space.knobs)

    def bowl2(x: float, y: float) -> float:  # round in the unit square: (0.5, 3.2 / 6)
        return (x - 0.5) ** 2 + ((y - 3.2) / 6) ** 2

    def grid(f, xs: list[float], ys: list[float]) -> dict[str, Measured]:
        return {f"{x},{y}": Measured({rate: x, offset: y}, f(x, y)) for x in xs for y in ys}

    around = grid(bowl2, [0.2, 0.4, 0.6, 0.8], [1.2, 2.4, 3.6, 4.8])
    assert quadratic_step(space, around, "minimize") == pytest.approx({rate: 0.5, offset: 3.2})
    maximize = grid(lambda x, y: -bowl2(x, y), [0.2, 0.4, 0.6, 0.8], [1.2, 2.4, 3.6, 4.8])
    assert quadratic_step(space, maximize, "maximize") == pytest.approx({rate: 0.5, offset: 3.2})
    beside = quadratic_step(space, grid(bowl2, [0.45, 0.5, 0.55], [0.6, 0.9, 1.2]), "minimize")
    spread = 6 * np.hypot(0.05, 0.1)  # the farthest point from the best one, (0.5, 1.2)
    assert beside is not None and beside[rate] == pytest.approx(0.5)
    assert beside[offset] == pytest.approx(1.2 + spread)  # towards 3.2, as far as the spread
    assert quadratic_step(space, maximize, "minimize") is None  # no minimum
    assert quadratic_step(space, dict(list(around.items())[:6]), "minimize") is None  # too few


def test_a_quadratic_step_again_after_a_keep_and_some_experiments_after_a_miss():
    def step(n: int, status: Status) -> Row:
        return Row(n, status, QUADRATIC + "s.py:1:0 1 -> 2", metric=1.0, key=f"optuna s.py:1:0={n}")

    baseline = Row(1, Status.KEEP, "baseline")
    assert quadratic_due([baseline], 2)
    assert quadratic_due([baseline, step(5, Status.KEEP)], 6)
    missed = [baseline, step(5, Status.DISCARD)]
    assert not quadratic_due(missed, 5 + QUADRATIC_WAIT)
    assert quadratic_due(missed, 6 + QUADRATIC_WAIT)


# The template of `autoresearch init`, scored by its formula ---------------------------------


@pytest.fixture
def template(tmp_path: Path) -> Study:
    """autoresearch/template, as `init` writes it, in a fresh git repository."""
    folder = tmp_path / "repo" / "mine"
    shutil.copytree(ROOT / "autoresearch" / "template", folder)
    spec = folder / "study.yaml"
    spec.write_text(spec.read_text().replace("{name}", "mine"))
    commit_all(tmp_path / "repo")
    return load_study(folder)


def score(study: Study, files: dict[str, str]) -> float:
    """The template's formula (its evaluate.py runs the same in a child process): minus the
    sum of |solve(x) - 0.8 x| over x = 1..10."""
    solution: dict[str, object] = {}
    exec(files[study.editable[0]], solution)
    solve = solution["solve"]
    assert callable(solve)
    return -sum(abs(solve(float(x)) - 0.8 * x) for x in range(1, 11))


def test_the_formula_is_the_templates(template: Study):
    out = subprocess.run(
        [sys.executable, "evaluate.py"], cwd=template.folder, capture_output=True, text=True
    ).stdout
    files = {template.editable[0]: (template.repo_root / template.editable[0]).read_text()}
    assert f"score: {score(template, files):.6f}" in out


@pytest.mark.parametrize(
    "proposer",
    [MutateProposer(MutateConfig(seed=0)), OptunaProposer(OptunaConfig(seed=0))],
    ids=["mutate", "optuna"],
)
def test_the_template_study_improves(template: Study, proposer: Proposer):
    path = template.editable[0]
    files = {path: (template.repo_root / path).read_text()}
    lab = SimLab(template, dict(files), lambda candidate: score(template, candidate))
    for _ in range(15):
        lab.step(proposer)
    baseline, champion = lab.history[0].metric, [r for r in lab.history if r.kept][-1].metric
    assert gain(template.metric.direction, champion, baseline) > 0.5 * abs(baseline)
    assert score(template, lab.files) == champion  # the champion's files are the kept ones


def test_a_study_file_names_the_proposer_and_its_knobs(make_study):
    good = "proposer: {kind: optuna, sampler: cmaes, knobs: {X: [0, 20], model.py:1:0: null}}\n"
    study = load_study(make_study(yaml_extra=good))
    assert isinstance(study.config.proposer, OptunaConfig)
    assert study.config.proposer.knobs == {"X": (0.0, 20.0), "model.py:1:0": None}


def test_a_bad_range_is_reported_by_key(make_study):
    with pytest.raises(StudyError, match=r"proposer.knobs: .*X: a range is \[low, high\]"):
        load_study(make_study(yaml_extra="proposer: {kind: optuna, knobs: {X: [5, 1]}}\n"))
