"""`autoresearch doctor`: the study's invariants, checked, and repaired where that is safe.

Read-only unless asked to fix; run under the study's lock, so no campaign writes meanwhile.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import git

from core.ledger import LedgerError, Status
from core.processes import boot_id
from core.workspace import hash_paths
from steps.lab import Lab


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str = ""
    fixable: bool = False  # `doctor --fix` repairs it


def examine(lab: Lab) -> list[Finding]:
    """Every invariant, in the order a person would want to read them."""
    try:
        rows = lab.ledger.rows()
    except LedgerError as exc:
        return [Finding("ledger readable", False, str(exc))]
    found = [_numbers(lab, [r.experiment for r in rows]), _torn(lab)]
    champ = lab.champion()
    branch = lab.workspace.origin.heads[lab.workspace.branch] if _has_branch(lab) else None
    kept = [r.commit for r in rows if r.status == Status.KEEP]
    off = [c for c in kept if branch is None or not _is_ancestor(lab, c, branch.commit.hexsha)]
    found.append(Finding("kept commits on the study branch", not off, ", ".join(off)))
    head = branch.commit.hexsha if branch else ""
    on_champ = champ is None or head.startswith(champ.commit)
    found.append(
        Finding("branch head = champion", on_champ, f"{head[:7]} != {champ and champ.commit}", True)
    )
    found += [_worktree(lab), _locks(lab), _leftovers(lab), _protected(lab)]
    return found


def fix(lab: Lab) -> list[str]:
    """Repair what is safe to repair; what was done."""
    done = []
    if locks := lab.workspace.remove_stale_locks():
        done.append(f"removed {len(locks)} stale git lock(s)")
    if lab.ledger.repair():
        done.append("cut a torn last line off results.tsv")
    champ = lab.champion()
    if champ and _has_branch(lab):
        branch = lab.workspace.origin.heads[lab.workspace.branch]
        if not branch.commit.hexsha.startswith(champ.commit):
            full = lab.workspace.origin.commit(champ.commit).hexsha
            lab.workspace.origin.git.branch("--force", lab.workspace.branch, full)
            done.append(f"moved the study branch to the champion {champ.commit}")
    if (lab.workspace.path / ".git").exists():
        before = lab.workspace.head()
        lab.repair()
        if lab.workspace.head() != before or not _worktree(lab).ok:
            done.append("reset the worktree to the champion")
    return done


def _numbers(lab: Lab, numbers: list[int]) -> Finding:
    doubles = sorted(n for n, c in Counter(numbers).items() if c > 1)
    gaps = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
    detail = "; ".join(
        part
        for part in (f"doubles {doubles}" if doubles else "", f"gaps {gaps}" if gaps else "")
        if part
    )
    return Finding(f"ledger rows 1..{len(numbers)}, no gap, no double", not detail, detail)


def _torn(lab: Lab) -> Finding:
    path = lab.ledger.path
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    return Finding("ledger ends with a whole line", not torn, "a torn last line", True)


def _has_branch(lab: Lab) -> bool:
    return lab.workspace.branch in [h.name for h in lab.workspace.origin.heads]


def _is_ancestor(lab: Lab, commit: str, head: str) -> bool:
    try:
        lab.workspace.origin.git.merge_base("--is-ancestor", commit, head)
        return True
    except git.GitCommandError:
        return False


def _worktree(lab: Lab) -> Finding:
    path = lab.workspace.path
    if not (path / ".git").exists():
        return Finding("worktree clean, at the branch head", True, "no worktree yet")
    repo = lab.workspace.repo
    dirty = repo.is_dirty(untracked_files=True)
    detached = repo.head.is_detached or repo.active_branch.name != lab.workspace.branch
    ok = not dirty and not detached
    what = "uncommitted changes" if dirty else "not on the study branch"
    return Finding("worktree clean, at the branch head", ok, "" if ok else what, True)


def _locks(lab: Lab) -> Finding:
    git_dir = Path(lab.workspace.origin.git_dir)
    names = [
        *(git_dir / "worktrees").glob("*/*.lock"),
        git_dir / "refs" / "heads" / f"{lab.workspace.branch}.lock",
    ]
    stale = [str(p.relative_to(git_dir)) for p in names if p.exists()]
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
    expected = lab.state.load().get("protected")
    if expected is None or not (lab.workspace.path / ".git").exists():
        return Finding("protected files as hashed at the baseline", True, "not hashed yet")
    now = hash_paths(lab.workspace.path, lab.study.protected)
    bad = sorted(k for k in expected.keys() | now.keys() if expected.get(k) != now.get(k))
    return Finding("protected files as hashed at the baseline", not bad, ", ".join(bad))
