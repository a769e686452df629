"""Attacks on the sandbox itself, run as whoever runs the tests (CI: root).

Each script is what a hostile candidate (or the agent CLI that writes it) would try. Before the
sandbox ran evaluations as an unprivileged uid with no capability, a candidate started by root
kept every capability (CapEff 000001fffeffffff): it unshared, remounted / read-write, unmounted
the /tmp that hid the host's, and wrote the user's ~/.gitconfig, which the tool's own git then
obeyed.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import sandbox as sandbox_module
from core.sandbox import TOOL, Sandbox, bwrap
from core.study import LimitsConfig
from evaluators.command import clean_env, run_command
from proposers.agent_cli import AgentCliConfig, AgentCliProposer
from steps import doctor
from steps.lab import Lab

pytestmark = pytest.mark.skipif(bwrap() is None, reason="bubblewrap is needed (make installs it)")


class Box:
    """A study's layout as the lab makes it: the checkout, its state folder (hidden) with the
    worktree inside (shown again, read-only), a home of the user's."""

    def __init__(self, root: Path) -> None:
        self.checkout = root / "repo"
        self.state = self.checkout / "runs" / "toy"
        self.worktree = self.state / "worktree"
        self.home = root / "home"
        for folder in (self.worktree / "study", self.checkout / ".git", self.home):
            folder.mkdir(parents=True)
        (self.state / "results.tsv").write_text("commit\tscore\n")
        (self.worktree / "study" / "model.py").write_text("X = 1\n")

    def sandbox(self, **options: object) -> Sandbox:
        return Sandbox(
            worktree=self.worktree,
            hidden=(self.state, self.checkout / ".git"),
            checkout=self.checkout,
            home=self.home,
            **options,  # type: ignore[arg-type]
        )

    def run(self, script: str, timeout_s: float = 30, **options: object) -> tuple[int | None, str]:
        log = self.checkout.parent / "log.txt"
        study = self.worktree / "study"
        code, _, text = run_command(
            script, study, log, timeout_s, clean_env(), sandbox=self.sandbox(**options)
        )
        return code, text


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def test_the_evaluation_has_no_capability_and_cannot_mount_or_unshare(box: Box) -> None:
    code, text = box.run(
        "grep CapEff /proc/self/status; id -u\n"
        "unshare -m true && echo UNSHARED\n"
        "mount -o remount,bind,rw / && echo REMOUNTED\n"
        "umount -l /tmp && echo UNMOUNTED\n"
        "unshare -Urm sh -c 'mount -o remount,bind,rw / && echo NESTED-REMOUNTED;"
        " umount -l /tmp && echo NESTED-UNMOUNTED; umount -l /run && echo RUN-UNMOUNTED'\n"
        "true"
    )
    assert code == 0, text
    assert "CapEff:\t0000000000000000" in text
    for word in ("UNSHARED", "REMOUNTED", "UNMOUNTED", "RUN-UNMOUNTED"):
        assert word not in text.split(), text
    if os.geteuid() == 0:
        assert text.splitlines()[1] == str(sandbox_module.NOBODY)


def test_the_evaluation_writes_nothing_outside_its_private_tmp(box: Box) -> None:
    marker = box.checkout.parent / "outside"
    code, text = box.run(
        f"echo x > {box.worktree}/study/model.py && echo WORKTREE\n"
        f"echo x > {box.state}/results.tsv && echo LEDGER\n"
        f"echo x > {box.checkout}/.git/config && echo GIT\n"
        f"echo x > {marker} && echo OUTSIDE\n"
        "echo x > /etc/autoresearch-attack && echo ETC\n"
        "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' > $HOME/.gitconfig && echo HOME\n"
        "echo x > /tmp/scratch && echo TMP\n"
        "true"
    )
    assert code == 0, text
    written = set(text.split())
    assert {"WORKTREE", "ETC"}.isdisjoint(written), text  # read-only
    assert {"HOME", "TMP"} <= written  # empty, private folders, gone afterwards
    assert (box.state / "results.tsv").read_text() == "commit\tscore\n"
    assert (box.worktree / "study" / "model.py").read_text() == "X = 1\n"
    assert not (box.checkout / ".git" / "config").exists()
    assert not (box.home / ".gitconfig").exists()
    assert not marker.exists() and not Path("/etc/autoresearch-attack").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="what root owns, as root")
