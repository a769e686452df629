"""New ideas only: a proposal that repeats a tried candidate is refused before it is measured
(the same once normalised), or goes back to the model with the earlier row (nearly the same)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core.ledger import Row, Status
from proposers import novelty
from proposers.base import InvalidProposal, Learned
from proposers.claude import ClaudeProposer
from proposers.mutate import MutateConfig, MutateProposer
from steps.lab import Lab
from steps.trial import Trial
from tests.conftest import Scripted
from tests.emulators.anthropic_api import AnthropicEmulator, edit, propose
from tests.test_claude_proposer import (
    MODEL_PY,
    TARGET,
    emu,
    folder,
    key,
    make_context,
    proposer,
    tool_results,
)

MODEL = "study/model.py"
FIXTURES = (emu, folder, key)  # test_claude_proposer's, asked for here by name

# Normalising ---------------------------------------------------------------------------


def test_python_is_normalised_through_its_syntax_tree() -> None:
    same = novelty.normalise("m.py", "x = 1.0  # c\n")
    assert same == novelty.normalise("m.py", "x=1.00\n")
    assert same == novelty.normalise("m.py", "\n# a comment\nx = (1.0)\n\n")
    assert same != novelty.normalise("m.py", "x = 1.1\n")
    assert novelty.fingerprint({"m.py": "x = 1.0  # c\n"}) == novelty.fingerprint(
        {"m.py": "x=1.00"}
    )
    assert novelty.fingerprint({"m.py": "x = 1.0\n"}) != novelty.fingerprint({"m.py": "x = 1.1\n"})
    # a docstring is a value: kept; a file that does not parse is normalised line by line
    assert novelty.normalise("m.py", '"""a"""\n') != novelty.normalise("m.py", '"""b"""\n')
    assert novelty.normalise("m.py", "x = (\n") == novelty.normalise("m.py", "x  =  (   # c\n\n")


def test_other_files_are_normalised_line_by_line() -> None:
    yaml = novelty.normalise("c.yaml", "lr: 0.10   # tuned\n\n# a note\nname: '1.10'\n  k:  2\n")
    assert yaml == "lr: 0.1\nname: '1.10'\n  k: 2\n"  # indentation and quoted text kept
    c = novelty.normalise("k.cu", 'float a = 2.50; // c\nchar* u = "http://x";\n')
    assert c == 'float a = 2.5;\nchar* u = "http://x";\n'
    assert novelty.normalise("p.json", '{"a": 1.00,\n "b": [1, 2]}') == '{"a":1.0,"b":[1,2]}\n'
    md = novelty.normalise("prompt.md", "# Title\n\nsome   text  \n")
    assert md == "# Title\nsome text\n"  # a heading is text, not a comment


def test_changes_and_their_distance() -> None:
    change = novelty.changes({"m.py": "a = 1\nlr = 0.03\n"}, {"m.py": "a = 1\nlr = 0.01\n"})
    assert change == {"m.py": "-lr = 0.03\n+lr = 0.01"}
    # the same change on another champion reads the same
    moved = novelty.changes({"m.py": "a = 2\nlr = 0.03\n"}, {"m.py": "a = 2\nlr = 0.01\n"})
    assert novelty.distance(change, moved) == 0.0
    # one number apart: far in a small change, near in a large one; other files: apart
    other = novelty.changes({"m.py": "lr = 0.03\n"}, {"m.py": "lr = 0.02\n"})
    assert novelty.distance(change, other) > novelty.NEAR
    body = "".join(f"y = f{i}(y, k={i})\n" for i in range(12))
    big_a = novelty.changes({"m.py": "y = 1\n"}, {"m.py": f"y = 1\n{body}z = 3\n"})
    big_b = novelty.changes({"m.py": "y = 1\n"}, {"m.py": f"y = 1\n{body}z = 4\n"})
    assert 0 < novelty.distance(big_a, big_b) < novelty.NEAR
    assert novelty.distance(change, {"n.py": change["m.py"]}) == 1.0


# The claude proposer, in a lab ---------------------------------------------------------


def claude(emu: AnthropicEmulator, key: str) -> ClaudeProposer:
    return proposer(emu, key, retries=0)


def run(lab: Lab, researcher: object) -> Trial:
    """One experiment: proposed (a duplicate refused by Lab.propose), applied, measured and
    recorded as discarded (the champion stays the baseline)."""
    trial = lab.reserve()
    lab.propose(researcher, trial)  # type: ignore[arg-type]
    lab.apply(trial)
    lab.measuring.candidate(trial)
    lab.finish(trial, Status.DISCARD, "", Learned())
    lab.release(trial)
    return trial


def begun(make_study) -> Lab:  # noqa: ANN001
    """A toy study (X = 10.0, score |X - 3|) and its baseline (7)."""
    lab = Lab.open(make_study())
    baseline = Trial(1)
    lab.finish(baseline, *lab.measuring.baseline(baseline), Learned())
    return lab


def started(make_study) -> Lab:  # noqa: ANN001
    """The baseline and a discarded X = 20 (17)."""
    lab = begun(make_study)
    run(lab, Scripted([{MODEL: "X = 20.0\n", "hypothesis": "X up to 20"}]))
    return lab


def evaluations(lab: Lab) -> list[str]:
    return sorted(p.name for p in (lab.study.state_dir / "logs").glob("*.log"))


def test_a_normalised_duplicate_is_refused_before_evaluation(
    make_study, emu: AnthropicEmulator, key: str
) -> None:
    lab = started(make_study)
    before = evaluations(lab)
    tried = lab.briefing.context(Trial(3), lab.workspace).tried_changes
    assert [(t.experiment, t.status, t.change == {}) for t in tried] == [
        (1, "keep", True),  # the baseline: its candidate, no change
        (2, "discard", False),
    ]
    emu.push(
        propose("X to 20, written my way", [edit("model.py", "X = 10.0", "X=20.00  # again")]),
        propose("X a little down, to 4", [edit("model.py", "X = 10.0", "X = 4.0")]),
    )
    trial = run(lab, claude(emu, key))
    assert len(emu.messages_requests) == 2
    (answer,) = tool_results(emu.messages_requests[1].body)
    said = answer["content"]
    assert answer["is_error"] and novelty.DUPLICATE in said
    assert 'experiment #2 (discard, score = 17.000000): "X up to 20"' in said
    assert trial.proposal is not None and trial.proposal.files == {MODEL: "X = 4.0\n"}
    assert len(evaluations(lab)) == len(before) + 1  # experiment 3, once: not the duplicate
    rows = lab.records.ledger.rows()
    assert [(r.experiment, r.metric) for r in rows] == [(1, 7.0), (2, 17.0), (3, 1.0)]
    assert lab.briefing.saved == novelty.Saved(exact=1, near=0)


def test_a_normalised_duplicate_from_any_proposer_is_an_invalid_row(make_study) -> None:
    lab = started(make_study)
    before = evaluations(lab)
    trial = lab.reserve()
    again = Scripted([{MODEL: "\n# back to it\nX = 20.000\n", "hypothesis": "X to 20 again"}])
    with pytest.raises(InvalidProposal) as refused:
        proposal = lab.propose(again, trial)  # refused here once Lab.propose checks, else:
        lab.briefing.refuse_duplicate(trial, proposal)
    assert 'same as experiment #2 (discard, score = 17.000000): "X up to 20"' in str(refused.value)
    assert "one evaluation saved" in str(refused.value)
    assert evaluations(lab) == before and trial.candidate is None
    assert lab.briefing.saved.exact == 1
    description = f"invalid proposal: {refused.value}"
    assert novelty.saved_in([description, "X up to 20"]) == 1  # what a ledger reader counts


def test_a_near_duplicate_goes_back_to_the_model_with_the_earlier_row(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    # experiment 7 tried WINDOW 12 -> 24 on an older champion (ALPHA 0.5); the champion now has
    # ALPHA 0.35, and the model proposes the same change on it: a near duplicate
    older = MODEL_PY.replace("ALPHA = 0.35", "ALPHA = 0.5")
    tried = tried_row(7, Status.DISCARD, 0.52, "A longer window", older, "WINDOW = 24")
    ctx = make_context(folder, tried_changes=[tried], experiment=9)
    same = propose("Window 24 smooths noise", [edit(TARGET, "WINDOW = 12", "WINDOW = 24")])
    other = propose("Alpha down", [edit(TARGET, "ALPHA = 0.35", "ALPHA = 0.3")])
    emu.push(same, other)
    result = claude(emu, key).propose(ctx)
    assert "ALPHA = 0.3\n" in result.files[TARGET]
    (answer,) = tool_results(emu.messages_requests[1].body)
    said = answer["content"]
    assert 'nearly the same as experiment #7 (discard, rmse = 0.520000): "A longer window"' in said
    assert "normalised edit distance 0.000" in said and "Propose a different idea" in said
    assert ctx.saved == novelty.Saved(exact=0, near=1)
    # the system text and the files stay as they were: the cached prefix is not touched
    first, second = (r.body for r in emu.messages_requests)
    assert first["system"] == second["system"]
    assert first["messages"][0] == second["messages"][0]


def test_a_near_duplicate_the_model_submits_again_is_proposed(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    older = MODEL_PY.replace("ALPHA = 0.35", "ALPHA = 0.5")
    tried = tried_row(7, Status.DISCARD, 0.52, "A longer window", older, "WINDOW = 24")
    ctx = make_context(folder, tried_changes=[tried], experiment=9)
    same = propose("Window 24 smooths noise", [edit(TARGET, "WINDOW = 12", "WINDOW = 24")])
    insisted = propose(
        "Window 24 again: alpha changed", [edit(TARGET, "WINDOW = 12", "WINDOW = 24")]
    )
    emu.push(same, insisted)
    result = claude(emu, key).propose(ctx)
    assert "WINDOW = 24" in result.files[TARGET] and len(emu.messages_requests) == 2
    assert ctx.saved.total == 0  # measured after all: nothing saved


def test_an_exact_duplicate_in_the_context_is_refused_by_claude(
    emu: AnthropicEmulator, key: str, folder: Path
) -> None:
    tried = tried_row(4, Status.CRASH, 0.0, "A longer window", MODEL_PY, "WINDOW = 24")
    ctx = make_context(folder, tried_changes=[tried])
    spaced = propose("w", [edit(TARGET, "WINDOW = 12", "WINDOW  =  24  # longer")])
    emu.push(spaced, spaced, spaced)
    with pytest.raises(InvalidProposal, match="a tried change again"):
        claude(emu, key).propose(ctx)
    (answer,) = tool_results(emu.messages_requests[1].body)
    assert 'experiment #4 (crash, no metric): "A longer window"' in answer["content"]
    assert ctx.saved == novelty.Saved(exact=1, near=0)  # one experiment, one evaluation


def tried_row(
    n: int, status: Status, metric: float, said: str, on: str, window: str
) -> novelty.Tried:
    after = {TARGET: on.replace("WINDOW = 12", window)}
    metric_or_none = None if status == Status.CRASH else metric
    return novelty.Tried(
        n,
        status,
        metric_or_none,
        said,
        novelty.fingerprint(after),
        novelty.changes({TARGET: on}, after),
    )


# Other proposers and the cost ----------------------------------------------------------


def test_the_mutate_proposer_is_unaffected(make_study) -> None:
    lab = begun(make_study)
    mutate = MutateProposer(MutateConfig(kind="mutate"), seed=3)
    for _ in range(4):
        trial = run(lab, mutate)
        assert trial.candidate is not None  # never refused: it does not repeat itself
    context = lab.briefing.context(Trial(99), lab.workspace)
    assert len(context.tried_changes) == 5
    plain = replace(context, tried_changes=[])
    again = MutateProposer(MutateConfig(kind="mutate"), seed=5)
    assert again.propose(context) == MutateProposer(MutateConfig(kind="mutate"), seed=5).propose(
        plain
    )
    assert lab.briefing.saved.total == 0


def test_what_was_tried_is_read_once_per_commit(make_study) -> None:
    lab = started(make_study)
    rows = lab.records.ledger.rows()
    lost = Row(3, Status.DISCARD, "gone", commit="0123abc", metric=1.0)  # git holds no such commit
    invalid = Row(4, Status.INVALID, "invalid proposal: nothing")
    tried = lab.briefing.tried.changes([*rows, lost, invalid], [])
    assert [t.experiment for t in tried] == [1, 2]
    assert tried[1].change == {MODEL: "-X = 10.0\n+X = 20.0"}
    t0 = time.perf_counter()
    assert lab.briefing.tried.changes([*rows, lost, invalid], []) == tried
    assert time.perf_counter() - t0 < 0.05  # from the cache: no git read


def test_an_agent_cli_repeating_a_tried_change_is_refused(tmp_path: Path) -> None:
    from tests import test_agent_cli as cli

    study = tmp_path / "repo" / "study"
    study.mkdir(parents=True)
    for name, text in [
        ("study.yaml", cli.STUDY_YAML),
        ("model.py", cli.MODEL_PY),
        ("evaluate.py", cli.EVALUATE_PY),
    ]:
        (study / name).write_text(text)
    cli.git(study.parent, "init", "-q")
    cli.git(study.parent, "add", "-A")
    cli.git(study.parent, "commit", "-q", "-m", "baseline")
    ctx = cli.context(study, study.parent)
    # tried: the same window, written another way
    tried = {cli.TARGET: "WINDOW = (24)  # longer\nALPHA = .350\n"}
    ctx.tried_changes = [
        novelty.Tried(5, "discard", 0.61, "window 24", novelty.fingerprint(tried), {})
    ]
    said = re.escape("same as experiment #5 (discard, rmse = 0.610000)")
    with pytest.raises(InvalidProposal, match=said):
        cli.agent(tmp_path, cli.EDITS).propose(ctx)
    assert ctx.saved.exact == 1 and cli.clean(study.parent)
