"""The command evaluator: run the study's command, read its metric from the output.

The command runs in its own process group with a wall-clock timeout, inside the evaluation's
sandbox (core.sandbox); on timeout (or any exit) the whole group is killed, grandchildren that
ignore SIGTERM included (in the sandbox, every process it started). Its environment carries no
secrets, and its log is redacted of any that it printed all the same. The metric is read from a
line `name: number` (Karpathy's run.log) or `METRIC name=number` (pi-autoresearch); every other
such line is a secondary metric.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import IO, Literal

from pydantic import Field

from core.files import atomic_write
from core.interrupt import Interrupted, stop_now
from core.processes import kill_group, record_group
from core.sandbox import Sandbox
from core.secrets import redact, safe_environ
from core.study import EvaluatorConfig
from evaluators.base import Kind, Measurement

NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
LINE = re.compile(rf"^\s*([A-Za-z_][\w.]*)\s*:\s*({NUMBER})\s*$", re.IGNORECASE)
TAG_LINE = re.compile(r"^#\s*([A-Za-z_]\w*_sha256)\s+([0-9a-fA-F]{8,64})\s*$")
PI_LINE = re.compile(rf"^\s*METRIC\s+([A-Za-z_][\w.]*)\s*=\s*({NUMBER})\s*$", re.IGNORECASE)
TAIL_LINES = 50
CHUNK = 65536
TAIL_BYTES = 65536


def parse_metrics(text: str) -> dict[str, float]:
    """Every `name: number` and `METRIC name=number` line; a later line wins."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = LINE.match(line) or PI_LINE.match(line)
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def parse_tags(text: str) -> dict[str, str]:
    """Lines like `# data_sha256 <hex>`: what a result was measured on, recorded beside it."""
    return {m.group(1): m.group(2) for m in map(TAG_LINE.match, text.splitlines()) if m}


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The evaluator's environment: ours minus anything that looks like a secret, and minus
    Prefect's settings (with the network, a candidate could write its own measurement there).

    The venv's bin comes first on PATH so that `python` is the interpreter running us.
    """
    env = {k: v for k, v in safe_environ(dict(os.environ)).items() if not k.startswith("PREFECT_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no stale .pyc of one candidate read by the next
    env.update(extra or {})
    return env


def copy_capped(source: IO[bytes], log: IO[bytes], cap: int) -> None:
    """Copy output to the log up to `cap` bytes; past that keep only the last TAIL_BYTES."""
    written = dropped = 0
    tail_buf = bytearray()
    for chunk in iter(lambda: source.read1(CHUNK), b""):  # type: ignore[attr-defined]
        room = max(0, cap - written)
        log.write(chunk[:room])
        written += min(room, len(chunk))
        rest = chunk[room:]
        if rest:
            tail_buf += rest
            dropped += len(rest)
            del tail_buf[:-TAIL_BYTES]
    if dropped:
        shown = len(tail_buf)
        log.write(
            f"\n[... output capped at {cap} bytes: {dropped - shown} bytes dropped ...]\n".encode()
        )
        log.write(bytes(tail_buf))


def run_command(
    command: str,
    cwd: Path,
    log_path: Path,
    timeout_s: float,
    env: dict[str, str],
    max_log_bytes: int = 20_000_000,
    sandbox: Sandbox | None = None,
) -> tuple[int | None, float, str]:
    """Run a shell command with its output to log_path. Returns (exit code or None, seconds,
    the log as written: secrets redacted)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = ["/bin/sh", "-c", command]
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            sandbox.wrap(argv, cwd) if sandbox else argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        assert proc.stdout is not None
        running = log_path.with_suffix(".pgid")  # a killed orchestrator's next run kills this group
        record_group(running, proc.pid)
        copier = threading.Thread(target=copy_capped, args=(proc.stdout, log, max_log_bytes))
        copier.start()
        try:
            code = _wait(proc, timeout_s)
        finally:
            kill_group(proc)  # also reaps grandchildren left behind by a command that exited
            copier.join()
            proc.stdout.close()
            running.unlink(missing_ok=True)
    text = log_path.read_text(errors="replace")
    clean = redact(text)
    if clean != text:  # a secret it should never have seen, printed all the same
        atomic_write(log_path, clean)
    return code, time.monotonic() - start, clean


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The exit code, or None past the timeout; Interrupted when a person asks to stop now."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return proc.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if stop_now.is_set():
                raise Interrupted("stopped now, during an evaluation") from None
            if time.monotonic() >= deadline:
                return None


def measure(
    text: str, metric: str, code: int | None, timeout_s: float, seconds: float
) -> Measurement:
    """Turn a finished command's output into a Measurement (or a crash with its reason)."""
    log_tail = tail(text)
    if code is None:
        return Measurement.crash(f"timeout after {timeout_s:g}s", log_tail, seconds)
    if code != 0:
        return Measurement.crash(f"exit code {code}", log_tail, seconds)
    found = parse_metrics(text)
    if metric not in found:
        return Measurement.crash(f"no '{metric}:' line in the output", log_tail, seconds)
    value = found.pop(metric)
    if not math.isfinite(value):
        return Measurement.crash(f"{metric} is {value}", log_tail, seconds)
    if "peak_vram_mb" in found:
        found["memory_gb"] = found["peak_vram_mb"] / 1024
    m = Measurement.of(value, secondary=found, log_tail=log_tail, duration_s=seconds)
    return replace(m, tags=parse_tags(text))


class CommandConfig(EvaluatorConfig):
    kind: Literal["command"] = "command"
    command: str
    timeout_s: float = Field(600, gt=0)
    env: dict[str, str] = {}
    max_log_mb: float = Field(20, gt=0)
    network: bool = False  # the sandbox cuts the network unless this is true

    def describe(self) -> str:
        return f"The evaluator runs `{self.command}` in the study folder."


class CommandEvaluator:
    def __init__(self, config: CommandConfig, metric: str) -> None:
        self.config = config
        self.metric = metric

    def evaluate(
        self,
        workdir: Path,
        log_path: Path,
        sandbox: Sandbox | None = None,
        env: dict[str, str] | None = None,
    ) -> Measurement:
        code, seconds, text = run_command(
            self.config.command,
            workdir,
            log_path,
            self.config.timeout_s,
            clean_env(self.config.env | (env or {})),
            int(self.config.max_log_mb * 1_000_000),
            sandbox,
        )
        return measure(text, self.metric, code, self.config.timeout_s, seconds)


KIND = Kind(CommandConfig, CommandEvaluator)
