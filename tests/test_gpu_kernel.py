"""The gpu-kernel study without a GPU: its correctness gate through Triton's interpreter, run by
the real CommandEvaluator (sandboxed) on private copies of the study, and `autoresearch check`
saying what the timing needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from bench.gpu import ONE_PASS, OVER_THE_BLOCK
from evaluators.base import Measurement
from evaluators.command import CommandConfig, CommandEvaluator
from tests.conftest import ROOT, commit_all

pytest.importorskip("triton")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path's tests")

STUDY = ROOT / "artifacts" / "gpu-kernel"
# Wrong only on special values: NaN read as 0 (a NaN no longer propagates).
NAN_AS_ZERO = (
    "        total += x * x\n",
    "        x = tl.where(x != x, 0.0, x)\n        total += x * x\n",
)


@pytest.fixture
def study(tmp_path: Path) -> Path:
    dest = tmp_path / "repo" / "gpu-kernel"
    shutil.copytree(STUDY, dest, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    commit_all(dest.parent)
    return dest


def gate(folder: Path) -> Measurement:
    config = CommandConfig(command="python harness.py --gate", timeout_s=120)
    log = folder.parent / "logs" / "gate.log"
    return CommandEvaluator(config, "gate_cases").evaluate(folder, log)


def patch(folder: Path, old: str, new: str) -> None:
    path = folder / "kernel.py"
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))


def test_the_plain_kernel_and_a_real_speed_up_pass_the_gate(study: Path) -> None:
    m = gate(study)
    assert m.status == "ok" and m.metric == 16, m
    (study / "kernel.py").write_text((study / "kernel.py").read_text() + ONE_PASS)
    m = gate(study)
    assert m.status == "ok" and m.metric == 16, m


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (OVER_THE_BLOCK, "stage shapes, case 1x1 (1x1 float32)"),
        (NAN_AS_ZERO, "stage special values, case a NaN (4x64 float32)"),
    ],
)
def test_a_wrong_kernel_is_refused_naming_the_stage_and_case(
    study: Path, change: tuple[str, str], named: str
) -> None:
    patch(study, *change)
    m = gate(study)
    assert m.status == "crash" and m.reason.startswith(f"exit code 1: {named}: "), m


def test_a_kernel_that_raises_names_the_first_case_it_failed(study: Path) -> None:
    patch(
        study,
        "    y = torch.empty_like(x)\n",
        "    assert x.shape[0] > 1\n    y = torch.empty_like(x)\n",
    )
    m = gate(study)
    assert m.reason.startswith(
        "exit code 1: stage shapes, case 1x1 (1x1 float32): the kernel failed"
    )
    assert "AssertionError" in m.log_tail


def test_check_says_the_timing_needs_a_cuda_gpu(study: Path) -> None:
    result = CliRunner().invoke(main, ["check", str(study)])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert (
        "exit code 1: timing needs a CUDA GPU (the gate passed through Triton's interpreter)"
        in said
    )
