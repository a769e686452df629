"""Child processes that cannot outlive their welcome: process groups and descendants, stopped
for good, and the one reader of /proc that finds them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


# /proc ---------------------------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state letter), from /proc; empty without /proc."""
    table: dict[int, tuple[int, int, str]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                text = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = text.rsplit(")", 1)[-1].split()  # the name may hold spaces and ")"
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def group_members(pgid: int) -> list[int]:
    """The live (non-zombie) processes of a process group."""
    return [pid for pid, (_, g, st) in proc_table().items() if g == pgid and st != "Z"]


def descendants(root: int | None = None) -> dict[int, str]:
    """The descendants of `root` (default: this process): pid -> state letter (Z: zombie)."""
    table = proc_table()
    found: dict[int, str] = {}
    frontier = [os.getpid() if root is None else root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, state) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = state
                frontier.append(pid)
    return found


def group_alive(pgid: int) -> bool:
    """Is any process of the group still running? Zombies, waiting to be reaped, do not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(group_members(pgid)) if Path("/proc/self/stat").exists() else True


# Stopping ------------------------------------------------------------------------------


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_group(proc: subprocess.Popen[Any], grace_s: float = 2.0) -> None:
    """SIGTERM the process group, give it grace_s, then SIGKILL whatever is left, and reap.

    The child must have been started with start_new_session=True (its pid is its group's id);
    grandchildren that ignore SIGTERM are killed too.
    """
    if not _signal_group(proc.pid, signal.SIGTERM):
        proc.wait()
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """For a long-lived service: SIGTERM its group, wait until every member is gone (at most
    grace_s), then SIGKILL what is left and wait for that too."""
    if proc.poll() is not None and not group_alive(proc.pid):
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if not _signal_group(proc.pid, sig):
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()
            if not group_alive(proc.pid):
                return
            time.sleep(0.1)
    proc.poll()


def reap() -> None:
    """Collect every exited child of ours, so that none stays a zombie."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def kill_descendants(rounds: int = 200) -> None:
    """SIGKILL every process below us, again and again, until none is left (or none is seen)."""
    for _ in range(rounds):
        found = descendants()
        for pid, state in found.items():
            if state != "Z":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        reap()
        if not found:
            return
        time.sleep(0.005)


# Recorded groups -----------------------------------------------------------------------


def boot_id() -> str:
    """This boot of the machine: a process group recorded in another boot is long gone."""
    return BOOT_ID.read_text().strip() if BOOT_ID.exists() else "unknown"


def record_group(pid_file: Path, pgid: int) -> None:
    """Write `<pgid> <boot id>` beside a log, for kill_recorded after a kill of ours."""
    pid_file.write_text(f"{pgid} {boot_id()}\n")


def kill_recorded(pid_file: Path) -> bool:
    """Kill the process group recorded in pid_file if it still runs.

    For a child left running by an orchestrator that was itself killed (SIGKILL gives it no
    chance to clean up). Returns whether a group was signalled; the file is removed.
    """
    try:
        pgid_text, boot = pid_file.read_text().split()
        pgid = int(pgid_text)
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return False
    killed = boot == boot_id() and pgid > 1 and _signal_group(pgid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return killed
