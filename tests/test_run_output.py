"""What a person sees of `autoresearch run`: after a clean run, nothing of Prefect's (its last
log lines and events are delivered while the temporary server is still up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import COOLING, commit_all

AUTORESEARCH = str(Path(sys.executable).with_name("autoresearch"))
STRAY = ("Error logging to API", "All connection attempts failed", "Traceback")


def test_a_clean_run_prints_no_stray_prefect_lines(tmp_path: Path) -> None:
    study = tmp_path / "repo" / "cooling"
    study.parent.mkdir()
    subprocess.run(["cp", "-r", str(COOLING), str(study)], check=True)
    commit_all(study.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST_"))}
    env |= {
        "PREFECT_HOME": str(tmp_path / "home"),  # a temporary server of the run's own
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # logs sent every 30 s: at the end of the run some are always left to send
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "30",
    }
    done = subprocess.run(
        [AUTORESEARCH, "run", str(study), "-n", "2", "--proposer", "mutate"],
        env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "champion" in said and not [s for s in STRAY if s in said], said
