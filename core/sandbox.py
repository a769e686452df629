"""Where a candidate's code runs: a bubblewrap (bwrap) sandbox around every evaluation.

What the evaluation sees: the whole file system read-only; the candidate's worktree read-only
(its protected files with it); a private, empty, writable /tmp (TMPDIR) and home; no study
state (results.tsv, state.json, resource.md, logs, locks, the other worktrees), no `.git` of the
repository, no $HOME of the user (but the Python it runs on); a new PID namespace, so that every
process it starts, setsid() daemons included, dies with it; no network unless the study asks
for it. Its environment is what the caller passes (no secrets: see core.secrets.safe_environ).

Without bwrap (macOS, a container that forbids user namespaces) a study must say
`sandbox: false`; only the offline `mutate` and `optuna` proposers, which change nothing but
numbers in the study's own files, may then run unsandboxed with a notice.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HIDDEN_ROOTS = ("/home", "/root", "/var/tmp", "/tmp")  # besides /run, $HOME and the checkout
RESOLVER = "/run/systemd/resolve"  # where /etc/resolv.conf points on systemd hosts
DEVICES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
           "/dev/nvidia-modeset", "/dev/dri", "/dev/kfd")  # fmt: skip
INSTALL = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf "
    "install bubblewrap`), or, to run candidates unsandboxed (not for code written by a model), "
    "set `sandbox: false` in study.yaml"
)


class SandboxUnavailable(RuntimeError):
    """bwrap is missing or cannot run here; the message says why and what to do."""

    exit_code = 2


@functools.cache
def bwrap() -> str | None:
    """The path of a working bwrap, or None: missing, or refused by the kernel or a container."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    probe = subprocess.run(
        [path, "--ro-bind", "/", "/", "--unshare-pid", "--die-with-parent", "true"],
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
    ours = Path(__file__).resolve().parent.parent
    packages = [p for p in ours.iterdir() if (p / "__init__.py").is_file()]
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent}
    return sorted(p.resolve() for p in (*roots, *packages) if p.exists())


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

    def wrap(self, argv: list[str], cwd: Path) -> list[str]:
        """argv as run inside the sandbox, starting in cwd."""
        args = [require(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for device in DEVICES:  # GPUs stay usable
            args += ["--dev-bind-try", device, device]
        hidden = [*HIDDEN_ROOTS, "/run", str(self.home)]
        if self.checkout is not None:
            hidden.append(str(self.checkout))
        for root in hidden:
            if Path(root).is_dir():
                args += ["--tmpfs", root]
        if self.network:  # name resolution, and nothing else of /run (no docker.sock)
            args += ["--ro-bind-try", RESOLVER, RESOLVER]
        for path in (*_python_roots(), *self.readable):
            args += ["--ro-bind-try", str(path), str(path)]
        for path in self.hidden:
            args += ["--tmpfs", str(path)]
        args += ["--ro-bind", str(self.worktree), str(self.worktree)]
        for path in self.writable:
            path.mkdir(parents=True, exist_ok=True)
            args += ["--bind", str(path), str(path)]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not self.network:
            args.append("--unshare-net")
        args += ["--die-with-parent", "--new-session", "--chdir", str(cwd)]
        args += ["--setenv", "TMPDIR", "/tmp", "--setenv", "HOME", str(self.home), "--"]
        return args + argv
