"""Defence in depth behind the sandbox: the tool's own files, watched around every evaluation.

The ledger, state.json, the learnings and the repository's git config and hooks are read before
an evaluation and compared after it. A change that the tool did not make itself voids the
evaluation, and the files are put back as they were. The tool's own writes during a watch (a
parallel slot's row, say) are made inside `writing()`, which moves every open watch's baseline
to what the tool wrote.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from core.files import atomic_write

Snapshot = dict[Path, bytes | None]


class Tampered(Exception):
    """An evaluation changed the tool's own files; they have been restored."""


class Watched:
    """A fixed set of files, and every file under a few folders."""

    def __init__(self, files: list[Path], folders: list[Path]) -> None:
        self.files = files
        self.folders = folders
        self._lock = threading.RLock()
        self._open: dict[int, Snapshot] = {}  # by id: two watches may hold equal snapshots

    def snapshot(self) -> Snapshot:
        paths = set(self.files)
        for folder in self.folders:
            if folder.is_dir():
                paths |= {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
        return {p: _read(p) for p in paths}

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """Run the body (an evaluation); raise Tampered if it changed a watched file."""
        with self._lock:
            before = self.snapshot()
            self._open[id(before)] = before
        try:
            yield
        finally:
            with self._lock:
                del self._open[id(before)]
                changed = self._restore(before)
        if changed:
            names = ", ".join(sorted(p.name for p in changed))
            raise Tampered(f"voided: the evaluation changed the study's own files ({names})")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """The tool writes its files: open watches take the result as their new baseline (also
        when the write failed half-way: what it left is the tool's own). With no watch open
        (no evaluation running), nothing is read."""
        with self._lock:
            try:
                yield
            finally:
                if self._open:
                    now = self.snapshot()
                    for snap in self._open.values():
                        snap.clear()
                        snap.update(now)

    def _restore(self, before: Snapshot) -> list[Path]:
        now = self.snapshot()
        changed = [p for p in before.keys() | now.keys() if before.get(p) != now.get(p)]
        for path in changed:
            old = before.get(path)
            if old is None or old.startswith(LINK):
                path.unlink(missing_ok=True)
            if old is not None and old.startswith(LINK):
                path.symlink_to(old.removeprefix(LINK).decode())
            elif old is not None:
                atomic_write(path, old)
        return changed


LINK = b"\0symlink:"


def _read(path: Path) -> bytes | None:
    try:
        if path.is_symlink():
            return LINK + str(path.readlink()).encode()
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
