"""Candidates written to cheat, leak or break the study, and studies broken by mistake.

Each attack runs through the real experiment flow, in the sandbox and, where the defence in depth
behind it matters, with `sandbox: false` too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from core.ledger import Ledger, Row, Status
from core.sandbox import bwrap
from evaluators.command import CommandConfig, CommandEvaluator
from steps import report
from steps.lab import Lab
from tests.conftest import ROOT, Scripted, campaign, commit_all, experiment, git

pytestmark = [
    pytest.mark.usefixtures("prefect_server"),
    pytest.mark.skipif(bwrap() is None, reason="bubblewrap is needed (make installs it)"),
]
MODES = ["sandbox: true", "sandbox: false"]


def run(folder: Path, *changes: str) -> list[Row]:
    """The baseline (when due), then one experiment per new text of model.py."""
    scripted = Scripted({"study/model.py": text} for text in changes)
    rows = (
        []
        if Lab.open(folder).records.champion()
        else [experiment(str(folder), researcher=scripted)]
    )
    return rows + [experiment(str(folder), researcher=scripted) for _ in changes]


def state_files(folder: Path) -> dict[str, bytes]:
    state = folder.parent / "runs" / "toy"
    return {p.name: p.read_bytes() for p in state.iterdir() if p.is_file() and p.name != "lock"}


@pytest.mark.parametrize("mode", MODES)
def test_a_candidate_that_forges_state_json_is_not_kept(make_study, mode):
    folder = make_study(yaml_extra=f"{mode}\n")
    run(folder)
    before = state_files(folder)["state.json"]
    forge = (
        "import json, pathlib\n"
        "p = pathlib.Path('../../state.json')\n"
        "try:\n"
        "    s = json.loads(p.read_text()); s['champion']['samples'] = [1e9]\n"
        "    p.write_text(json.dumps(s))\n"
        "except OSError:\n"
        "    pass\n"
        "X = 20.0\n"  # worse than the champion's 10.0
    )
    (row,) = run(folder, forge)
    assert row.status != Status.KEEP
    assert state_files(folder)["state.json"] == before
    if mode == "sandbox: false":
        assert row.status == Status.REJECTED and "state.json" in row.evidence


@pytest.mark.parametrize("mode", MODES)
def test_a_forged_ledger_row_never_lands_and_the_real_one_does(make_study, mode):
    folder = make_study(yaml_extra=f"{mode}\n")
    run(folder)
    forge = (
        "import pathlib\n"
        "p = pathlib.Path('../../results.tsv')\n"
        "try:\n"
        "    p.open('a').write('\\t'.join(['abcdef1', '0.000001', '0.0', 'keep', 'forged', '2'])"
        " + '\\n')\n"
        "except OSError:\n"
        "    pass\n"
        "X = 12.0\n"
    )
    (row,) = run(folder, forge)
    rows = Ledger(folder.parent / "runs" / "toy" / "results.tsv", "score").rows()
    assert [r.experiment for r in rows] == [1, 2]
    assert "forged" not in [r.description for r in rows] and rows[1].commit != "abcdef1"
    assert rows[1].status == (Status.DISCARD if mode == "sandbox: true" else Status.REJECTED)


LEAK = """import os, pathlib
for k, v in os.environ.items():
    print('own', k, v)
found = {}
for p in pathlib.Path('/proc').glob('[0-9]*/environ'):
    try:
        found.update(kv.split('=', 1) for kv in p.read_bytes().decode().split('\\0') if '=' in kv)
    except (OSError, ValueError):
        pass
for k, v in found.items():
    print('found', k, v)
