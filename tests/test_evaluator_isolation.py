"""The bundled studies score candidates in a process the candidate's code never runs in.

Each attack below fooled the old evaluators, which imported the editable module into the
process that printed the metric: a fake metric line followed by an exit, a monkeypatched
scoring function, and (gpt-train) a double-forked, setsid() process writing fake lines straight
into the evaluator's pipe after the real ones (now it cannot even open that pipe: see
tests/test_attacks_scorer.py for the attacks on the scorer itself). Each run goes through the
real CommandEvaluator, on a private copy of the study, and must end in a crash or the
candidate's true metric.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from evaluators.base import Measurement
from evaluators.command import CommandConfig, CommandEvaluator
from evaluators.isolate import nested_bwrap
from tests.conftest import ROOT

ARTIFACTS = ROOT / "artifacts"
FAKE = "0.000001"


def study_copy(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(ARTIFACTS / name, dest, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    return dest


def evaluate(folder: Path, command: str, metric: str, timeout_s: float, **env: str) -> Measurement:
    config = CommandConfig(command=command, timeout_s=timeout_s, env=env)
    return CommandEvaluator(config, metric).evaluate(folder, folder / "logs" / "1.log")


def log_of(folder: Path) -> str:
    return (folder / "logs" / "1.log").read_text()


# cooling (the demo) ----------------------------------------------------------------------------


def test_cooling_fake_metric_and_patched_math_count_for_nothing(tmp_path: Path) -> None:
    folder = study_copy(tmp_path, "cooling")
    model = folder / "model.py"
    honest = model.read_text()
    model.write_text(honest + f"\nimport os\nprint('rmse: {FAKE}')\nos._exit(0)\n")
    m = evaluate(folder, "python evaluate.py", "rmse", 30)
    assert m.status == "crash" and f"| rmse: {FAKE}" in log_of(folder)
    patch = f"\nimport math\nmath.sqrt = lambda x: {FAKE}\nprint('rmse: {FAKE}')\n"
    model.write_text(honest + patch)
    m = evaluate(folder, "python evaluate.py", "rmse", 30)
    assert m.status == "ok" and m.metric == pytest.approx(4.392757)


# forecast -------------------------------------------------------------------------------------

TRUE_RMSE, TRUE_HOLDOUT = 2.036533, 1.861031  # the committed forecast.py's scores

# Each passes evaluate.py's static check: pandas leads to os and sys.
EXIT_CANDIDATES = {
    "SystemExit": f"\nprint('rmse: {FAKE}')\nraise SystemExit(0)\n",
    "os._exit": f"\nimport pandas as pd\nprint('rmse: {FAKE}')\npd.io.common.os._exit(0)\n",
}
PATCHING = f"""
import pandas as pd

_modules = pd.core.common.sys.modules
_modules["math"].sqrt = lambda value: {FAKE}  # the old evaluator's rmse was math.sqrt(...)
_main = _modules["__main__"]
_main.errors_of = _main.walk_forward = lambda *args: [{FAKE}]
_main.score = lambda *args: [{FAKE}]
print("progress\\rrmse: {FAKE}")  # a carriage return: splitlines() sees a second line
print("rmse: {FAKE}")
"""


@pytest.mark.parametrize("how", sorted(EXIT_CANDIDATES))
def test_forecast_fake_metric_and_exit_is_a_crash(tmp_path: Path, how: str) -> None:
    folder = study_copy(tmp_path, "forecast")
    formula = folder / "forecast.py"
    formula.write_text(formula.read_text() + EXIT_CANDIDATES[how])
    m = evaluate(folder, "python evaluate.py", "rmse", 30)
    assert m.status == "crash", m  # the harness's own words, not the candidate's
    assert m.reason == "exit code 1: forecasts.json: the child process did not write it"
    assert f"| rmse: {FAKE}" in log_of(folder)  # shown, behind the prefix
    assert "the forecasting process failed" in m.log_tail or "forecasts.json" in m.log_tail


def test_forecast_patched_scoring_changes_nothing(tmp_path: Path) -> None:
    folder = study_copy(tmp_path, "forecast")
    formula = folder / "forecast.py"
    formula.write_text(formula.read_text() + PATCHING)
    started = time.perf_counter()
    m = evaluate(folder, "python evaluate.py", "rmse", 30)
    seconds = time.perf_counter() - started
    assert m.status == "ok", m.log_tail
    assert m.metric == pytest.approx(TRUE_RMSE, abs=1e-6)
    log = log_of(folder)
    assert f"| progress\n| rmse: {FAKE}\n" in log
    assert seconds < 2.0, f"an evaluation took {seconds:.2f} s"

    holdout = evaluate(folder, "python evaluate.py --holdout", "holdout_rmse", 30)
    assert holdout.metric == pytest.approx(TRUE_HOLDOUT, abs=1e-6)


def test_forecast_malformed_forecasts_are_refused_by_the_parent(tmp_path: Path) -> None:
    folder = study_copy(tmp_path, "forecast")
    formula = folder / "forecast.py"
    forged = (
        "\nimport pandas as pd\npd.core.common.sys.modules['json'].dumps = lambda o: '[[0.0]]'\n"
    )
    formula.write_text(formula.read_text() + forged)
    m = evaluate(folder, "python evaluate.py", "rmse", 30)
    assert m.status == "crash"
    assert "forecasts.json: expected a list of 72 forecasts" in m.log_tail


# gpt-train ------------------------------------------------------------------------------------

UNIFORM = """
import torch
from torch import nn


