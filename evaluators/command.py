"""The command evaluator: run the study's command, read its metric from the output.

The command runs in its own process group with a wall-clock timeout, inside the evaluation's
sandbox (core.sandbox); on timeout (or any exit) the whole group is killed, grandchildren that
ignore SIGTERM included (in the sandbox, every process it started). Its environment carries no
secrets (an allowlist: core.secrets.allowed_environ, plus what the study names in `passenv` and
writes in `env`), and its log is redacted of any that it printed all the same. The metric is read
from a line `name: number` (Karpathy's run.log) or `METRIC name=number` (pi-autoresearch); every
other such line is a secondary metric. Those lines are read strictly, since the text around them
may come from a candidate: lines end at \n only, digits are ASCII, one line per name, and a number
a float cannot hold is no number.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal

from pydantic import Field, field_validator

from core.files import atomic_write
from core.interrupt import Interrupted, stop_now
from core.processes import kill_group, record_group
from core.sandbox import Sandbox
from core.secrets import allowed_environ, check_passenv, known_secrets, redact, secret_values
from core.study import EvaluatorConfig
from evaluators.base import Kind, Measurement

# ASCII only (re.ASCII): Python's \d and float() also take ١.٥ for 1.5, and IGNORECASE alone
# lets the Kelvin sign pass for a k. Lines are matched whole, blanks being spaces and tabs.
DIGITS = "[0-9]"
NUMBER = (
    rf"[-+]?(?:{DIGITS}+\.?{DIGITS}*(?:e[-+]?{DIGITS}+)?|\.{DIGITS}+(?:e[-+]?{DIGITS}+)?"
    r"|nan|inf(?:inity)?)"
)
NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
LINE = re.compile(rf"[ \t]*({NAME})[ \t]*:[ \t]*({NUMBER})[ \t]*", re.IGNORECASE | re.ASCII)
PI_LINE = re.compile(
    rf"[ \t]*METRIC[ \t]+({NAME})[ \t]*=[ \t]*({NUMBER})[ \t]*", re.IGNORECASE | re.ASCII
)
ERROR_LINE = re.compile(r"^error: (.+)$", re.MULTILINE)  # why an evaluator failed, in its words
ERROR_CHARS = 300
TAG_LINE = re.compile(r"#[ \t]*([A-Za-z_][A-Za-z0-9_]*_sha256)[ \t]+([0-9a-fA-F]{8,64})[ \t]*")
TAIL_LINES = 50
CHUNK = 65536
TAIL_BYTES = 65536
SHOWN_CHARS = 200  # of a line quoted in a crash reason


class MetricLineError(ValueError):
    """Metric lines that do not read as one number per name: the measurement is a crash."""


@dataclass(frozen=True)
class MetricLine:
    name: str
    value: float
    text: str  # the line as printed, trimmed


def output_lines(text: str) -> Iterator[str]:
    """The lines of an output: split at \n only (and \r\n), never at the other separators of
    str.splitlines (U+2028, U+2029, \x85, \v, \f, \x1c-\x1e, a lone \r), which would let
    text printed in the middle of a line start a metric line of its own."""
    for line in text.split("\n"):
        yield line[:-1] if line.endswith("\r") else line


def metric_lines(text: str) -> Iterator[MetricLine]:
    """Every `name: number` and `METRIC name=number` line, in order.

    Raises MetricLineError on a number that a float cannot hold: a finite literal that
    overflows to inf (1e400), or a nonzero one that underflows to 0.0 (1e-400)."""
    for line in output_lines(text):
        m = LINE.fullmatch(line) or PI_LINE.fullmatch(line)
        if m is None:
            continue
        literal = m.group(2)
        value = float(literal)
        mantissa = re.split("[eE]", literal)[0]
        if math.isinf(value) and "inf" not in literal.lower():
            raise MetricLineError(f"{m.group(1)} overflows a float: {_shown(line)}")
        if value == 0.0 and re.search("[1-9]", mantissa):
            raise MetricLineError(f"{m.group(1)} underflows to 0: {_shown(line)}")
        yield MetricLine(m.group(1), value, line.strip())


def parse_metrics(text: str) -> dict[str, float]:
    """Every metric line's number by name (nan and inf as printed).

    Raises MetricLineError when a name is printed twice (a candidate's line beside the
    evaluator's: neither can be trusted) or a number cannot be held (see metric_lines)."""
    found: dict[str, MetricLine] = {}
    for line in metric_lines(text):
        if line.name in found:
            first = found[line.name].text
            raise MetricLineError(
                f"{line.name} printed twice: {_shown(first)} and {_shown(line.text)}"
            )
        found[line.name] = line
    return {name: line.value for name, line in found.items()}


def _shown(line: str) -> str:
    line = line.strip()
    return repr(line if len(line) <= SHOWN_CHARS else line[:SHOWN_CHARS] + "...")


def parse_tags(text: str) -> dict[str, str]:
    """Lines like `# data_sha256 <hex>`: what a result was measured on, recorded beside it."""
    return {m.group(1): m.group(2) for m in map(TAG_LINE.fullmatch, output_lines(text)) if m}


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def clean_env(extra: dict[str, str] | None = None, passenv: Iterable[str] = ()) -> dict[str, str]:
    """The evaluator's environment: an allowlist of ours (core.secrets.allowed_environ) with the
    variables the study names in `passenv`, never Prefect's settings (with the network, a
    candidate could write its own measurement there), then `extra` (the study's `env`, a slot's).

    The venv's bin comes first on PATH so that `python` is the interpreter running us.
    """
    allowed = allowed_environ(os.environ, passenv)
    env = {k: v for k, v in allowed.items() if not k.startswith("PREFECT_")}
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
    # bytes decoded as they are: read_text() would turn a lone \r into a line break
    text = log_path.read_bytes().decode("utf-8", errors="replace")
    clean = redact(text, known_secrets(*secret_values(env)))  # ours, and what it was given
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
        said = ERROR_LINE.findall(text)  # the evaluator's own (a child's lines are behind `| `)
        why = f": {said[-1].strip()[:ERROR_CHARS]}" if said else ""
        return Measurement.crash(f"exit code {code}{why}", log_tail, seconds)
    try:
        found = parse_metrics(text)
    except MetricLineError as exc:
        return Measurement.crash(str(exc), log_tail, seconds)
    if metric not in found:
        return Measurement.crash(f"no '{metric}:' line in the output", log_tail, seconds)
    value = found.pop(metric)
    if not math.isfinite(value):
        return Measurement.crash(f"{metric} is {value}", log_tail, seconds)
    # a secondary that is nan or inf is left out: successes and trials become ints downstream
    found = {name: v for name, v in found.items() if math.isfinite(v)}
    if "peak_vram_mb" in found:
        found["memory_gb"] = found["peak_vram_mb"] / 1024
    m = Measurement.of(value, secondary=found, log_tail=log_tail, duration_s=seconds)
    return replace(m, tags=parse_tags(text))


class CommandConfig(EvaluatorConfig):
    kind: Literal["command"] = "command"
    command: str
    timeout_s: float = Field(600, gt=0)
    env: dict[str, str] = {}  # set for the command, as written here
    # variables of our environment passed as they are (`NAME` or `PREFIX*`), beyond the
    # allowlist of core.secrets: e.g. [TIME_BUDGET_S, WANDB_API_KEY]. A secret-looking one
    # still has its value redacted from the log.
    passenv: list[str] = []
    max_log_mb: float = Field(20, gt=0)
    network: bool = False  # the sandbox cuts the network unless this is true

    def wants_network(self) -> bool:
        return self.network

    def environment(self) -> tuple[dict[str, str], list[str]]:
        return self.env, self.passenv

    @field_validator("passenv")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        return check_passenv(names)

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
            clean_env(self.config.env | (env or {}), self.config.passenv),
            int(self.config.max_log_mb * 1_000_000),
            sandbox,
        )
        return measure(text, self.metric, code, self.config.timeout_s, seconds)


KIND = Kind(CommandConfig, CommandEvaluator)
