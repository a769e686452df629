"""For evaluator authors: run the editable code in a child process the scoring never runs in.

The evaluator's process (the scorer) never imports a candidate's module. It starts a child (its
own session and process group) that runs the candidate and writes raw outputs to files in a
folder the scorer gave it; the scorer then scores those outputs itself. While the child runs,
its output is re-printed with PREFIX on every line, so no line of it can pass for a
`name: number` metric line. When the child ends or times out, its process group and every
process it left behind are killed (on Linux the scorer is made a child subreaper, so even a
double-forked, setsid() escapee is reparented to it and found) before the caller prints the
real metric lines. The bundled studies' evaluators use it: `from evaluators.isolate import
run_child`.

The scorer cannot be reached from the child. The scorer makes itself non-dumpable
(PR_SET_DUMPABLE 0), so that no process of its uid without CAP_SYS_PTRACE can open its
/proc/<pid>/fd (its stdout: the evaluator's pipe), mem or environ, or ptrace it. Where bwrap
works (inside the tool's own sandbox, which leaves user namespaces to its evaluations for this,
and on most Linux machines outside it), the child also runs in a nested bubblewrap sandbox: a
PID namespace of its own under REAPER, an empty /proc (no process outside the sandbox to name,
the scorer included), no capabilities and no further user namespaces, the file system
read-only but for the folders the scorer lets it write, a TMPDIR of its own and $HOME (in the
tool's sandbox, an empty one of this evaluation's), and the `private` paths (the data the
score is computed on) out of its reach. The network and the GPUs stay as they are. A
child killed by signal N exits with 128 + N there. Without bwrap (macOS, a container without
user namespaces) only PR_SET_DUMPABLE holds: `private` paths stay readable, what the scorer may
write the child may write, and a root scorer stays open to a root child. `private` hides a path,
not its copies: the tool's sandbox hides the repository's .git, with the data's history.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from core.processes import kill_descendants
from core.sandbox import DEVICES

PREFIX = "| "
MAX_LINE_BYTES = 65536  # a longer line without a newline is cut into prefixed pieces
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
# What of /proc the child keeps: facts about the machine (numpy, torch and CUDA read them),
# nothing about a process.
PROC_SHOWN = ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/driver/nvidia")
NESTED = (
    "--unshare-user",
    "--unshare-pid",
    "--as-pid-1",  # REAPER is the namespace's init, not bwrap's own
    "--unshare-ipc",
    "--cap-drop",
    "ALL",
    "--die-with-parent",
    "--new-session",
)  # the network stays as the tool's sandbox has it: a study that allows it needs it here
# The init of the nested sandbox: runs argv, reaps every process of the namespace as it ends,
# and once argv has exited kills and reaps the rest before it exits with argv's status (128 + N
# for signal N). The kernel reaps what outlives a namespace's init without counting its CPU
# time (bwrap's own init exits with the command), so a daemon left to do the work after the
# command would cost nothing in template-speed's RUSAGE_CHILDREN; here every process of the
# sandbox is waited for. Not dumpable: nothing in the sandbox can trace it. It refuses to run
# as any pid but 1, where its kill(-1) reaches only the sandbox.
REAPER = """
import ctypes, os, signal, sys
if os.getpid() != 1:  # kill(-1) below would reach every process of the user, or the machine
    sys.exit("the reaper runs only as the init of a PID namespace of its own")
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
try:
    child = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
except OSError as exc:
    print(f"{sys.argv[1]}: {exc.strerror}", file=sys.stderr)
    os._exit(127)
while True:
    pid, status = os.wait()
    if pid == child:
        break
while True:
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.wait()
    except ChildProcessError:
        break
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""
_write_lock = threading.Lock()


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _become_subreaper() -> None:
    """Orphaned descendants are reparented to us (not to init), so they can be found and killed."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _forbid_tracing() -> None:
    """Our /proc/<pid>/fd, mem and environ, and ptrace, are closed to processes of our uid."""
    _prctl(PR_SET_DUMPABLE, 0)


@functools.cache
def nested_bwrap() -> tuple[str, ...] | None:
    """bwrap and the flags of a nested sandbox that works here (probed once), or None.

    --disable-userns (bwrap 0.8) is used where the bwrap knows it.
    """
    path = shutil.which("bwrap")
    if path is None:
        return None
    for extra in (("--disable-userns",), ()):
        flags = (*NESTED, *extra)
        probe = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/proc", *flags, "true"]
        try:
            done = subprocess.run(probe, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode == 0:
            return (path, *flags)
    return None


def _folders_in(argv: Sequence[str], cwd: Path) -> list[Path]:
    """The existing folders named by argv's arguments: where a caller hands the child its folder."""
    found = []
    for arg in argv[1:]:
        with contextlib.suppress(OSError, ValueError):
            path = (cwd / arg).resolve()
            if arg and path.is_dir() and path != Path("/"):
                found.append(path)
    return found


