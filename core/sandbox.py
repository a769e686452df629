"""Where a candidate's code runs: a bubblewrap (bwrap) sandbox around every evaluation.

Whoever runs the tool, the evaluation runs unprivileged: in a user namespace of its own, as uid
65534 when the tool runs as root, with every capability dropped and no new privileges, so that
it cannot mount, unmount, remount, ptrace anything outside, or write outside what it is given.
A nested sandbox stays possible (a study's scorer puts its candidate in one: evaluators.isolate);
the mounts it inherits are locked, so a nested namespace gains nothing.

What the evaluation sees: the whole file system read-only; the candidate's worktree read-only
(its protected files with it); a private, empty, writable, size-capped /tmp (TMPDIR), /dev/shm
and home; no study state (results.tsv, state.json, resource.md, logs, locks, the other
worktrees), no `.git` of the repository, no $HOME of the user, nothing of the tool's own folder
and Prefect home (but the Python it runs on and our packages); a new PID namespace, so that every
process it starts, setsid() daemons included, dies with it; limits on processes, memory, file
size and open files (`limits:` in study.yaml). No network unless the study asks for it; then a
network namespace of its own with outbound access through slirp4netns (core/netns.py), and the
host's loopback out of reach. Its environment is what the caller passes: an allowlist
(core.secrets.allowed_environ).

Without bwrap (macOS, a container that forbids user namespaces) a study must say
`sandbox: false`; only the offline `mutate` and `optuna` proposers, which change nothing but
numbers in the study's own files, may then run unsandboxed with a notice.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.study import LimitsConfig

HIDDEN_ROOTS = ("/home", "/root", "/var/tmp", "/tmp", "/run")  # besides $HOME and the checkout
TOOL = Path(__file__).resolve().parent.parent  # our own folder: its runs/ and .prefect/ hidden
NOBODY = "65534"  # who the evaluation is when the tool runs as root
DEVICES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
           "/dev/nvidia-modeset", "/dev/dri", "/dev/kfd")  # fmt: skip
NETNS = Path(__file__).with_name("netns.py")
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


def _identity() -> list[str]:
    """A user namespace of its own; as root, an unprivileged uid in it and no capabilities."""
    if os.geteuid() != 0:
        return ["--unshare-user"]  # bwrap gives an unprivileged user no capability
    return ["--unshare-user", "--uid", NOBODY, "--gid", NOBODY, "--cap-drop", "ALL"]


@functools.cache
def bwrap() -> str | None:
    """The path of a working bwrap, or None: missing, or refused by the kernel or a container."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    probe = subprocess.run(
        [path, "--ro-bind", "/", "/", *_identity(), "--unshare-pid", "--die-with-parent", "true"],
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
    """The tool's own folder and its Prefect home, wherever the study lives."""
    homes = [TOOL]
    if prefect_home := os.environ.get("PREFECT_HOME"):
        homes.append(Path(prefect_home).expanduser().resolve())
    return homes


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

    def _tmpfs(self, path: str) -> list[str]:
        size = self.limits.tmp_mb
        return (["--size", str(size * 2**20)] if size else []) + ["--tmpfs", path]

    def wrap(self, argv: list[str], cwd: Path) -> list[str]:
        """argv as run inside the sandbox, starting in cwd."""
        args = [require(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for device in DEVICES:  # GPUs stay usable
            args += ["--dev-bind-try", device, device]
        args += self._tmpfs("/dev/shm")
        hidden = [*HIDDEN_ROOTS, str(self.home), *map(str, tool_homes())]
        if self.checkout is not None:
            hidden.append(str(self.checkout))
        for root in hidden:
            if Path(root).is_dir():
                args += self._tmpfs(root)
        for path in (*_python_roots(), *self.readable):
            args += ["--ro-bind-try", str(path), str(path)]
        for path in self.hidden:
            args += self._tmpfs(str(path))
        args += ["--ro-bind", str(self.worktree), str(self.worktree)]
        for path in self.writable:
            path.mkdir(parents=True, exist_ok=True)
            args += ["--bind", str(path), str(path)]
        args += [*_identity(), "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        args += ["--chdir", str(cwd), "--setenv", "TMPDIR", "/tmp"]
        args += ["--setenv", "HOME", str(self.home), "--", *rlimits(self.limits)]
        if not self.network:
            return [args[0], "--unshare-net", *args[1:], *argv]
        launcher = [sys.executable, "-I", str(NETNS)]
        launcher += ["--host-loopback"] if self.host_loopback else []
        launcher.append(require_network())
        return [*launcher, *args, *argv]