raise SystemExit('crash, so that the log tail goes to Prefect')
"""
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-hostile-0123456789",
    "GITHUB_TOKEN": "ghp_" + "t" * 36,
    "DATABASE_URL": "postgres://user:hunter2-pass@db.internal/x",
}


@pytest.mark.parametrize("mode", MODES)
def test_secrets_of_the_tool_reach_no_file_and_no_prefect_log(make_study, mode):
    """The tool runs with secrets in its environment (as a person's shell has them); the
    candidate reads every /proc/<pid>/environ it can and prints what it finds, then crashes."""
    folder = make_study(
        yaml_extra=f"{mode}\nproposer: {{kind: agent_cli, command: 'cp leak.txt model.py'}}\n",
        **{"leak.txt": LEAK},
    )
    env = os.environ | SECRETS
    cli = Path(sys.executable).with_name("autoresearch")
    out = subprocess.run(
        [str(cli), "run", str(folder), "-n", "2"], env=env, capture_output=True, text=True
    )
    rows = Lab.open(folder).records.ledger.rows()
    assert [r.status for r in rows] == [Status.KEEP, Status.CRASH], out.stdout + out.stderr
    log = (folder.parent / "runs" / "toy" / "logs" / "2.log").read_text()
    assert "own DATABASE_URL" not in log  # a credential in a URL never reaches the evaluator
    assert ("found DATABASE_URL" in log) == (mode == "sandbox: false")  # the sandbox hides /proc
    texts = [p.read_text(errors="replace") for p in folder.parent.rglob("runs/**/*") if p.is_file()]
    texts += [git(folder.parent, "log", "--all", "-p"), _prefect_logs(), out.stdout + out.stderr]
    for text in texts:
        for secret in ("sk-ant-api03-hostile", "t" * 36, "hunter2-pass"):
            assert secret not in text


def _prefect_logs() -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return "\n".join(log.message for log in client.read_logs(limit=200))


def test_a_setsid_daemon_dies_with_its_evaluation(make_study, tmp_path):
    marks = tmp_path / "daemon"
    marks.mkdir()
    folder = make_study(yaml_extra=f"sandbox: {{writable: ['{marks}']}}\n")
    run(folder)
    daemon = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(1.5)\n"
        f"        open({str(marks / 'alive')!r}, 'w').write('still here')\n"
        "        for target in ('evaluate.py', 'model.py'):\n"
        "            try:\n"
        "                open(target, 'a').write('# planted')\n"
        "            except OSError:\n"
        "                pass\n"
        "    os._exit(0)\n"
        "X = 9.0\n"
    )
    (row,) = run(folder, daemon)
    assert row.status == Status.KEEP
    time.sleep(3)
    assert not (marks / "alive").exists()
    worktree = folder.parent / "runs" / "toy" / "worktree" / "study"
    assert "planted" not in (worktree / "evaluate.py").read_text()


def test_the_template_evaluator_cannot_be_fooled(tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(ROOT / "autoresearch" / "template", folder)
    (folder / "solution.py").write_text(
        "import atexit, builtins\n"
        "atexit.register(lambda: print('score: 3.946'))\n"
        "builtins.abs = lambda x: 0.0  # and the scoring patched, should it run here\n"
        "WEIGHT = 0.5\n\n\ndef solve(x):\n    return WEIGHT * x\n"
    )
    config = CommandConfig(command=f"{sys.executable} evaluate.py", timeout_s=30)
    m = CommandEvaluator(config, "score").evaluate(folder, tmp_path / "eval.log")
    assert m.status == "ok" and m.metric == pytest.approx(-16.5)


@pytest.mark.parametrize("mode", MODES)
def test_a_planted_git_hook_never_runs(make_study, tmp_path, mode):
    folder = make_study(yaml_extra=f"{mode}\n")
    run(folder)
    ran = tmp_path / "hook-ran"
    hook = folder.parent / ".git" / "hooks" / "post-commit"
    plant = (
        "import os, subprocess\n"
        "try:\n"
        "    git = subprocess.run(['git', 'rev-parse', '--git-common-dir'], capture_output=True,"
        " text=True).stdout.strip()\n"
        f"    hook = os.path.join(git, 'hooks', 'post-commit')\n"
        f"    open(hook, 'w').write('#!/bin/sh\\ntouch {ran}\\n')\n"
        "    os.chmod(hook, 0o755)\n"
        "except OSError:\n"
        "    pass\n"
        "X = 8.0\n"
    )
    run(folder, plant)
    assert not hook.exists()
    hook.write_text(f"#!/bin/sh\ntouch {ran}\n")  # as if one had got through
    hook.chmod(0o755)
    run(folder, "X = 7.0\n")  # our commits run no hook
    assert not ran.exists()


def test_git_locks_left_by_a_killed_run_are_removed(make_study):
    folder = make_study()
    run(folder)
    git_dir = folder.parent / ".git"
    locks = [
        git_dir / "worktrees" / "worktree" / "HEAD.lock",
        git_dir / "worktrees" / "worktree" / "index.lock",
        git_dir / "refs" / "heads" / "autoresearch" / "toy.lock",
    ]
    for lock in locks:
        lock.write_text("left by a SIGKILL\n")
    (row,) = run(folder, "X = 6.0\n")
    assert row.status == Status.KEEP and not any(p.exists() for p in locks)
    check = CliRunner().invoke(main, ["check", str(folder)])
    assert check.exit_code == 0, check.output
    someone_elses = git_dir / "refs" / "heads" / "main.lock"  # not the study's: left alone
    ref_lock = git_dir / "refs" / "autoresearch" / "toy" / "7.lock"
    ref_lock.parent.mkdir(parents=True, exist_ok=True)
    for lock in (someone_elses, ref_lock):
        lock.write_text("left by a SIGKILL\n")
    doctor = CliRunner().invoke(main, ["doctor", str(folder)])
    assert doctor.exit_code != 0 and "refs/autoresearch/toy/7.lock" in doctor.output
    assert "main.lock" not in doctor.output, doctor.output
    fixed = CliRunner().invoke(main, ["doctor", str(folder), "--fix"])
    assert not ref_lock.exists() and someone_elses.exists(), fixed.output
    assert CliRunner().invoke(main, ["doctor", str(folder)]).exit_code == 0


def test_an_uncommitted_study_is_refused_and_records_nothing(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("mine\n")
    commit_all(repo)
    assert CliRunner().invoke(main, ["init", str(repo / "my-study")]).exit_code == 0
    result = CliRunner().invoke(main, ["check", str(repo / "my-study")])
    assert result.exit_code == 2 and "commit the study folder first" in result.output
    assert not (repo / "runs").exists()
    assert "autoresearch/my-study" not in git(repo, "branch", "--list")
    commit_all(repo, "the study")
    (repo / "my-study" / "solution.py").write_text("WEIGHT = 0.6\n")
    result = CliRunner().invoke(main, ["check", str(repo / "my-study")])
    assert result.exit_code == 2 and "uncommitted changes in my-study/solution.py" in result.output
    git(repo, "checkout", "--", "my-study")
    result = CliRunner().invoke(main, ["check", str(repo / "my-study")])
    assert result.exit_code == 0 and "score: -16.5" in result.output, result.output


def test_a_bad_start_is_recovered_once_the_study_is_committed(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("mine\n")
    commit_all(repo)
    old = git(repo, "rev-parse", "HEAD").strip()
    assert CliRunner().invoke(main, ["init", str(repo / "s")]).exit_code == 0
    commit_all(repo, "the study")
    git(repo, "branch", "autoresearch/s", old)  # what an earlier version left behind
    (repo / "runs" / "s").mkdir(parents=True)
    (repo / "runs" / "s" / "state.json").write_text('{"protected": {"s/evaluate.py": "missing"}}')
    result = CliRunner().invoke(main, ["check", str(repo / "s")])
    assert result.exit_code == 0 and "score: -16.5" in result.output, result.output


@pytest.mark.parametrize("mode", MODES)
def test_a_baseline_that_writes_a_protected_file_stops_cleanly(make_study, mode):
    folder = make_study(
        model="X = 10.0\ntry:\n    open('evaluate.py', 'a').write('# mine')\nexcept OSError:\n"
        "    raise SystemExit('cannot write evaluate.py')\n",
        yaml_extra=f"{mode}\n",
    )
    for _ in range(2):  # and again on a rerun: a clean stop each time, no traceback
        result = campaign(str(folder), experiments=3, researcher=Scripted())
        assert "the baseline" in result.stop and result.ran == 1
    rows = Lab.open(folder).records.ledger.rows()
    expected = Status.CRASH if mode == "sandbox: true" else Status.REJECTED
    assert [r.status for r in rows] == [expected, expected]
    assert "# mine" not in (folder.parent / "runs/toy/worktree/study/evaluate.py").read_text()


def test_a_worse_champion_is_a_negative_gain(tmp_path):
    ledger = Ledger(tmp_path / "results.tsv", "rmse")
    ledger.append(Row(1, Status.KEEP, "baseline", metric=3.659))
    ledger.append(Row(2, Status.KEEP, "simpler, a little worse", metric=4.675))
    s = report.summary(ledger, "minimize")
    assert s.gain == pytest.approx(-1.016) and s.gain_pct == pytest.approx(-27.77, abs=0.01)
    assert report.summary(ledger, "maximize").gain == pytest.approx(1.016)


def test_sigkill_of_the_command_leaves_no_server(make_study, tmp_path):
    folder = make_study(evaluate="import time, model\ntime.sleep(0.2)\nprint('score: 1.0')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    cli = Path(sys.executable).with_name("autoresearch")
    proc = subprocess.Popen(
        [str(cli), "run", str(folder), "-n", "50", "--proposer", "mutate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    port = None
    for line in proc.stdout:
        if "temporary Prefect server at" in line:
            port = int(line.split("127.0.0.1:")[1].split()[0])
        if "#  2 " in line:
            break
    assert port is not None
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _listening(port), "the temporary server outlived the command"


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


SNOOP = """import os, pathlib
paths = ("../../../../.env", "/run/autoresearch-test-marker")
seen = [n for n in paths if pathlib.Path(n).exists()]
seen += [k for k in os.environ if k.startswith("PREFECT_")]
print("seen:", " ".join(seen) or "nothing")
X = 10.0
"""


def outside_hidden_roots() -> Path:
    """A folder outside /home and /tmp (which the sandbox hides anyway), as a checkout in /srv."""
    for parent in ("/srv", "/opt", "/var/lib"):
        if os.access(parent, os.W_OK) and os.access("/run", os.W_OK):
            return Path(tempfile.mkdtemp(prefix="autoresearch-test-", dir=parent))
    pytest.skip("needs a writable folder outside /home and /tmp, and /run (as root)")


@pytest.mark.parametrize("mode", MODES)
def test_a_candidate_sees_nothing_of_the_checkout_run_or_prefect(make_study, mode):
    """The user's checkout outside the study (an untracked .env), /run (sockets such as
    docker.sock), also with the network, and Prefect's settings stay out of the sandbox."""
    made = make_study(yaml_extra=f"{mode}\n")
    spec = made / "study.yaml"
    spec.write_text(spec.read_text().replace("timeout_s: 20}", "timeout_s: 20, network: true}"))
    git(made.parent, "commit", "-qam", "with the network")
    where = outside_hidden_roots()
    marker = Path("/run/autoresearch-test-marker")
    try:
        shutil.copytree(made.parent, where / "repo")
        folder = where / "repo" / "study"
        (folder.parent / ".env").write_text("KEY=value\n")
        marker.write_text("a socket, say\n")
        run(folder, SNOOP)
        log = (folder.parent / "runs" / "toy" / "logs" / "2.log").read_text()
    finally:
        marker.unlink(missing_ok=True)
        shutil.rmtree(where)
    assert "PREFECT_" not in log  # in either mode: the evaluator's environment has none
    expected = "seen: ../../../../.env /run/autoresearch-test-marker"
    assert (expected in log) == (mode == "sandbox: false"), log
    if mode == "sandbox: true":
        assert "seen: nothing" in log
