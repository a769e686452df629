"""The command evaluator: metric lines, crashes, and a timeout that leaves no process behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

from evaluators.command import CommandConfig, CommandEvaluator, parse_metrics


def run(
    tmp_path: Path,
    script: str,
    timeout_s: float = 10,
    metric: str = "val_bpb",
    passenv: tuple[str, ...] = (),
    **env: str,
):
    (tmp_path / "job.py").write_text(script)
    config = CommandConfig(
        command="python job.py", timeout_s=timeout_s, env=env, passenv=list(passenv)
    )
    return CommandEvaluator(config, metric).evaluate(tmp_path, tmp_path / "logs" / "1.log")


def test_parses_both_formats_and_secondaries():
    text = "step 1\nval_bpb:          0.997900\npeak_vram_mb:     45060.2\nMETRIC mfu=39.8\n"
    assert parse_metrics(text) == {"val_bpb": 0.9979, "peak_vram_mb": 45060.2, "mfu": 39.8}


def test_ok_measurement_has_memory_and_log(tmp_path):
    m = run(tmp_path, "print('---')\nprint('val_bpb: 1.25')\nprint('peak_vram_mb: 2048')\n")
    assert m.status == "ok" and m.metric == 1.25
    assert m.secondary["memory_gb"] == 2.0
    assert "val_bpb: 1.25" in (tmp_path / "logs" / "1.log").read_text()


def test_data_checksum_is_kept_as_a_tag(tmp_path):
    digest = "9d16b167c85b479e2eba60c661b4892c6ea662edb3a76d5da1be5662c2bba292"
    m = run(tmp_path, f"print('# data_sha256 {digest}')\nprint('val_bpb: 1.5')")
    assert m.tags == {"data_sha256": digest}


def test_pi_autoresearch_format(tmp_path):
    m = run(tmp_path, "print('METRIC total_ms=12.5')", metric="total_ms")
    assert m.status == "ok" and m.metric == 12.5


def test_crashes_keep_reason_and_tail(tmp_path):
    m = run(tmp_path, "print('loading')\nraise SystemExit('out of memory')")
    assert m.status == "crash" and m.reason == "exit code 1"
    assert "out of memory" in m.log_tail
    assert run(tmp_path, "print('loss: 3')").reason == "no 'val_bpb:' line in the output"
    assert run(tmp_path, "print('val_bpb: nan')").reason == "val_bpb is nan"
    assert run(tmp_path, "print('val_bpb: inf')").status == "crash"


def test_log_tail_is_the_last_50_lines(tmp_path):
    m = run(tmp_path, "for i in range(200): print('line', i)\nraise SystemExit(3)")
    lines = m.log_tail.splitlines()
    assert len(lines) == 50 and lines[-1] == "line 199" and m.reason == "exit code 3"


def test_output_is_capped_but_the_metric_survives(tmp_path):
    job = "import sys\nfor _ in range(3000): sys.stdout.write('x' * 999 + '\\n')\n"
    (tmp_path / "job.py").write_text(job + "print('val_bpb: 2.5')\n")
    config = CommandConfig(command="python job.py", timeout_s=20, max_log_mb=0.5)
    m = CommandEvaluator(config, "val_bpb").evaluate(tmp_path, tmp_path / "capped.log")
    log = (tmp_path / "capped.log").read_bytes()
    assert m.status == "ok" and m.metric == 2.5
    assert len(log) < 500_000 + 70_000 and b"output capped at 500000 bytes" in log


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()


def test_timeout_kills_grandchild_that_ignores_sigterm(tmp_path):
    grandchild = (
        "import signal, time, os\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open('grandchild.pid', 'w').write(str(os.getpid()))\n"
        "time.sleep(300)\n"
    )
    (tmp_path / "stubborn.py").write_text(grandchild)
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, 'stubborn.py'])\n"
        "time.sleep(300)\n"
    )
    start = time.monotonic()
    m = run(tmp_path, script, timeout_s=1.5)
    assert m.status == "crash" and m.reason.startswith("timeout after 1.5s")
    assert time.monotonic() - start < 10
    pid = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)


def test_secrets_do_not_reach_the_evaluator(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret-value")
    monkeypatch.setenv("HARMLESS", "visible")
    monkeypatch.setenv("UNLISTED", "not-asked-for")
    script = "import os\nprint(sorted(os.environ.items()))\nprint('val_bpb: 1')"
    m = run(tmp_path, script, passenv=("HARMLESS",))
    log = (tmp_path / "logs" / "1.log").read_text()
    assert m.status == "ok"
    assert "visible" in log and "not-asked-for" not in log  # an allowlist, and what is asked
    assert "sk-ant-test-secret-value" not in log and "ANTHROPIC_API_KEY" not in log
