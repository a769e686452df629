"""The offline proposer: one literal at a time, deterministic, never the same thing twice, and
a search that converges."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench.search import PROBLEMS, SimLab, knob_values, study_of
from core.ledger import Row, Status
from proposers.base import Context
from proposers.mutate import MutateConfig, MutateProposer, knobs, literals, tried
from steps.plugins import load_study

SOURCE = '''"""Model 2 of 3."""
RATE = 0.5  # per minute, not 7
NAME = "v1.5"
SIZES = [16, 32]


def f(x):
    return RATE * x + 0
'''


def context(folder: Path, history: list[Row] | None = None, n: int = 2) -> Context:
    study = load_study(folder)
    return Context(
        study=study,
        program="",
        files={"study/model.py": SOURCE},
        protected=[],
        history=history or [],
        learnings="",
        last_crash=None,
        experiment=n,
        workdir=folder.parent,
    )


def test_python_literals_skip_strings_and_comments():
    found = [(lit.line, lit.k, lit.text) for lit in literals("m.py", SOURCE)]
    assert found == [(2, 0, "0.5"), (4, 0, "16"), (4, 1, "32"), (8, 0, "0")]
    text_found = [lit.text for lit in literals("m.txt", "lr 0.5 and 7 items, v2x")]
    assert text_found == ["0.5", "7"]


def test_deterministic_for_a_seed(make_study):
    folder = make_study()
    a = MutateProposer(MutateConfig(seed=1)).propose(context(folder))
    b = MutateProposer(MutateConfig(seed=1)).propose(context(folder))
    c = [MutateProposer(MutateConfig(seed=s)).propose(context(folder)).key for s in range(2, 8)]
    assert a == b
    assert len({a.key, *c}) >= 3  # other seeds pick other knobs and sides
    changed = [
        (x, y)
        for x, y in zip(SOURCE.splitlines(), a.files["study/model.py"].splitlines(), strict=True)
        if x != y
    ]
    assert len(changed) == 1


def test_never_repeats_what_the_ledger_tried(make_study):
    folder = make_study()
    history: list[Row] = []
    keys = set()
    for n in range(2, 40):
        p = MutateProposer(MutateConfig(seed=0)).propose(context(folder, history, n))
        assert p.key not in keys
        keys.add(p.key)
        history.append(Row(n, Status.DISCARD, p.hypothesis, proposer="mutate"))
    assert keys <= tried(history)


def test_never_proposes_what_is_in_flight(make_study):
    folder = make_study()
    proposer = MutateProposer(MutateConfig(seed=0))
    first = proposer.propose(context(folder))
    busy = replace(context(folder), in_flight=[first], tried={first.key})
    assert proposer.propose(context(folder)) == first  # the same, were it not in flight
    assert proposer.propose(busy).key != first.key


BASELINE = Row(1, Status.KEEP, "baseline", metric=10.0)


def move(old: str, new: str, status: Status, metric: float = 0.0) -> Row:
    return Row(2, status, f"mutate study/model.py:2:0 {old} -> {new}", metric=metric)


def test_a_keep_doubles_the_step_and_goes_on_the_same_way():
    states, last = knobs([BASELINE, move("0.5", "0.6", Status.KEEP, 8.0)], 0.2, "minimize")
    knob = states[last]
    assert knob.step == pytest.approx(2 * 0.18232, rel=1e-3)  # twice ln(0.6 / 0.5)
    assert (knob.side, knob.follow) == (1, True)


def test_a_miss_tries_the_other_side_of_the_same_knob(make_study):
    folder = make_study()
    history = [BASELINE, move("0.5", "0.6107", Status.DISCARD, 12.0)]
    proposal = MutateProposer(MutateConfig(seed=0)).propose(context(folder, history, 3))
    assert proposal.hypothesis.startswith("mutate study/model.py:2:0 0.5 -> ")
    assert float(proposal.hypothesis.split()[-1]) < 0.5


def test_both_sides_missed_halve_the_step_toward_the_better_side():
    history = [
        BASELINE,
        move("0.5", "0.6107", Status.DISCARD, 12.0),
        move("0.5", "0.4094", Status.DISCARD, 11.0),
    ]
    knob = knobs(history, 0.2, "minimize")[0]["study/model.py:2:0"]
    assert knob.step == pytest.approx(0.1, rel=1e-3)
    assert (knob.side, knob.follow) == (-1, False)  # down measured better (11 < 12)
    assert knobs(history, 0.2, "maximize")[0]["study/model.py:2:0"].side == 1


def experiments_to_converge(seed: int, limit: int) -> int | None:
    """Experiments until mutate has the template's WEIGHT within 0.01 of 0.8, under the real
    decision rule (bench/search.py's in-process lab)."""
    template = PROBLEMS[0]
    lab = SimLab(
        study_of("template", MutateConfig(), template.rule),
        template.files(),
        lambda files: template.loss(knob_values(files)),
    )
    proposer = MutateProposer(MutateConfig(seed=seed))
    for n in range(1, limit + 1):
        lab.step(proposer)
        if abs(knob_values(lab.files)["WEIGHT"] - 0.8) < 0.01:
            return n
    return None


def test_converges_on_the_template_example():
    """From WEIGHT = 0.5 to within 0.01 of 0.8 (the old mutate never got there in 20)."""
    runs = [experiments_to_converge(seed, 40) for seed in range(10)]
    assert all(n is not None and n <= 20 for n in runs), runs


def test_mutate_lines_limits_what_is_perturbed(make_study):
    folder = make_study()
    config = MutateConfig(seed=3, mutate_lines=[r"^SIZES"])
    keys = {MutateProposer(config).propose(context(folder, n=n)).key for n in range(2, 12)}
    assert keys and all(k.startswith("study/model.py:4:") for k in keys)
