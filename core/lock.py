"""One writer per study: an exclusive lock on runs/<name>/lock, held for a whole campaign.

A scheduled run, an ad-hoc run and a CLI run of one study may start at the same moment; only one
may touch its worktree and ledger. The lock is an `flock` on a file beside the study's state, so
the kernel drops it when its holder dies (a SIGKILL leaves no stale lock), and the file says who
holds it (pid, host, since, what), so the refused writer can say so.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

LOCK_FILE = "lock"


class StudyLocked(RuntimeError):
    """Another process is writing this study; the message names it."""

    exit_code = 3


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    what = f" ({holder['what']})" if holder.get("what") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}{what}"


class StudyLock:
    """Exclusive writer lock of one study's state folder.

    wait_s 0 refuses at once when another process holds it; a positive wait_s waits up to that
    many seconds for it, and a negative one waits as long as it takes.
    """

    def __init__(
        self, state_dir: Path, study: str = "", wait_s: float = 0.0, what: str = ""
    ) -> None:
        self.path = Path(state_dir) / LOCK_FILE
        self.study = study or Path(state_dir).name
        self.wait_s = wait_s
        self.what = what
        self._fd: int | None = None

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock, as its holder wrote it; None when unknown."""
        try:
            text = self.path.read_text()
        except OSError:
            return None
        try:
            data = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def _try(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self) -> None:
        """Take the lock, wait for it as configured, or raise StudyLocked naming the holder."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this StudyLock is already held")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_s if self.wait_s >= 0 else None
        while not self._try(fd):
            if deadline is not None and time.monotonic() >= deadline:
                holder = self._holder_soon()
                os.close(fd)
                waited = f" after waiting {self.wait_s:g}s" if self.wait_s > 0 else ""
                raise StudyLocked(
                    f"study {self.study} is being written by {describe(holder)}{waited}; "
                    f"refusing a second writer (lock {self.path}). Wait for it to finish, "
                    "or ask this run to wait for the lock (`--wait SECONDS`, or the flow "
                    "parameter lock_wait_s)."
                )
            time.sleep(0.2)
        self._fd = fd
        record = {
            "pid": os.getpid(),
            "host": platform.node(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "what": self.what,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)

    def _holder_soon(self) -> dict[str, Any] | None:
        """The holder writes its name just after locking: give it a moment to do so."""
        for _ in range(10):
            found = self.holder()
            if found:
                return found
            time.sleep(0.05)
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