class Uniform(nn.Module):
    '''All-zero logits: every byte 1/256, so val_bpb is exactly 8.'''

    depth = 1

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(256, 256))

    def forward(self, x):
        return self.w[x]


def build_model(vocab_size, seq_len, device):
    return Uniform().to(device)


def train(model, data, clock):
    while clock.step():
        pass
    after_training()


def after_training():
    pass
"""
GPT_EXIT = f"\nprint('val_bpb: {FAKE}')\nimport os\nos._exit(0)\n"
GPT_PATCH = f"""

def after_training():
    import sys

    import prepare

    fake = prepare.Score(bpb={FAKE}, nats=0.0, num_bytes=1)
    prepare.score_logits = lambda *args, **kwargs: fake
    prepare.evaluate_bpb = prepare.score_logits
    prepare.check_probes = lambda *args: None
    prepare.summary_lines = lambda values: ["---", "val_bpb: {FAKE}"]
    main = sys.modules["__main__"]
    for name in ("_report", "_read_logits", "_read_figures", "_run", "main"):
        setattr(main, name, lambda *args, **kwargs: 0)
    print("---")
    print("val_bpb:          {FAKE}")
"""
GPT_ESCAPE = f"""

def after_training():
    import os
    import time

    pipes = [f"/proc/{{os.getppid()}}/fd/1"]  # the harness's stdout: the evaluator's pipe
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            fds = []
            for pipe in pipes:
                try:
                    fds.append(os.open(pipe, os.O_WRONLY))
                except OSError as exc:
                    print(f"escapee: {{pipe}}: {{exc.strerror}}", flush=True)
            deadline = time.time() + 30
            while time.time() < deadline:
                for fd in fds:
                    os.write(fd, b"val_bpb: {FAKE}\\n")
                time.sleep(0.05)
        os._exit(0)
    time.sleep(0.5)
"""
GPT_SHORT_LOGITS = """

def after_training():
    import sys

    sys.modules["__main__"]._write_logits = lambda path, chunks: path.write_bytes(bytes(12))
"""


@pytest.fixture
def gpt_study(tmp_path: Path) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("numpy")
    folder = study_copy(tmp_path, "gpt-train")
    (folder / "train.py").write_text(UNIFORM)
    return folder


def gpt_evaluate(folder: Path, **env: str) -> Measurement:
    env = {"GPT_TRAIN_DEVICE": "cpu", "TIME_BUDGET_S": "2", **env}
    return evaluate(folder, "python harness.py", "val_bpb", 120, **env)


def test_gpt_train_fake_metric_and_exit_is_a_crash(gpt_study: Path) -> None:
    train_py = gpt_study / "train.py"
    train_py.write_text(train_py.read_text() + GPT_EXIT)
    m = gpt_evaluate(gpt_study)
    assert m.status == "crash", m
    assert m.reason == "exit code 1: result.json: the child process did not write it"
    assert f"| val_bpb: {FAKE}" in log_of(gpt_study)


def test_gpt_train_patched_scoring_changes_nothing(gpt_study: Path) -> None:
    train_py = gpt_study / "train.py"
    train_py.write_text(train_py.read_text() + GPT_PATCH)
    m = gpt_evaluate(gpt_study)
    assert m.status == "ok", m.log_tail
    assert m.metric == pytest.approx(8.0, abs=1e-5)  # all-zero logits, whatever the child did
    assert m.secondary["val_bytes"] == 130560
    assert f"| val_bpb:          {FAKE}" in log_of(gpt_study)


def escapees() -> list[int]:
    """The processes that carry this test's mark in their environment, wherever they are."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if b"ESCAPEE_MARK=" + MARK.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


MARK = str(os.getpid())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and prctl")
def test_gpt_train_escaped_writer_is_killed_before_the_metric(gpt_study: Path) -> None:
    train_py = gpt_study / "train.py"
    train_py.write_text(train_py.read_text() + GPT_ESCAPE)
    started = time.monotonic()
    m = gpt_evaluate(gpt_study, ESCAPEE_MARK=MARK)
    assert m.status == "ok", m.log_tail
    assert m.metric == pytest.approx(8.0, abs=1e-5)
    assert time.monotonic() - started < 25  # not held open until the escapee gave up
    assert escapees() == []  # the double-forked, setsid() writer died with the evaluation
    log = log_of(gpt_study).splitlines()
    if nested_bwrap():  # the child sees no process outside its sandbox: no pipe to write to
        assert f"val_bpb: {FAKE}" not in log
        assert "| escapee: /proc/1/fd/1: No such file or directory" in log  # its sandbox's pid 1
    else:  # the harness is not dumpable; what it wrote elsewhere came before the real lines
        assert f"val_bpb: {FAKE}" not in log or log.index(f"val_bpb: {FAKE}") < log.index("---")


def test_gpt_train_malformed_logits_are_refused_by_the_parent(gpt_study: Path) -> None:
    train_py = gpt_study / "train.py"
    train_py.write_text(train_py.read_text() + GPT_SHORT_LOGITS)
    m = gpt_evaluate(gpt_study)
    assert m.status == "crash" and m.reason.startswith("exit code 1: ")
    assert "val_logits.f32: 12 bytes, expected 133693440" in m.reason
