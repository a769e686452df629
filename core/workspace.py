"""The git workspace: a worktree of the study's repository on branch autoresearch/<study>.

The branch head is the champion. Candidates are commits on that branch; a discard is a hard reset
back to the champion. The user's own checkout is never touched. Every git command of ours runs
with hooks disabled, so that a hook planted in the repository never runs on our commits. A study
starts from the repository's HEAD, so its folder must be committed there.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import git

from core.study import Study, StudyError

NO_HOOKS = {  # git >= 2.31 reads config from the environment: core.hooksPath points nowhere
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "core.hooksPath",
    "GIT_CONFIG_VALUE_0": "/dev/null",
}
IDENTITY = {  # commits on the study branch are the tool's, whatever git config says
    "GIT_AUTHOR_NAME": "autoresearch",
    "GIT_AUTHOR_EMAIL": "autoresearch@localhost",
    "GIT_COMMITTER_NAME": "autoresearch",
    "GIT_COMMITTER_EMAIL": "autoresearch@localhost",
}


class GuardViolation(Exception):
    """A candidate changed something it may not: it is rejected before it runs."""


class NotCommitted(StudyError):
    """The study folder is not (all) in the repository's HEAD: nothing can start from it."""


def open_repo(path: Path) -> git.Repo:
    """A repository whose git commands run without hooks."""
    repo = git.Repo(path)
    repo.git.update_environment(**NO_HOOKS)
    return repo


def _under(path: str, roots: list[str]) -> bool:
    parts = Path(path).parts
    return any(parts[: len(Path(r).parts)] == Path(r).parts for r in roots)


def hash_paths(root: Path, paths: list[str]) -> dict[str, str]:
    """sha256 of every file under the given repo-relative paths (files or folders)."""
    hashes: dict[str, str] = {}
    for rel in paths:
        target = root / rel
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        for f in files:
            key = f.relative_to(root).as_posix()
            hashes[key] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else "missing"
    return hashes


