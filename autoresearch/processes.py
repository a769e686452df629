"""Child processes that cannot outlive their welcome: a whole process group, stopped for good."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def kill_group(proc: subprocess.Popen[bytes], grace_s: float = 2.0) -> None:
    """SIGTERM the process group, give it grace_s, then SIGKILL whatever is left, and reap.

    The child must have been started with start_new_session=True (its pid is its group's id);
    grandchildren that ignore SIGTERM are killed too.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def boot_id() -> str:
    """This boot of the machine: a process group recorded in another boot is long gone."""
    return BOOT_ID.read_text().strip() if BOOT_ID.exists() else "unknown"


def kill_recorded(pid_file: Path) -> bool:
    """Kill the process group recorded in pid_file (`<pgid> <boot id>`) if it still runs.

    For a child left running by an orchestrator that was itself killed (SIGKILL gives it no
    chance to clean up). Returns whether a group was signalled; the file is removed.
    """
    try:
        pgid_text, boot = pid_file.read_text().split()
        pgid = int(pgid_text)
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return False
    killed = False
    if boot == boot_id() and pgid > 1:
        try:
            os.killpg(pgid, signal.SIGKILL)
            killed = True
        except (ProcessLookupError, PermissionError):
            pass
    pid_file.unlink(missing_ok=True)
    return killed
