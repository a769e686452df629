"""Where bubblewrap cannot run (macOS, a container without user namespaces): the offline proposer
runs unsandboxed with a notice, code written by a model is refused unless the study says so."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core import sandbox
from core.ledger import Row, Status
from core.sandbox import SandboxUnavailable, choose
from steps.plugins import load_study
from steps.sandboxes import runs_model_code


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap", lambda: None)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)


@pytest.mark.usefixtures("no_bwrap")
def test_without_bwrap_only_the_offline_proposer_runs_unsandboxed() -> None:
    sandboxed, notice = choose(enabled=True, writes_code=False)
    assert not sandboxed and "bubblewrap (bwrap) is not installed" in notice
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap.*sandbox: false"):
        choose(enabled=True, writes_code=True)
    assert choose(enabled=False, writes_code=True) == (
        False,
        "sandbox: false in study.yaml: candidates run unsandboxed",
    )


@pytest.mark.usefixtures("no_bwrap")
def test_check_refuses_without_bwrap_and_says_how(make_study) -> None:
    folder = make_study()
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 2, result.output
    assert "bubblewrap (bwrap) is not installed" in result.output
    assert "sandbox: false" in result.output


def test_a_champion_a_model_wrote_needs_the_sandbox_whoever_proposes_next(make_study) -> None:
    """Numbers-only proposers may run unsandboxed, but not on top of a champion that claude (or
    any proposer that writes code) made: that code would run too."""
    study = load_study(make_study())
    baseline = Row(1, Status.KEEP, "baseline", proposer="-")
    tuned = Row(2, Status.KEEP, "WEIGHT 0.5 -> 0.6", proposer="mutate")
    written = Row(3, Status.KEEP, "a new model", proposer="claude")
    tried = Row(4, Status.DISCARD, "another", proposer="agent_cli")
    assert not runs_model_code(study, [baseline, tuned, tried], "optuna")
    assert runs_model_code(study, [baseline, tuned, written], "mutate")
    assert runs_model_code(study, [baseline], "claude")
    assert runs_model_code(study, [baseline], "scripted")  # a name we do not know may write code
