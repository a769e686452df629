"""Where a candidate's code runs: a bubblewrap (bwrap) sandbox around every evaluation.

Whoever runs the tool, the evaluation runs unprivileged: in a user namespace of its own, with
every capability dropped and no new privileges, so that it cannot mount, unmount, remount,
ptrace anything outside, or write outside what it is given. When the tool runs as root, it is
uid 65534 of the host too (core/launch.py maps nobody to nobody): mapped to the host's root, a
uid without capabilities would still own, and read, every root-owned file.
A nested sandbox stays possible (a study's scorer puts its candidate in one: evaluators.isolate);
the mounts it inherits are locked, so a nested namespace gains nothing.

What the evaluation sees: the whole file system read-only; the candidate's worktree read-only
(its protected files with it); a private, empty, writable, size-capped /tmp (TMPDIR), /dev/shm
and home; no study state (results.tsv, state.json, resource.md, logs, locks, the other
worktrees), no `.git` of the repository, no $HOME of the user, nothing of the tool's own folder
and Prefect home (but the Python it runs on and our packages); a new PID namespace, so that every
process it starts, setsid() daemons included, dies with it; limits on processes, memory, file
size and open files (`limits:` in study.yaml). No network unless the study asks for it; then a
network namespace of its own with outbound access through slirp4netns (core/launch.py), and the
host's loopback out of reach. Its environment is what the caller passes: an allowlist
(core.secrets.allowed_environ).

Without bwrap (macOS, a container that forbids user namespaces) a study must say
`sandbox: false`; only the offline `mutate` and `optuna` proposers, which change nothing but
numbers in the study's own files, may then run unsandboxed with a notice.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core import credentials
from core.study import LimitsConfig

HIDDEN_ROOTS = ("/home", "/root", "/var/tmp", "/tmp", "/run")  # besides $HOME and the checkout
TOOL = Path(__file__).resolve().parent.parent  # our own folder: its runs/ and .prefect/ hidden
NOBODY = 65534  # who the evaluation is, on the host too, when the tool runs as root
DEVICES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
           "/dev/nvidia-modeset", "/dev/dri", "/dev/kfd")  # fmt: skip
LAUNCH = Path(__file__).with_name("launch.py")
HOST_IP = "10.0.2.2"  # the host's loopback, from a sandbox with `host_loopback`
INSTALL = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf "
    "install bubblewrap`), or, to run candidates unsandboxed (not for code written by a model), "
    "set `sandbox: false` in study.yaml"
)
INSTALL_NET = (
    "`evaluator.network: true` needs slirp4netns, which gives the sandbox a network of its own "
    "(Debian/Ubuntu: `sudo apt-get install slirp4netns`; Fedora: `sudo dnf install slirp4netns`)"
)


class SandboxUnavailable(RuntimeError):
    """bwrap is missing or cannot run here; the message says why and what to do."""

    exit_code = 2


def _root() -> bool:
    return os.geteuid() == 0


def _drop() -> list[str]:
    """As root, the command's prefix that makes it uid 65534 of the host, with no capability
    and an empty bounding set (the user namespace of core/launch.py maps 65534 to itself)."""
    if not _root():
        return []  # bwrap's own user namespace: the user's uid, no capability
    setpriv = shutil.which("setpriv") or "setpriv"
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]  # fmt: skip


def _launcher(network: str | None, host_loopback: bool) -> list[str]:
    """core/launch.py's command line, when the sandbox needs namespaces made for it: as root
    (a user namespace that maps nobody to nobody) or with the network; else nothing."""
    if not _root() and network is None:
        return []
    launcher = [sys.executable, "-I", "-S", str(LAUNCH)] + (["--nobody"] if _root() else [])
    if network is not None:
        launcher += ["--network", network] + (["--host-loopback"] if host_loopback else [])
    return launcher


@functools.cache
def bwrap() -> str | None:
    """The path of a working bwrap, or None: missing, or refused by the kernel or a container."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    user = [] if _root() else ["--unshare-user"]
    probe = subprocess.run(
        [
            *_launcher(None, False),
            path,
            "--ro-bind",
            "/",
            "/",
            *user,
            "--unshare-pid",
            "--die-with-parent",
            "--",
            *_drop(),
            "true",
        ],  # fmt: skip
        capture_output=True,
        timeout=30,
    )
    return path if probe.returncode == 0 else None


