"""For evaluator authors: run the editable code in a child process the scoring never runs in.

The evaluator's process never imports a candidate's module. It starts a child (its own session
and process group) that runs the candidate and writes raw outputs to files in a temporary folder;
the evaluator then scores those outputs itself. While the child runs, its output is re-printed
with PREFIX on every line, so no line of it can pass for a `name: number` metric line. When the
child ends or times out, its process group and every process it left behind are killed (on Linux
the evaluator is made a child subreaper, so even a double-forked, setsid() escapee is reparented
to it and found) before the caller prints the real metric lines. The bundled studies' evaluators
use it: `from evaluators.isolate import run_child`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from core.processes import kill_descendants

PREFIX = "| "
MAX_LINE_BYTES = 65536  # a longer line without a newline is cut into prefixed pieces
PR_SET_CHILD_SUBREAPER = 36
_write_lock = threading.Lock()


def _become_subreaper() -> None:
    """Orphaned descendants are reparented to us (not to init), so they can be found and killed."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _emit(raw: bytes, out: IO[bytes], state: dict[str, bool]) -> None:
    """Write one chunk of the child's output, every line of it behind PREFIX."""
    text = raw.decode("utf-8", errors="replace")
    lines = text.splitlines() or [""]  # the same separators as the metric parser's splitlines()
    data = "".join(f"{PREFIX}{line}\n" for line in lines).encode("utf-8", errors="replace")
    with _write_lock:
        if not state["open"]:
            return
        out.write(data)
        out.flush()


def _relay(source: IO[bytes], out: IO[bytes], state: dict[str, bool]) -> None:
    """Copy the child's output, a whole line at a time, until the pipe closes."""
    pending = b""
    for chunk in iter(lambda: source.read1(MAX_LINE_BYTES), b""):  # type: ignore[attr-defined]
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _emit(line, out, state)
        while len(pending) > MAX_LINE_BYTES:
            _emit(pending[:MAX_LINE_BYTES], out, state)
            pending = pending[MAX_LINE_BYTES:]
    if pending:
        _emit(pending, out, state)


def run_child(argv: list[str], cwd: Path, timeout_s: float) -> int | None:
    """Run argv with its output re-printed behind PREFIX; None when it ran past timeout_s.

    On return the child's process group and all of its descendants are dead, and nothing more
    of its output will be printed.
    """
    _become_subreaper()
    sys.stdout.flush()
    sys.stderr.flush()
    out = sys.stdout.buffer
    state = {"open": True}
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    relay = threading.Thread(target=_relay, args=(proc.stdout, out, state), daemon=True)
    relay.start()
    try:
        code: int | None = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kill_descendants()
        relay.join(timeout=2.0)  # a pipe still held open by an unseen process is abandoned
        with _write_lock:
            state["open"] = False
    return code


@contextlib.contextmanager
def open_result(path: Path, max_bytes: int) -> Iterator[IO[bytes]]:
    """A file the child wrote, opened safely: a plain file (no link, FIFO or device), capped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ResultError(f"{path.name}: the child process did not write it") from None
    except OSError as exc:
        raise ResultError(f"{path.name}: cannot be opened: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ResultError(f"{path.name}: not a plain file")
        if info.st_size > max_bytes:
            raise ResultError(f"{path.name}: {info.st_size} bytes, more than {max_bytes}")
        yield handle


class ResultError(Exception):
    """The child's outputs are missing or malformed; the message names the file."""
