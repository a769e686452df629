"""Where bubblewrap cannot run (macOS, a container without user namespaces): the offline proposer
runs unsandboxed with a notice, code written by a model is refused unless the study says so."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core import sandbox
from core.sandbox import SandboxUnavailable, choose


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