def test_as_root_the_evaluation_is_nobody_on_the_host_too(box: Box) -> None:
    """Mapped to the host's root, a uid without capabilities still owns every root-owned file:
    it read /etc/shadow. The evaluation is uid 65534 of the host."""
    secret = box.worktree / "study" / "root-only.txt"
    secret.write_text("only root reads this")
    secret.chmod(0o600)
    code, text = box.run("cat /proc/self/uid_map; cat root-only.txt; head -c 5 /etc/shadow; true")
    assert "only root reads this" not in text, text
    assert "Permission denied" in text
    assert "65534      65534          1" in text, text  # nobody is nobody, outside too


def test_the_tools_own_folder_and_prefect_home_are_hidden(
    box: Box, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / "prefect.db").write_text("every study's logs")
    monkeypatch.setenv("PREFECT_HOME", str(home))
    code, text = box.run(
        f"cat {home}/prefect.db; ls -a {TOOL}; ls {TOOL}/runs && echo RUNS-LISTED; "
        f"python -c 'import core, evaluators; print(\"PACKAGES-IMPORTED\")'"
    )
    assert "every study's logs" not in text
    assert "RUNS-LISTED" not in text and "Makefile" not in text.split()
    assert "PACKAGES-IMPORTED" in text, text  # the evaluation's Python still runs


def test_the_orchestrator_is_out_of_sight(box: Box) -> None:
    """A new PID namespace: the tool's processes cannot be named, let alone traced."""
    me = os.getpid()
    code, text = box.run(
        f"test -e /proc/{me}/mem && echo SEES-TOOL\n"
        "python - <<'EOF'\n"
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"print('PTRACE', libc.ptrace(16, {me}, 0, 0), os.strerror(ctypes.get_errno()))\n"
        "EOF"
    )
    assert "SEES-TOOL" not in text
    assert "PTRACE -1" in text, text


BOMB = """
import subprocess
started = []
for _ in range(150):
    try:
        started.append(subprocess.Popen(["sleep", "30"]))
    except OSError:
        pass
print("STARTED", len(started))
for process in started:  # room again for what the test runs next
    process.kill()
    process.wait()
"""


def test_limits_stop_a_fork_bomb_a_huge_file_and_a_full_tmp(box: Box) -> None:
    limits = LimitsConfig(processes=64, file_mb=1, tmp_mb=2)
    (box.worktree / "study" / "bomb.py").write_text(BOMB)
    code, text = box.run(
        "python bomb.py; "
        "(head -c 3000000 /dev/zero > /dev/shm/big) 2>/dev/null || echo SHM-FULL; "
        "(head -c 1500000 /dev/zero > $HOME/big) 2>/dev/null || echo FILE-CAPPED; "
        "df -k /tmp | tail -1",
        limits=limits,
    )
    started = int(text.split("STARTED")[1].split()[0])
    assert "SHM-FULL" in text and "FILE-CAPPED" in text, text
    assert 10 < started < 64, text
    assert int(text.split()[-5]) <= 2048, text  # /tmp: 2 MB


