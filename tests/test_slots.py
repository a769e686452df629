"""GPU-aware slots: `slots: auto` gives each slot a GPU of its own (CUDA_VISIBLE_DEVICES), never
one GPU for two slots unless the study asks, and `autoresearch status` shows which holds which."""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core import devices
from core.pending import Pending, Record, Stage
from core.study import StudyError
from steps.lab import Lab
from steps.plugins import load_study
from tests.conftest import Scripted, campaign
from tests.test_parallel import marks_study


@pytest.fixture(autouse=True)
def no_gpus_of_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which GPUs there are; the machine's own do not count."""
    monkeypatch.delenv(devices.VISIBLE, raising=False)
    monkeypatch.setenv(devices.FAKE, "")


def fake_gpus(monkeypatch: pytest.MonkeyPatch, ids: str) -> None:
    monkeypatch.setenv(devices.FAKE, ids)


def test_four_gpus_four_slots_each_its_own(make_study, monkeypatch):
    fake_gpus(monkeypatch, "0,1,2,3")
    lab = Lab.open(make_study(yaml_extra="slots: auto\nparallel: 4\n"))
    held = [slot.gpu for slot in lab.slots.all]
    assert held == ["0", "1", "2", "3"]
    assert [s.env for s in lab.slots.all] == [{"CUDA_VISIBLE_DEVICES": d} for d in held]
    assert not lab.slots.shared and lab.slots.note is None


def test_auto_without_parallel_is_one_slot_per_gpu(make_study, monkeypatch):
    fake_gpus(monkeypatch, "0,1,2")
    study = load_study(make_study(yaml_extra="slots: auto\n"))
    assert study.parallel == 3
    fake_gpus(monkeypatch, "")
    assert study.parallel == 1


def test_too_few_gpus_is_a_clear_error(make_study, monkeypatch):
    fake_gpus(monkeypatch, "0,1")
    folder = make_study(yaml_extra="slots: auto\nparallel: 4\n")
    with pytest.raises(StudyError) as err:
        Lab.open(folder)
    text = str(err.value)
    assert str(folder / "study.yaml") in text
    assert "slots: parallel 4 needs 4 GPUs, found 2 (0, 1)" in text
    assert "share: true" in text


def test_shared_gpus_round_robin_and_say_so(make_study, monkeypatch, caplog):
    fake_gpus(monkeypatch, "0,1")
    folder = make_study(yaml_extra="slots: {auto: true, share: true}\nparallel: 4\n")
    with caplog.at_level(logging.WARNING, logger="steps.slots"):
        lab = Lab.open(folder)
    assert [slot.gpu for slot in lab.slots.all] == ["0", "1", "0", "1"]
    assert lab.slots.shared
    assert "4 slots share 2 GPU(s)" in lab.slots.note
    assert any("share 2 GPU(s)" in r.getMessage() for r in caplog.records)


def test_no_gpu_means_cpu_slots(make_study, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="steps.slots"):
        lab = Lab.open(make_study(yaml_extra="slots: auto\nparallel: 2\n"))
    assert [slot.env for slot in lab.slots.all] == [{}, {}]
    assert [slot.gpu for slot in lab.slots.all] == [None, None]
    assert not lab.slots.shared
    assert "no GPU found: the 2 slot(s) run on the CPU" in caplog.text


