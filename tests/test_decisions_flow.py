"""Noise-aware decisions in the flows: calibration, repeats, paired runs, holdout, secrets."""

from __future__ import annotations

import pytest

from steps.lab import Lab
from tests.conftest import campaign, commit_all, experiment, git

pytestmark = pytest.mark.usefixtures("prefect_server")

NOISY = """import os, random, model
print("env:", sorted(os.environ))
print(f"score: {abs(model.X - 3.0) + 1.0 + random.gauss(0, 0.01):.6f}")
"""
HOLDOUT = "import model\nprint(f'holdout_score: {abs(model.X - 5.0):.6f}')\n"


def test_sigma_calibrates_then_repeats(make_study, scripted):
    folder = make_study(NOISY, decision="{rule: sigma, calibration_runs: 3, repeats: 4, k: 2}")
    scripted += [{"study/model.py": "X = 4.0\n"}, {"study/model.py": "X = 4.0005\n"}]
    assert experiment(str(folder), researcher=scripted).description == "baseline"
    lab = Lab.open(folder)
    cal = lab.records.champion_runs.calibration(lab.slots[1].place)
    assert len(cal["samples"]) == 3 and 0 < cal["sigma"] < 0.1
    assert [p.name for p in sorted((lab.study.state_dir / "logs").iterdir())] == [
        "1-2.log",
        "1-3.log",
        "1.log",
    ]
    big = experiment(str(folder), researcher=scripted)
    assert big.status == "keep" and big.evidence.startswith("sigma n=3/4")
    assert len(Lab.open(folder).records.champion_runs.samples()) == 4
    tiny = experiment(str(folder), researcher=scripted)
    assert tiny.status == "discard"  # 0.0005 is far inside the noise


def test_new_machine_recalibrates(make_study, scripted):
    folder = make_study(NOISY, decision="{rule: sigma, calibration_runs: 2}")
    scripted += [{"study/model.py": "X = 2.0\n"}]
    experiment(str(folder), researcher=scripted)
    lab = Lab.open(folder)
    state = lab.records.state
    (here,) = state.load()["calibrations"].values()
    state.update(calibrations={"elsewhere": here})
    assert lab.judge.needs_calibration()
    experiment(str(folder), researcher=scripted)
    assert not Lab.open(folder).judge.needs_calibration()
    assert (lab.study.state_dir / "logs" / "2-calibration.log").exists()


def test_an_older_state_file_is_read_and_each_gpu_slot_calibrates(
    make_study, scripted, monkeypatch
):
    """state.json of an older version (one `calibration`, its machine's) is still this
    machine's; with two GPU slots, the campaign calibrates the second one too, on its GPU."""
    folder = make_study(NOISY, decision="{rule: sigma, calibration_runs: 2}")
    experiment(str(folder), researcher=scripted)  # the baseline, calibrating slot 1
    lab = Lab.open(folder)
    state = lab.records.state
    (here,) = state.load()["calibrations"].values()
    state.update(calibrations={}, calibration=here)  # as an older version wrote it
    assert not lab.judge.needs_calibration()
    monkeypatch.setenv("AUTORESEARCH_FAKE_GPUS", "0,1")
    study = folder / "study.yaml"
    study.write_text(study.read_text() + "slots: auto\nparallel: 2\n")
    commit_all(folder.parent, "two GPUs")
    lab = Lab.open(folder)
    assert [lab.judge.needs_calibration(s) for s in (1, 2)] == [True, True]  # a GPU each now
    scripted += [{"study/model.py": "X = 2.0\n"}]
    campaign(str(folder), experiments=1, researcher=scripted)
    logs = lab.study.state_dir / "logs"
    assert (logs / "2-calibration.log").exists() and (logs / "2-calibration-slot-2.log").exists()
    places = Lab.open(folder).records.champion_runs.calibrations()
    assert {p.rsplit("/", 1)[-1] for p in places} >= {"gpu 0", "gpu 1"}


def test_mannwhitney_measures_the_champion_beside_the_candidate(make_study, scripted):
    folder = make_study(NOISY, decision="{rule: mannwhitney, repeats: 6, min_effect: 0.05}")
    scripted += [{"study/model.py": "X = 5.0\n"}]
    experiment(str(folder), researcher=scripted)
    row = experiment(str(folder), researcher=scripted)
    logs = {p.name for p in (Lab.open(folder).study.state_dir / "logs").iterdir()}
    assert {"2.log", "2-6.log", "2-champion-1.log", "2-champion-6.log"} <= logs
    assert row.status == "keep" and row.evidence.startswith("mannwhitney n=6/6")
    written = sorted(
        (Lab.open(folder).study.state_dir / "logs").glob("2*.log"),
        key=lambda p: p.stat().st_mtime_ns,
    )
    arms = ["champion" if "champion" in p.name else "candidate" for p in written]
    assert arms == ["candidate", "champion", "champion", "candidate"] * 3  # A B, B A: no drift bias


def test_holdout_regression_is_flagged_as_overfitting(make_study, scripted):
    folder = make_study(
        model="X = 4.0\n",
        protected="evaluate.py, holdout.py",
        yaml_extra="holdout: {command: python holdout.py, metric: holdout_score, every: 1}\n",
        **{"holdout.py": HOLDOUT},
    )
    scripted += [{"study/model.py": "X = 3.0\n"}]
    result = campaign(str(folder), experiments=2, researcher=scripted)
    rows = Lab.open(folder).records.ledger.rows()
    assert [r.status for r in rows] == ["keep", "holdout", "keep", "holdout"]
    assert rows[1].description.endswith(": ok")
    assert "OVERFITTING" in rows[3].description
    assert result.overfitting is True


def test_secrets_reach_no_evaluator_and_no_file(make_study, scripted, monkeypatch):
    secret = "sk-ant-api03-never-write-me-anywhere"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-also-a-secret-value")
    folder = make_study(NOISY)
    scripted += [{"hypothesis": f"X down, key {secret}", "study/model.py": "X = 2.0\n"}]
    campaign(str(folder), experiments=2, researcher=scripted)
    state_dir = Lab.open(folder).study.state_dir
    log = (state_dir / "logs" / "1.log").read_text()
    assert "ANTHROPIC_API_KEY" not in log and "MY_SERVICE_TOKEN" not in log
    history = git(folder.parent, "log", "--all", "-p")  # commit messages included
    assert "X down, key [redacted]" in history
    for text in [history] + [
        p.read_text(errors="replace") for p in state_dir.rglob("*") if p.is_file()
    ]:
        assert secret not in text and "tok-also-a-secret-value" not in text
