"""Candidates that attack the scorer itself, from the child it runs them in (issue 16, 1 and 8).

A study's evaluator script scores outside the candidate's process (evaluators.isolate), but the
child used to run as the same uid in the same sandbox: it opened /proc/<scorer>/fd/1 (the
evaluator's pipe) to print a fake metric line and wrote over the real line's `rmse: ` through
/proc/<scorer>/mem, read the validation data beside the model, or rewrote the pass rate the
scorer read from a file. Each candidate here goes through the real CommandEvaluator: with no
sandbox around the evaluation, in the tool's own sandbox (core.sandbox), and in a bare stand-in
for it (uid 65534 in a user namespace of its own, every capability dropped, user namespaces
left to it), with and without a bwrap for run_child there (without: PR_SET_DUMPABLE alone).
The recorded metric must be the candidate's true one, or the evaluation a crash; never forged.
Each of these tests failed against the previous run_child and the previous cooling and flaky-tests.

Every attack is aimed at this test's own processes only (the child's ancestors below pytest),
never at another process of a shared machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from core.sandbox import Sandbox
from core.sandbox import bwrap as tool_bwrap
from evaluators.base import Measurement
from evaluators.command import CommandConfig, CommandEvaluator
from evaluators.isolate import REAPER, nested_bwrap
from tests.conftest import ROOT, commit_all

FAKE = "0.000123"
BWRAP = shutil.which("bwrap")


def _outer_works() -> bool:
    """Can this machine make the stand-in for the tool's next sandbox?"""
    if BWRAP is None:
        return False
    probe = [BWRAP, "--ro-bind", "/", "/", "--unshare-user", "--uid", "65534", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


OUTER_WORKS = _outer_works()
NO_OUTER, TOOL, OUTER, OUTER_NO_BWRAP = "no sandbox", "tool's sandbox", "outer", "outer, no bwrap"
MODES = [
    pytest.param(NO_OUTER, marks=pytest.mark.skipif(not nested_bwrap(), reason="needs bwrap")),
    pytest.param(TOOL, marks=pytest.mark.skipif(not tool_bwrap(), reason="needs bwrap")),
    pytest.param(OUTER, marks=pytest.mark.skipif(not OUTER_WORKS, reason="needs user ns")),
    pytest.param(OUTER_NO_BWRAP, marks=pytest.mark.skipif(not OUTER_WORKS, reason="ditto")),
]


def outer(folder: Path, command: str, bwrap_inside: bool) -> str:
    """command in the stand-in for the tool's next sandbox: uid 65534 in a user namespace of
    its own, no capabilities, a new PID namespace, /tmp empty but for the study folder and our
    own (a checkout under /tmp, as a CI clone may be, holds our packages and venv)."""
    args = [BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    args += ["--ro-bind", str(ROOT), str(ROOT), "--ro-bind", str(folder), str(folder)]
    if not bwrap_inside:  # run_child falls back to PR_SET_DUMPABLE alone
        args += ["--ro-bind", "/dev/null", str(Path(str(BWRAP)).resolve())]
    args += ["--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL"]
    args += ["--unshare-pid", "--die-with-parent", "--new-session", "--chdir", str(folder), "--"]
    return shlex.join(args) + " " + command


def evaluate(folder: Path, command: str, metric: str, mode: str) -> tuple[Measurement, str]:
    """The study's command through the CommandEvaluator, in `mode`; the measurement and log."""
    sandbox = None
    if mode == TOOL:
        sandbox = Sandbox(worktree=folder, hidden=(folder.parent / ".git",))
    elif mode in (OUTER, OUTER_NO_BWRAP):
        command = outer(folder, command, bwrap_inside=mode == OUTER)
    env = {"ATTACK_STOP": str(os.getpid())}  # the attacks stop at pytest
    config = CommandConfig(command=command, timeout_s=120, env=env)
    log = folder.parent / "logs" / f"{len(list(folder.parent.glob('logs/*')))}.log"
    m = CommandEvaluator(config, metric).evaluate(folder, log, sandbox=sandbox)
    return m, log.read_text()


def not_forged(m: Measurement, true: float, log: str, mode: str) -> None:
    """The true metric, or (where the child can still reach a process above the scorer: the
    stand-in sandbox's pid 1, without a nested sandbox) a crash; never the forged value."""
    assert m.metric is None or abs(m.metric - float(FAKE)) > 1e-9, log
    if mode == OUTER_NO_BWRAP and m.status == "crash":
        return
    assert m.status == "ok", log
    assert m.metric == pytest.approx(true, abs=1e-6), log


# cooling: the scorer's pipe and memory -------------------------------------------------------

SLOPPY = "\nSTART_C = 70.0  # a worse model: the fake must beat it by far\n"
ANCESTORS = """
import os as _os


def _ancestors():
    '''The child's ancestors up to pytest (or the top of its PID namespace): this test only.'''
    stop, pid, found = int(_os.environ.get("ATTACK_STOP", "0")), _os.getppid(), []
    while pid > 0 and pid != stop:
        found.append(pid)
        try:
            with open(f"/proc/{pid}/stat") as stat:
                pid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
    return found
"""
FORGE = (
    ANCESTORS
    + """

def _forge():
    import re
    import stat

    pids = _ancestors()
    seen = [p for p in _os.listdir("/proc") if p.isdigit()]
    print(f"parent {_os.getppid()}, ancestors {pids}, /proc shows {len(seen)} processes")
    for pid in pids:
        try:  # "rmse: " in its memory becomes "rmsX: ": the real line no longer parses
            with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "r+b", 0) as mem:
                hits = 0
                for line in maps.read().splitlines():
                    span, perms = line.split()[:2]
                    start, end = (int(x, 16) for x in span.split("-"))
                    if perms.startswith("rw") and end - start < 2**28:
                        try:
                            mem.seek(start)
                            data = mem.read(end - start)
                        except OSError:
                            continue
                        for found in re.finditer(b"rmse: ", data):
                            mem.seek(start + found.start())
                            hits += mem.write(b"rmsX: ") > 0
                print(f"mem of {pid}: {hits} overwritten")
        except OSError as exc:
            print(f"mem of {pid}: {exc.strerror}")
        try:  # and a fake line into every pipe it holds: the evaluator's among them
            fds = _os.listdir(f"/proc/{pid}/fd")
        except OSError as exc:
            print(f"fds of {pid}: {exc.strerror}")
            continue
        opened = 0
        for fd in fds:
            try:
                out = _os.open(f"/proc/{pid}/fd/{fd}", _os.O_WRONLY | _os.O_NONBLOCK)
            except OSError:
                continue
            opened += 1
            if stat.S_ISFIFO(_os.fstat(out).st_mode):
                _os.write(out, b"\\nrmse: FAKE\\n")
                print(f"wrote into fd {fd} of {pid}")
            _os.close(out)
        print(f"fds of {pid}: {opened} of {len(fds)} opened")


_forge()
""".replace("FAKE", FAKE)
)


class Attack(NamedTuple):
    m: Measurement  # what was recorded
    log: str
    true: float  # the model's rmse, evaluated honestly
    folder: Path
    model: str  # the honest model.py


def cooling_copy(tmp_path: Path, mode: str) -> Path:
    """The cooling study: a plain copy, or (for the tool's sandbox) one in a git repository."""
    folder = tmp_path / "repo" / "cooling"
    shutil.copytree(ROOT / "artifacts" / "cooling", folder, ignore=shutil.ignore_patterns("runs"))
    if mode == TOOL:
        commit_all(folder.parent)
    return folder


def true_rmse(folder: Path, model: str) -> float:
    """The rmse of `model` evaluated honestly, with nothing around it."""
    (folder / "model.py").write_text(model)
    m, log = evaluate(folder, "python evaluate.py", "rmse", NO_OUTER)
    assert m.status == "ok" and m.metric is not None, log
    return m.metric


def attack(tmp_path: Path, mode: str, hostile: str, model_extra: str = "") -> Attack:
    """cooling's model (plus `model_extra`) with `hostile` appended, evaluated in `mode`."""
    folder = cooling_copy(tmp_path, mode)
    model = (folder / "model.py").read_text() + model_extra
    true = true_rmse(folder, model)
    (folder / "model.py").write_text(model + hostile)
    m, log = evaluate(folder, "python evaluate.py", "rmse", mode)
    return Attack(m, log, true, folder, model)


@pytest.mark.parametrize("mode", MODES)
def test_the_scorer_pipe_and_memory_are_out_of_the_child_reach(tmp_path: Path, mode: str) -> None:
    m, log, true, _, _ = attack(tmp_path, mode, FORGE, model_extra=SLOPPY)
    assert true > 1.0
    not_forged(m, true, log, mode)
    assert "overwritten" not in log.replace("0 overwritten", "")
    if mode != OUTER_NO_BWRAP:  # nested: the child sees no process at all
        assert "/proc shows 0 processes" in log and "| fds of 1: No such file" in log, log
    else:  # PR_SET_DUMPABLE: the scorer's fds and memory are closed to its uid
        found = re.search(r"\| parent (\d+), ", log)
        assert found, log
        scorer = found.group(1)
        assert f"| fds of {scorer}: 0 of " in log, log
        assert f"| mem of {scorer}: Permission denied" in log, log


# cooling: the data it is scored on -----------------------------------------------------------

READER = (
    ANCESTORS
    + """
import csv as _csv
import glob as _glob
import os as _os
import subprocess as _subprocess

_here = _os.path.dirname(_os.path.abspath(__file__))
_seen = {}
_paths = _glob.glob(_os.path.join(_here, "**", "*.csv"), recursive=True)
for _pid in _ancestors():  # the scorer's folder, as the scorer sees it
    _paths += _glob.glob(f"/proc/{_pid}/cwd/**/*.csv", recursive=True)
for _path in _paths:
    try:
        with open(_path) as _f:
            _seen.update({float(r["minute"]): float(r["temp_c"]) for r in _csv.DictReader(_f)})
    except (OSError, KeyError, ValueError):
        pass
for _name in ("cooling/scoring/valid.csv", "cooling/data/valid.csv"):  # its history
    _git = _subprocess.run(["git", "show", f"HEAD:{_name}"], capture_output=True, text=True)
    for _row in _git.stdout.splitlines()[1:]:
        _minute, _temp = _row.split(",")
        _seen[float(_minute)] = float(_temp)
print(f"read {len(_seen)} measurements from {len(_paths)} files")
_honest = predict


def predict(minute):
    return _seen.get(minute, _honest(minute))
"""
)


@pytest.mark.parametrize("mode", [p for p in MODES if p.values[0] != OUTER_NO_BWRAP])
def test_the_validation_data_is_out_of_the_child_view(tmp_path: Path, mode: str) -> None:
    m, log, true, _, _ = attack(tmp_path, mode, READER)
    assert m.status == "ok" and m.metric == pytest.approx(true, abs=1e-6), log
    assert "| read 16 measurements from 1 files" in log  # data/train.csv alone


# cooling: unshare, ptrace, kill ---------------------------------------------------------------

ESCAPE = (
    ANCESTORS
    + """
import ctypes as _ctypes
import subprocess as _subprocess

print(f"parent {_os.getppid()}, visible {[p for p in _os.listdir('/proc') if p.isdigit()]}")
_done = _subprocess.run(["unshare", "-Urm", "true"], capture_output=True)
print(f"unshare: {'worked' if _done.returncode == 0 else 'failed'}")
_libc = _ctypes.CDLL(None, use_errno=True)
for _pid in _ancestors():
    if _libc.ptrace(0x4206, _pid, 0, 0) == 0:  # PTRACE_SEIZE: traced, not stopped
        print(f"ptrace of {_pid}: attached")
    else:
        print(f"ptrace of {_pid}: {_os.strerror(_ctypes.get_errno())}")
"""
)
KILL = (
    ANCESTORS
    + """
import signal as _signal

for _pid in _ancestors():  # nested: [1], the init of its own sandbox
    try:
        _os.kill(_pid, _signal.SIGKILL)
        print(f"killed {_pid}")
    except OSError as _exc:
        print(f"kill of {_pid}: {_exc.strerror}")
"""
)


@pytest.mark.parametrize("mode", MODES)
def test_no_namespace_no_ptrace_and_a_kill_is_a_crash(tmp_path: Path, mode: str) -> None:
    m, log, true, folder, model = attack(tmp_path, mode, ESCAPE)
    not_forged(m, true, log, mode)
    assert ("| unshare: failed" in log) == (mode != OUTER_NO_BWRAP), log
    if mode == OUTER_NO_BWRAP:  # the scorer is pid 2, and not dumpable
        assert "| ptrace of 2: Operation not permitted" in log, log
    else:  # the one process it can name is the init of its own sandbox
        assert "| parent 1, visible []" in log and "| ptrace of 1: Operation not permitted" in log

    (folder / "model.py").write_text(model + KILL)
    m, log = evaluate(folder, "python evaluate.py", "rmse", mode)
    assert m.status == "crash" or m.metric == pytest.approx(true, abs=1e-6), log


# flaky-tests: the pass rate ------------------------------------------------------------------

ALWAYS_FAILS = '''

def price(sku: str) -> int:
    """Broken for good: test_price_of_a_known_tea fails in every run."""
    raise KeyError(sku)
'''
ATEXIT = """

import atexit as _atexit
import json as _json
import os as _os
import sys as _sys


@_atexit.register
def _all_passed():
    folder = _sys.argv[-1]
    for name, text in (("results.json", _json.dumps([{}] * 40)), ("failures.json", "{}")):
        if _os.path.exists(_os.path.join(folder, name)):
            with open(_os.path.join(folder, name), "w") as out:
                out.write(text)
    _os._exit(0)
"""


@pytest.mark.parametrize("mode", [p for p in MODES if p.values[0] in (NO_OUTER, OUTER)])
def test_an_atexit_hook_cannot_rewrite_the_pass_rate(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "repo" / "flaky-tests"
    shutil.copytree(ROOT / "artifacts" / "flaky-tests", folder)
    shop = folder / "shop.py"
    shop.write_text(shop.read_text() + ALWAYS_FAILS + ATEXIT)
    m, log = evaluate(folder, "python evaluate.py", "pass_rate", mode)
    assert m.status == "ok" and m.metric == 0.0, log
    assert m.secondary["successes"] == 0 and m.secondary["trials"] == 40
    assert "failed in 40 of 40 runs: test_price_of_a_known_tea: KeyError: 'sencha'" in log


# run_child's sandbox itself -------------------------------------------------------------------

SCORER = """
import json, resource, sys, tempfile
from pathlib import Path
from evaluators.isolate import run_child

folder, secret, secrets = (Path(p) for p in sys.argv[1:4])
child = '''
import json, os, sys, time
from pathlib import Path
folder, secret, secrets = (Path(p) for p in sys.argv[1:4])
seen = {"tmpdir": os.environ["TMPDIR"]}
tmp = Path(os.environ["TMPDIR"]) / "x"
for name, path in [("folder", folder / "out"), ("cwd", Path("planted")), ("tmp", tmp)]:
    try:
        path.write_text("x")
        seen[name] = "written"
    except OSError as exc:
        seen[name] = exc.strerror
try:
    seen["secret"] = secret.read_text()
except OSError as exc:
    seen["secret"] = exc.strerror
seen["secrets"] = sorted(os.listdir(secrets))
(folder / "seen.json").write_text(json.dumps(seen))
if os.fork() == 0:  # a daemon that does the work, then outlives the child until killed
    os.setsid()
    started = time.process_time()
    while time.process_time() - started < 0.3:
        pass
    time.sleep(30)
    os._exit(0)
time.sleep(1.0)
'''
usage = lambda: sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
before = usage()
argv = [sys.executable, "-c", child, *sys.argv[1:4]]
code = run_child(argv, folder.parent, 20, private=[secret, secrets])  # writable: argv's folders
print(json.dumps({"code": code, "cpu": usage() - before, "tmp": tempfile.gettempdir()}))
"""


@pytest.mark.skipif(not nested_bwrap(), reason="needs bwrap")
def test_the_child_writes_only_where_it_may_and_its_daemons_cpu_counts(tmp_path: Path) -> None:
    folder, secrets = tmp_path / "folder", tmp_path / "secrets"
    folder.mkdir()
    secrets.mkdir()
    (secrets / "valid.csv").write_text("minute,temp_c\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("the answers")
    argv = [sys.executable, "-c", SCORER, str(folder), str(secret), str(secrets)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    seen = json.loads((folder / "seen.json").read_text())
    assert result["code"] == 0
    assert seen["folder"] == "written" and (folder / "out").read_text() == "x"
    assert seen["cwd"] == "Read-only file system" and not (tmp_path / "planted").exists()
    assert seen["tmp"] == "written" and seen["tmpdir"].startswith(result["tmp"])
    assert not Path(seen["tmpdir"]).exists()  # its TMPDIR went with it
    assert seen["secret"] == "Permission denied" and seen["secrets"] == []
    assert result["cpu"] > 0.3  # the daemon's CPU time counts, though the sandbox killed it


@pytest.mark.skipif(not nested_bwrap(), reason="needs bwrap")
def test_the_reaper_kills_nothing_unless_it_is_its_namespace_init() -> None:
    """Its kill(-1) outside a sandbox would reach every process of the user (of the machine, as
    root): it must refuse to run as any pid but 1. Tried as pid 2 of a fresh PID namespace, so
    that a broken guard kills nothing but itself."""
    bwrap = str(nested_bwrap()[0])  # type: ignore[index]
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid"]
    argv += ["--", sys.executable, "-S", "-I", "-c", REAPER, "true"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "runs only as the init" in done.stderr