def why_unavailable() -> str:
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    return "bwrap is installed but cannot create a sandbox here (user namespaces are disabled)"


def require() -> str:
    """bwrap's path, or SandboxUnavailable with the reason and the two ways out."""
    path = bwrap()
    if path is None:
        raise SandboxUnavailable(
            f"{why_unavailable()}: every evaluation runs in a sandbox; {INSTALL}"
        )
    return path


def require_network() -> str:
    """slirp4netns's path, or SandboxUnavailable saying how to install it."""
    path = shutil.which("slirp4netns")
    if path is None:
        raise SandboxUnavailable(f"slirp4netns is not installed: {INSTALL_NET}")
    return path


def choose(enabled: bool, writes_code: bool) -> tuple[bool, str]:
    """Whether candidates run sandboxed, and a one-line notice when they do not.

    Raises SandboxUnavailable when bwrap cannot run and the researcher writes code.
    """
    if not enabled:
        return False, "sandbox: false in study.yaml: candidates run unsandboxed"
    if bwrap():
        return True, ""
    if writes_code:
        require()
    return False, (
        f"{why_unavailable()}: candidates run unsandboxed, since this proposer changes only "
        f"numbers in the study's files. To sandbox them, {INSTALL}"
    )


def _python_roots() -> list[Path]:
    """What the evaluation's Python needs to see: the venv, its base install, and our own
    packages (an editable install's source tree, without the rest of it: its Prefect database,
    other studies' runs)."""
    packages = [p for p in TOOL.iterdir() if (p / "__init__.py").is_file()]
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent}
    return sorted(p.resolve() for p in (*roots, *packages) if p.exists())


def tool_homes() -> list[Path]:
    """The tool's own folder and its Prefect home (its database, login and signing key),
    wherever the study lives."""
    return [TOOL, credentials.prefect_home().resolve()]


def memory_mb(limits: LimitsConfig) -> int | None:
    if limits.memory_mb != "auto":
        return limits.memory_mb
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return pages * size * 3 // 4 // 2**20


def rlimits(limits: LimitsConfig) -> list[str]:
    """prlimit's options for the evaluation's limits, set inside the sandbox (where the
    process count is the sandbox's own); empty when there is no prlimit."""
    mb = 2**20
    wanted = {
        "nproc": limits.processes,
        "data": (m * mb if (m := memory_mb(limits)) else None),
        "fsize": limits.file_mb and limits.file_mb * mb,
        "nofile": limits.open_files,
    }
    options = []
    for name, value in wanted.items():
        if value:  # never above the hard limit we have: raising it would need a capability
            hard = resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            options.append(f"--{name}={value}")
    prlimit = shutil.which("prlimit")
    return [prlimit, *options, "--"] if prlimit and options else []


