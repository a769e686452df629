"""The offline proposer: one literal at a time, deterministic, never the same thing twice."""

from __future__ import annotations

from pathlib import Path

from core.ledger import Row, Status
from proposers.base import Context
from proposers.mutate import MutateConfig, MutateProposer, literals, step_size, tried
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
    assert len({a.key, *c}) >= 5  # other seeds, other changes
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
    assert tried(history) == keys


def test_step_grows_after_keeps_and_shrinks_after_misses():
    row = "mutate study/model.py:2:0 0.5 -> 0.6"
    kept = [Row(2, Status.KEEP, row)] * 3
    missed = [Row(2, Status.DISCARD, row)] * 3
    assert step_size(0.2, kept) > 0.2 > step_size(0.2, missed)
    assert step_size(0.2, [Row(1, Status.KEEP, "baseline")]) == 0.2


def test_mutate_lines_limits_what_is_perturbed(make_study):
    folder = make_study()
    config = MutateConfig(seed=3, mutate_lines=[r"^SIZES"])
    keys = {MutateProposer(config).propose(context(folder, n=n)).key for n in range(2, 12)}
    assert keys and all(k.startswith("study/model.py:4:") for k in keys)