@pytest.fixture
def loopback_service() -> Iterator[int]:
    """An HTTP service on the host's loopback, as the Prefect API or `autoresearch inbox`."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="slirp4netns (make installs it)")
def test_with_the_network_the_hosts_loopback_is_out_of_reach(
    box: Box, loopback_service: int
) -> None:
    probe = (
        "import socket\n"
        "for host in ('127.0.0.1', '10.0.2.2'):\n"
        "    try:\n"
        f"        socket.create_connection((host, {loopback_service}), timeout=3)\n"
        "        print('REACHED', host)\n"
        "    except OSError as exc:\n"
        "        print('REFUSED', host, exc)\n"
        "print(open('/proc/net/dev').read())\n"
    )
    (box.worktree / "study" / "probe.py").write_text(probe)
    code, text = box.run("python probe.py", network=True)
    assert code == 0, text
    assert "REACHED" not in text and text.count("REFUSED") == 2, text
    assert "tap0" in text  # a network of its own, routed outwards by slirp4netns
    code, text = box.run("python probe.py", network=True, host_loopback=True)
    assert "REACHED 10.0.2.2" in text, text  # an agent's local model server, when asked


AGENT = """
import os, pathlib
state = pathlib.Path("../../resource.md")  # the study's state, beside the worktree
seen = {
    "state": state.exists(),
    "secret": os.environ.get("MY_DB_PASS"),
    "git": pathlib.Path(pathlib.Path("../.git").read_text().split()[1]).exists(),
}
try:
    state.write_text("forged")
except OSError:
    pass
try:
    (pathlib.Path.home() / ".gitconfig").write_text("[core]\\n\\tfsmonitor = touch /tmp/pwned\\n")
except OSError:
    pass
pathlib.Path("model.py").write_text(f"X = 4.0\\n# {seen}\\n")
print("HYPOTHESIS: closer to 3")
"""


def test_an_agent_cli_edits_its_worktree_and_sees_nothing_else(
    make_study, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_study(**{"agent.py": AGENT})
    monkeypatch.setenv("MY_DB_PASS", "hunter2-hunter2")
    gitconfig = Path.home() / ".gitconfig"
    before = gitconfig.read_bytes() if gitconfig.exists() else None
    lab = Lab.open(folder)
    lab.records.resource_path.write_text("what the study learned\n")
    lab.sandboxes.choose("agent_cli")
    agent = AgentCliProposer(
        AgentCliConfig(command=f"{sys.executable} agent.py", timeout_s=60)  # type: ignore[call-arg]
    )
    trial = lab.reserve()
    proposal = lab.propose(agent, trial)
    text = proposal.files["study/model.py"]
    assert text.startswith("X = 4.0"), text
    assert "'state': False" in text and "'secret': None" in text and "'git': False" in text
    assert lab.records.resource_path.read_text() == "what the study learned\n"
    assert (gitconfig.read_bytes() if gitconfig.exists() else None) == before
    assert not Path("/tmp/pwned").exists()


def test_a_candidate_cannot_make_the_tools_git_run_a_program(make_study, tmp_path: Path) -> None:
    """Even with `core.fsmonitor` in a git config (unsandboxed, or the user's own), the tool's
    git commands run no program: they set it off over every file."""
    folder = make_study(yaml_extra="sandbox: false\n")
    lab = Lab.open(folder)
    pwned = tmp_path / "pwned"
    subprocess.run(
        ["git", "-C", str(folder.parent), "config", "core.fsmonitor", f"touch {pwned}"], check=True
    )
    lab.workspace.clean()
    lab.workspace.checkout(lab.records.champion_commit())
    assert not pwned.exists()
    findings = {f.check: f for f in doctor.examine(lab)}
    assert not findings["git config runs no program"].ok  # a person's own git would run it
    assert "core.fsmonitor" in findings["git config runs no program"].detail


def test_the_study_state_is_private_and_doctor_says_when_it_is_not(make_study) -> None:
    lab = Lab.open(make_study())
    assert lab.study.state_dir.stat().st_mode & 0o777 == 0o700
    lab.study.state_dir.chmod(0o755)
    findings = {f.check: f for f in doctor.examine(lab)}
    assert not findings["study state private (0700)"].ok
    doctor.fix(lab)
    assert lab.study.state_dir.stat().st_mode & 0o777 == 0o700


def test_the_sandbox_cost_benchmark_runs() -> None:
    """bench/overhead.py --sandbox, smoke mode: one run each way."""
    bench = Path(__file__).resolve().parent.parent / "bench" / "overhead.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--sandbox", "-n", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "no-op evaluation, sandboxed" in out.stdout