class Workspace:
    """One worktree of a study. `slot` names extra worktrees for parallel candidates later."""

    def __init__(self, study: Study, slot: str = "worktree") -> None:
        self.study = study
        self.branch = f"autoresearch/{study.name}"
        self.path = study.state_dir / slot
        self.slot = slot
        self.origin = open_repo(study.repo_root)
        self._repo: git.Repo | None = None

    # set-up ----------------------------------------------------------------------------

    def open(self, fresh: bool = False) -> Workspace:
        """Create the branch and the worktree if missing; never touch the user's checkout.

        fresh: nothing is recorded yet, so the study (re)starts from the repository's HEAD,
        which must hold the whole study folder, committed.
        """
        if fresh:
            self.check_committed()
        self._exclude_state_dir()
        self.remove_stale_locks()
        heads = [h.name for h in self.origin.heads]
        if self.branch not in heads:
            self.origin.create_head(self.branch, self.origin.head.commit)
        elif fresh and self.origin.heads[self.branch].commit != self.origin.head.commit:
            self.origin.git.branch("--force", self.branch, self.origin.head.commit.hexsha)
        if not (self.path / ".git").exists():
            self.origin.git.worktree("prune")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.origin.git.worktree("add", str(self.path), self.branch)
        elif fresh and self.head() != self.origin.heads[self.branch].commit.hexsha:
            self.reset(self.origin.heads[self.branch].commit.hexsha)
        return self

    def check_committed(self) -> None:
        """NotCommitted unless HEAD holds the study folder's files and none is changed."""
        origin, rel = self.origin, self.study.rel.as_posix()
        where = f"{self.study.folder}: commit the study folder first"
        how = f"(git -C {self.study.repo_root} add {rel or '.'} && git commit); nothing recorded"
        if not origin.head.is_valid():
            raise NotCommitted(f"{where}: the repository has no commit yet {how}")
        wanted = [self.study.repo_path("study.yaml"), *self.study.editable, *self.study.protected]
        tree = origin.head.commit.tree
        missing = [p for p in wanted if not _in_tree(tree, p)]
        if missing:
            raise NotCommitted(f"{where}: not in HEAD: {', '.join(missing[:5])} {how}")
        spec = [rel or "."]
        if self.study.state_dir.is_relative_to(self.study.repo_root):
            spec.append(f":(exclude){self.study.state_dir.relative_to(self.study.repo_root)}")
        changed = origin.git.status("--porcelain", "--untracked-files=all", "--", *spec)
        if changed.strip():
            paths = [line[3:] for line in changed.splitlines()][:5]
            raise NotCommitted(f"{where}: uncommitted changes in {', '.join(paths)} {how}")

    def remove_stale_locks(self) -> list[Path]:
        """Git lock files of this study's worktrees and branch, left by a killed git.

        Only under the study's own lock (no other process of ours runs git on them).
        """
        git_dir = Path(self.origin.git_dir)
        found = [
            *(git_dir / "worktrees").glob("*/*.lock"),
            git_dir / "refs" / "heads" / f"{self.branch}.lock",
            git_dir / "logs" / "refs" / "heads" / f"{self.branch}.lock",
        ]
        ours = {p for p in found if p.exists() and self._ours(p)}
        for lock in ours:
            lock.unlink(missing_ok=True)
        return sorted(ours)

    def _ours(self, lock: Path) -> bool:
        """A lock of one of this study's worktrees (their admin folder names its path), or of
        the study's branch."""
        if lock.parent.parent.name != "worktrees":
            return True
        gitdir = lock.parent / "gitdir"
        try:
            return Path(gitdir.read_text().strip()).is_relative_to(self.study.state_dir)
        except OSError:
            return False

    def _exclude_state_dir(self) -> None:
        """Keep runs/ out of the user's `git status` when it lives inside their repository."""
        try:
            rel = self.study.state_dir.relative_to(self.study.repo_root).parts[0]
        except ValueError:
            return
        exclude = Path(self.origin.git_dir) / "info" / "exclude"
        line = f"/{rel}/"
        text = exclude.read_text() if exclude.exists() else ""
        if line not in text.splitlines():
            exclude.parent.mkdir(parents=True, exist_ok=True)
            exclude.write_text(
                text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
            )

    def open_at(self, sha: str) -> Workspace:
        """A detached worktree at a fixed commit: the champion, measured beside a candidate."""
        if not (self.path / ".git").exists():
            self.origin.git.worktree("prune")
            self.origin.git.worktree("add", "--detach", str(self.path), sha)
        elif not self.head().startswith(sha):
            self.repo.git.checkout("--detach", "--force", sha)
        self.repo.git.clean("-fd")
        return self

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = open_repo(self.path)
        return self._repo

    @property
    def study_dir(self) -> Path:
        """The study folder inside the worktree: where the evaluator runs."""
        return self.path / self.study.rel

    def head(self) -> str:
        return self.repo.head.commit.hexsha

    # reading ---------------------------------------------------------------------------

    def editable_files(self) -> dict[str, str]:
        """The editable files at the current head, repo-relative path -> text."""
        out: dict[str, str] = {}
        for rel in self.study.editable:
            target = self.path / rel
            files = (
                sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
            )
            for f in files:
                try:
                    out[f.relative_to(self.path).as_posix()] = f.read_text()
                except UnicodeDecodeError:
                    continue
        return out

    def protected_hashes(self) -> dict[str, str]:
        return hash_paths(self.path, self.study.protected)

    def diff(self, old: str, new: str) -> str:
        return self.repo.git.diff(old, new)

    # changing --------------------------------------------------------------------------

    def apply(self, files: dict[str, str], message: str) -> tuple[str, int, int]:
        """Write a candidate's files and commit them. Returns (sha, lines added, lines removed)."""
        forbidden = [p for p in files if not _under(p, self.study.editable)]
        if forbidden:
            raise GuardViolation(f"candidate changes non-editable paths: {', '.join(forbidden)}")
        for rel, text in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        repo = self.repo
        repo.git.add("--", *files)
        if not repo.is_dirty(index=True, working_tree=False):
            raise GuardViolation("candidate changes nothing")
        with repo.git.custom_environment(**IDENTITY):
            repo.git.commit("-m", message or "(no hypothesis)", "--no-verify")
        return self.head(), *self.line_counts("HEAD~1", "HEAD")

    def check_commit(self, old: str, new: str, protected: dict[str, str]) -> None:
        """Reject a commit that touches a non-editable path or leaves a protected file changed."""
        changed = self.repo.git.diff("--name-only", old, new).splitlines()
        outside = [p for p in changed if not _under(p, self.study.editable)]
        if outside:
            raise GuardViolation(f"candidate changes non-editable paths: {', '.join(outside)}")
        self.check_protected(protected)

    def check_protected(self, expected: dict[str, str]) -> None:
        now = self.protected_hashes()
        bad = sorted(k for k in expected.keys() | now.keys() if expected.get(k) != now.get(k))
        if bad:
            raise GuardViolation(f"protected files changed: {', '.join(bad)}")

    def line_counts(self, old: str, new: str) -> tuple[int, int]:
        added = removed = 0
        for line in self.repo.git.diff("--numstat", old, new).splitlines():
            a, r, _ = line.split("\t", 2)
            added += int(a) if a.isdigit() else 0
            removed += int(r) if r.isdigit() else 0
        return added, removed

    def drop_bytecode(self) -> None:
        """Delete __pycache__ folders (git-ignored, so reset keeps them): Python checks a .pyc
        only by its source's size and mtime, so a same-size edit could run the old code, and a
        planted .pyc could stand in for a protected module."""
        for cache in sorted(self.study_dir.rglob("__pycache__"), reverse=True):
            shutil.rmtree(cache, ignore_errors=True)

    def reset(self, sha: str) -> None:
        """Back to a known commit: drop the candidate commit and anything it left behind."""
        repo = self.repo
        repo.git.reset("--hard", sha)
        repo.git.clean("-fd")

    def clean(self) -> None:
        """Drop files an evaluation left (untracked, not ignored): a planted `json.py` must not
        shadow a module in the next evaluation."""
        self.repo.git.clean("-fd")


def _in_tree(tree: git.Tree, path: str) -> bool:
    try:
        tree / path
        return True
    except KeyError:
        return False