def test_our_own_cuda_visible_devices_restricts_the_gpus(monkeypatch):
    fake_gpus(monkeypatch, "0,1,2,3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert devices.gpus() == ["2", "3"]
    assert devices.assign(2, devices.gpus()) == [
        {"CUDA_VISIBLE_DEVICES": "2"},
        {"CUDA_VISIBLE_DEVICES": "3"},
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.gpus() == []


def test_nvidia_smi_lists_the_gpus(monkeypatch, tmp_path):
    monkeypatch.delenv(devices.FAKE)
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '0, NVIDIA H100 80GB HBM3\\n1, NVIDIA H100 80GB HBM3\\n'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert devices.gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert devices.gpus() == ["1"]


def test_without_nvidia_smi_torch_counts_the_visible_ones(monkeypatch, tmp_path):
    monkeypatch.delenv(devices.FAKE)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    torch = types.ModuleType("torch")
    torch.__spec__ = importlib.machinery.ModuleSpec("torch", None)
    cuda = types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 2)
    torch.cuda = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    assert devices.gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert devices.gpus() == ["5", "7"]


@pytest.mark.parametrize(
    ("text", "auto", "share", "envs"),
    [
        ("slots:\n  - {A: '1'}\n  - {A: '2'}\n", False, False, [{"A": "1"}, {"A": "2"}]),
        ("slots: auto\n", True, False, []),
        ("slots: {auto: true, share: true}\n", True, True, []),
        ("", False, False, []),
    ],
)
def test_the_forms_of_slots(make_study, text, auto, share, envs):
    slots = load_study(make_study(yaml_extra=text)).config.slots
    assert (slots.auto, slots.share, slots.envs) == (auto, share, envs)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("slots: gpus\n", "slots: Value error, 'gpus': give a list of environments, `auto`"),
        ("slots: {auto: true, shared: true}\n", "slots.shared: Extra inputs are not permitted"),
        ("slots: {share: true}\n", "slots: Value error, `share` applies to `auto` slots only"),
        ("slots: [GPU0]\n", "slots.envs.0: Input should be a valid dictionary"),
    ],
)
def test_a_bad_slots_names_the_key_and_the_file(make_study, text, problem):
    folder = make_study(yaml_extra=text)
    with pytest.raises(StudyError) as err:
        load_study(folder)
    assert str(folder / "study.yaml") in str(err.value)
    assert problem in str(err.value)


def test_status_shows_which_slot_holds_which_gpu(make_study, monkeypatch):
    fake_gpus(monkeypatch, "0,1,2")
    folder = make_study(yaml_extra="slots: {auto: true, share: true}\nparallel: 4\n")
    state = load_study(folder).state_dir
    Pending(state).write(Record(7, Stage.MEASURING, slot=2, hypothesis="wider"))
    result = CliRunner().invoke(main, ["status", str(folder)])
    assert result.exit_code == 0, result.output
    lines = [line.split("│") for line in result.output.splitlines() if "│" in line]
    cells = [[c.strip() for c in line[1:-1]] for line in lines]
    assert ["1", "0", "idle"] in cells
    assert ["2", "1", "#7 (measuring)"] in cells
    assert ["4", "0", "idle"] in cells
    assert "4 slots share 3 GPU(s) (0 held by several)" in result.output


def test_status_says_when_the_gpus_are_too_few(make_study, monkeypatch):
    fake_gpus(monkeypatch, "0")
    folder = make_study(yaml_extra="slots: auto\nparallel: 2\n")
    result = CliRunner().invoke(main, ["status", str(folder)])
    assert result.exit_code == 0, result.output
    assert "parallel 2 needs 2 GPUs, found 1" in result.output


# Each run appends "<its worktree> <its CUDA_VISIBLE_DEVICES>" to a file outside the study.
SEES = """import os, time, model
time.sleep(0 if model.X == 10.0 else 1.0)
gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "-")
with open(os.environ["MARKS"], "a") as f:
    f.write(f"{os.path.basename(os.path.dirname(os.getcwd()))} {gpu}\\n")
print(f"score: {abs(model.X - 3.0):.6f}")
print(f"gpu: {gpu}")
"""


@pytest.mark.usefixtures("prefect_server")
def test_a_campaign_on_auto_slots_measures_each_on_its_own_gpu(make_study, tmp_path, monkeypatch):
    fake_gpus(monkeypatch, "0,1")
    folder, marks = marks_study(
        make_study, tmp_path, SEES, "slots: auto\nparallel: 2\n", "X = 10.0\n"
    )
    changes = Scripted({"study/model.py": f"X = {x}\n"} for x in (4.0, 5.0, 6.0, 7.0))
    campaign(str(folder), experiments=5, researcher=changes)
    seen = {tuple(line.split()) for line in marks.read_text().splitlines()}
    assert seen == {("worktree", "0"), ("worktree-2", "1")}
    rows = Lab.open(folder).records.ledger.rows()
    assert sorted(r.experiment for r in rows) == [1, 2, 3, 4, 5]
    assert {r.secondary.get("gpu") for r in rows} == {0.0, 1.0}


def test_readme_documents_auto_slots() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Many candidates in flight", 1)[1].split("\n## ", 1)[0]
    assert "slots: auto" in section and "share: true" in section