def _sandboxed(
    bwrap: Sequence[str],
    argv: Sequence[str],
    cwd: Path,
    writable: Sequence[Path],
    private: Sequence[Path],
) -> list[str]:
    """argv in the nested sandbox: read-only but for `writable`, `private` replaced by nothing."""
    path, *flags = bwrap
    args = [path, "--ro-bind", "/", "/", "--dev", "/dev"]
    for device in DEVICES:  # GPUs stay usable
        args += ["--dev-bind-try", device, device]
    args += ["--tmpfs", "/proc"]
    for shown in PROC_SHOWN:
        args += ["--ro-bind-try", shown, shown]
    for folder in writable:
        args += ["--bind", str(folder), str(folder)]
    for hidden in private:  # last: a private path inside a writable folder stays private
        if hidden.is_dir():
            args += ["--tmpfs", str(hidden)]
        elif hidden.exists():
            args += ["--ro-bind", "/dev/null", str(hidden)]
    reaper = [sys.executable, "-S", "-I", "-c", REAPER]
    return [*args, *flags, "--chdir", str(cwd), "--", *reaper, *argv]


def _home() -> list[Path]:
    """$HOME, when it is a folder we may write: caches live there (Triton's, for one)."""
    home = Path(os.environ.get("HOME") or "/").resolve()
    return [home] if home != Path("/") and home.is_dir() and os.access(home, os.W_OK) else []


def _emit(raw: bytes, out: IO[bytes], state: dict[str, bool]) -> None:
    """Write one chunk of the child's output, every line of it behind PREFIX."""
    text = raw.decode("utf-8", errors="replace")
    lines = text.splitlines() or [""]  # every separator, the metric parser's \n among them
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


def run_child(
    argv: list[str],
    cwd: Path,
    timeout_s: float,
    writable: Sequence[Path] | None = None,
    private: Sequence[Path] = (),
) -> int | None:
    """Run argv with its output re-printed behind PREFIX; None when it ran past timeout_s.

    `writable`: the folders the child may write its outputs to (by default, the folders named
    by argv's arguments, as the bundled evaluators name theirs). `private`: files and folders
    the child must not read (the data the score is computed on): a folder is empty there, a
    file cannot be opened. Both are enforced by the nested sandbox only (see the module's
    docstring). On return the child's process group and all of its descendants are dead, and
    nothing more of its output will be printed.
    """
    _become_subreaper()
    _forbid_tracing()
    cwd = Path(cwd).resolve()
    bwrap = nested_bwrap()
    if bwrap is None:
        return _supervise(argv, cwd, timeout_s, None)
    folders = _folders_in(argv, cwd) if writable is None else writable
    scratch = Path(tempfile.mkdtemp(prefix="child-tmp-"))  # its TMPDIR, removed after
    try:
        shown = [(cwd / p).resolve() for p in folders] + [scratch, *_home()]
        hidden = [(cwd / p).resolve() for p in private]
        wrapped = _sandboxed(bwrap, argv, cwd, shown, hidden)
        return _supervise(wrapped, cwd, timeout_s, {**os.environ, "TMPDIR": str(scratch)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _supervise(
    argv: list[str], cwd: Path, timeout_s: float, env: dict[str, str] | None
) -> int | None:
    """Start argv, relay its output, and kill it and all it started when it ends or times out."""
    sys.stdout.flush()
    sys.stderr.flush()
    out = sys.stdout.buffer
    state = {"open": True}
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    relay = threading.Thread(target=_relay, args=(proc.stdout, out, state), daemon=True)
    relay.start()
    try:
        code = _wait(proc, timeout_s)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kill_descendants()
        relay.join(timeout=2.0)  # a pipe still held open by an unseen process is abandoned
        with _write_lock:
            state["open"] = False
    return code


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The exit status, or None past timeout_s: woken by the exit itself where Linux has pidfds
    (Popen.wait polls, and would add up to 50 ms to every child)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        ready = poller.poll(max(timeout_s, 0.0) * 1000)
    finally:
        os.close(pidfd)
    return proc.wait() if ready else None


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