@dataclass(frozen=True)
class Sandbox:
    """One evaluation's sandbox: the worktree it measures, what it must not see."""

    worktree: Path  # visible, read-only
    hidden: tuple[Path, ...]  # state folder, the repository's .git: replaced by empty folders
    checkout: Path | None = None  # the user's repository: hidden, but for what is shown again
    network: bool = False
    readable: tuple[Path, ...] = ()  # extra paths to show read-only (under a hidden root)
    writable: tuple[Path, ...] = ()  # extra paths to let it write (created if missing)
    home: Path = field(default_factory=Path.home)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    host_loopback: bool = False  # with the network: the host's 127.0.0.1 reached as HOST_IP

    def _tmpfs(self, path: str, perms: str = "0755") -> list[str]:
        size = self.limits.tmp_mb
        return (
            ["--perms", perms]
            + (["--size", str(size * 2**20)] if size else [])
            + [
                "--tmpfs",
                path,
            ]
        )

    def wrap(self, argv: list[str], cwd: Path) -> list[str]:
        """argv as run inside the sandbox, starting in cwd."""
        args = [require(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for device in DEVICES:  # GPUs stay usable
            args += ["--dev-bind-try", device, device]
        args += self._tmpfs("/dev/shm", "1777")
        hidden = [*HIDDEN_ROOTS, str(self.home), *map(str, tool_homes())]
        if self.checkout is not None:
            hidden.append(str(self.checkout))
        shown = [*_python_roots(), *self.readable, self.worktree, *self.writable]
        hidden += _closed_above(shown, hidden) if _root() else []
        mounts = Mounts(args)
        for root in sorted(filter(os.path.isdir, set(hidden)), key=lambda p: len(Path(p).parts)):
            writable = root in ("/tmp", "/var/tmp", str(self.home))  # its own, empty
            mounts.add(self._tmpfs(root, "1777" if writable else "0755"), root)
        for path in (*_python_roots(), *self.readable):
            mounts.add(["--ro-bind-try", str(path), str(path)], str(path))
        for path in self.hidden:
            mounts.add(self._tmpfs(str(path)), str(path))
        mounts.add(["--ro-bind", str(self.worktree), str(self.worktree)], str(self.worktree))
        for path in self.writable:
            path.mkdir(parents=True, exist_ok=True)
            if _root():  # the evaluation is nobody: the folder is lent to it
                os.chown(path, NOBODY, NOBODY)
            mounts.add(["--bind", str(path), str(path)], str(path))
        args += [] if _root() else ["--unshare-user"]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        args += ["--chdir", str(cwd), "--setenv", "TMPDIR", "/tmp"]
        args += ["--setenv", "HOME", str(self.home), "--", *_drop(), *rlimits(self.limits)]
        network = require_network() if self.network else None
        if network is None:
            args.insert(1, "--unshare-net")
        return [*_launcher(network, self.host_loopback), *args, *argv]


@contextlib.contextmanager
def lent(folder: Path | None) -> Iterator[None]:
    """As root, a folder of the tool's that the sandbox writes (an agent's worktree), everything
    in it, is nobody's while the body runs, then the tool's again (git refuses a worktree that
    is not). A user's sandbox is the user."""
    if folder is None or not _root():
        yield
        return
    _chown_tree(folder, NOBODY, NOBODY)
    try:
        yield
    finally:
        _chown_tree(folder, os.geteuid(), os.getegid())


def _chown_tree(folder: Path, uid: int, gid: int) -> None:
    """Every entry, links as links; a file with another name elsewhere (a hard link the
    sandbox made to a file outside) is not the tree's to give."""
    os.lchown(folder, uid, gid)
    for root, folders, files in os.walk(folder):
        for name in (*folders, *files):
            path = os.path.join(root, name)
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode) or info.st_nlink == 1:
                os.lchown(path, uid, gid)


def _closed_above(paths: list[Path], hidden: list[str]) -> list[str]:
    """The folders above `paths`, outside the hidden ones, that others may not enter (a 0700
    mkdtemp, say): nobody could not reach what is shown below them. Each is hidden too (an
    empty tmpfs, open to enter), and the paths below it are shown again."""
    covered = [Path(h) for h in hidden]
    closed = set()
    for path in paths:
        for folder in Path(path).parents:
            if folder == Path("/") or any(c == folder or c in folder.parents for c in covered):
                continue
            with contextlib.suppress(OSError):
                if not folder.stat().st_mode & stat.S_IXOTH:
                    closed.add(str(folder))
    return sorted(closed)


class Mounts:
    """bwrap's mount options in order, each preceded by the folders above it that lie inside an
    earlier tmpfs, made 0755: bwrap would make them 0700, which uid 65534 could not enter."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.tmpfs: list[Path] = []
        self.made: set[Path] = set()

    def add(self, options: list[str], destination: str) -> None:
        target = Path(destination)
        for folder in reversed(target.parents):
            if folder not in self.made and any(t in folder.parents for t in self.tmpfs):
                self.args += ["--perms", "0755", "--dir", str(folder)]
                self.made.add(folder)
        self.args += options
        self.made.add(target)
        if "--tmpfs" in options:
            self.tmpfs.append(target)
