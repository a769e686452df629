"""`autoresearch doctor`: the study's invariants, checked, and repaired where that is safe.

Read-only unless asked to fix; run under the study's lock, so no campaign writes meanwhile.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import dataclass

import git

from core import sandbox
from core.files import private
from core.ledger import LedgerError, Status
from core.processes import boot_id
from core.workspace import hash_paths
from steps.lab import Lab

RUNS_PROGRAMS = ("core.fsmonitor", "core.sshCommand", "core.pager", "diff.external")


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str = ""
    fixable: bool = False  # `doctor --fix` repairs it


def examine(lab: Lab) -> list[Finding]:
    """Every invariant, in the order a person would want to read them."""
    try:
        rows = lab.records.ledger.rows()
    except LedgerError as exc:
        return [Finding("ledger readable", False, str(exc))]
    in_flight = set(lab.records.pending.numbers())
    found = [_numbers([r.experiment for r in rows], in_flight), _torn(lab)]
    champ = lab.records.champion()
    head = lab.repo.branch_head() if _has_branch(lab) else ""
    kept = [r.commit for r in rows if r.status == Status.KEEP]
    off = [c for c in kept if not head or not _is_ancestor(lab, c, head)]
    found.append(Finding("kept commits on the study branch", not off, ", ".join(off)))
    on_champ = champ is None or head.startswith(champ.commit)
    found.append(
        Finding("branch head = champion", on_champ, f"{head[:7]} != {champ and champ.commit}", True)
    )
    found += [_worktrees(lab), _locks(lab), _leftovers(lab), _protected(lab)]
    return found + [_private(lab), _git_programs(lab), _sandbox(lab)]


def fix(lab: Lab) -> list[str]:
    """Repair what is safe to repair; what was done."""
    done = []
    if locks := lab.repo.remove_stale_locks():
        done.append(f"removed {len(locks)} stale git lock(s)")
    if lab.records.ledger.repair():
        done.append("cut a torn last line off results.tsv")
    champ = lab.records.champion()
    if champ and _has_branch(lab) and not lab.repo.branch_head().startswith(champ.commit):
        lab.repo.reset_branch(champ.commit)
        done.append(f"moved the study branch to the champion {champ.commit}")
    if not _private(lab).ok:
        private(lab.study.state_dir)
        done.append(f"made {lab.study.state_dir} private (0700)")
    if not _worktrees(lab).ok or not _leftovers(lab).ok:
        lab.repair()
        done.append("stopped leftover evaluators; worktrees reset to the champion")
    return done


def _numbers(numbers: list[int], in_flight: set[int]) -> Finding:
    """1..n, once each; a gap is fine while its number is in flight (pending)."""
    doubles = sorted(n for n, c in Counter(numbers).items() if c > 1)
    top = max([*numbers, *in_flight], default=0)
    gaps = sorted(set(range(1, top + 1)) - set(numbers) - in_flight)
    detail = "; ".join(
        part
        for part in (f"doubles {doubles}" if doubles else "", f"gaps {gaps}" if gaps else "")
        if part
    )
    flying = f" ({len(in_flight)} in flight)" if in_flight else ""
    return Finding(f"ledger rows 1..{top}, no gap, no double{flying}", not detail, detail)


def _torn(lab: Lab) -> Finding:
    path = lab.records.ledger.path
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    return Finding("ledger ends with a whole line", not torn, "a torn last line", True)


def _has_branch(lab: Lab) -> bool:
    return lab.repo.branch in [h.name for h in lab.repo.origin.heads]


def _is_ancestor(lab: Lab, commit: str, head: str) -> bool:
    try:
        lab.repo.origin.git.merge_base("--is-ancestor", commit, head)
        return True
    except git.GitCommandError:
        return False


def _worktrees(lab: Lab) -> Finding:
    """Every slot that is not measuring a candidate in flight: clean, at the champion."""
    champ = lab.records.champion()
    if champ is None:
        return Finding("worktrees clean, at the champion", True, "no champion yet")
    busy = {r.slot for r in lab.records.pending.all()}
    bad = []
    for slot in lab.slots.all:
        ws = slot.workspace
        if not ws.exists() or slot.index in busy:
            continue
        if ws.repo.is_dirty(untracked_files=True):
            bad.append(f"{ws.slot}: uncommitted changes")
        elif not ws.head().startswith(champ.commit):
            bad.append(f"{ws.slot}: at {ws.head()[:7]}, not the champion")
    return Finding("worktrees clean, at the champion", not bad, "; ".join(bad), True)


def _locks(lab: Lab) -> Finding:
    stale = [str(p.relative_to(lab.repo.git_dir)) for p in lab.repo.stale_locks()]
    return Finding("no stale git locks", not stale, ", ".join(stale), True)


def _leftovers(lab: Lab) -> Finding:
    """Evaluators a killed run left running (recorded beside their logs)."""
    left = []
    for pid_file in (lab.study.state_dir / "logs").glob("*.pgid"):
        parts = pid_file.read_text().split()
        if len(parts) == 2 and parts[1] == boot_id():
            left.append(pid_file.name)
    return Finding("no evaluator left running", not left, ", ".join(left), True)


def _protected(lab: Lab) -> Finding:
    expected = lab.records.state.load().get("protected")
    if expected is None or not (lab.workspace.path / ".git").exists():
        return Finding("protected files as hashed at the baseline", True, "not hashed yet")
    now = hash_paths(lab.workspace.path, lab.study.protected)
    bad = sorted(k for k in expected.keys() | now.keys() if expected.get(k) != now.get(k))
    return Finding("protected files as hashed at the baseline", not bad, ", ".join(bad))


def _private(lab: Lab) -> Finding:
    """The study's state (ledger, logs, learnings) readable by its owner only."""
    mode = lab.study.state_dir.stat().st_mode & 0o777 if lab.study.state_dir.exists() else 0o700
    return Finding("study state private (0700)", not mode & 0o077, f"mode {mode:o}", True)


def _git_programs(lab: Lab) -> Finding:
    """Git config that names a program to run: the tool's git sets core.fsmonitor and hooks
    off, but a person's own git in this repository would still run it."""
    found = []
    for key in RUNS_PROGRAMS:  # as a plain git reads them: without the tool's own overrides
        got = subprocess.run(
            ["git", "-C", str(lab.study.repo_root), "config", "--get", key],
            capture_output=True,
            text=True,
        )
        value = got.stdout.strip()
        if value and value.lower() not in ("false", "0", "no", "off"):
            found.append(f"{key} = {value}")
    return Finding("git config runs no program", not found, "; ".join(found))


def _sandbox(lab: Lab) -> Finding:
    """Whether evaluations run in a sandbox that holds here, as whoever runs the tool."""
    if not lab.study.config.sandbox.enabled:
        return Finding("evaluations sandboxed", True, "sandbox: false in study.yaml")
    if sandbox.bwrap() is None:
        return Finding("evaluations sandboxed", False, sandbox.why_unavailable())
    return Finding("evaluations sandboxed", True)
