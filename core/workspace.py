"""Git, for a study: the branch autoresearch/<study> (its head is the champion) and worktrees.

A candidate is a commit made in a worktree detached at the champion it is built on; it is kept
reachable under refs/autoresearch/<study>/<n> while in flight (a worker fetches it from there),
and the branch moves to it only when it is kept (compare-and-swap: never over a champion that
changed meanwhile). Several worktrees (slots) evaluate candidates at once. The user's own
checkout is never touched. Every git command of ours runs with hooks disabled, so that a hook
planted in the repository never runs on our commits. A study starts from the repository's
HEAD, so its folder must be committed there.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import git

from core.study import Study, StudyError

NO_HOOKS = {  # git >= 2.31 reads config from the environment, over every file: no hooks, and
    # no program that a config file names to run on status, checkout or clean (core.fsmonitor)
    "GIT_CONFIG_COUNT": "2",
    "GIT_CONFIG_KEY_0": "core.hooksPath",
    "GIT_CONFIG_VALUE_0": "/dev/null",
    "GIT_CONFIG_KEY_1": "core.fsmonitor",
    "GIT_CONFIG_VALUE_1": "false",
}
IDENTITY = {  # commits of candidates are the tool's, whatever git config says
    "GIT_AUTHOR_NAME": "autoresearch",
    "GIT_AUTHOR_EMAIL": "autoresearch@localhost",
    "GIT_COMMITTER_NAME": "autoresearch",
    "GIT_COMMITTER_EMAIL": "autoresearch@localhost",
}


class GuardViolation(Exception):
    """A candidate changed something it may not: it is rejected before it runs."""


class NotCommitted(StudyError):
    """The study folder is not (all) in the repository's HEAD: nothing can start from it."""


class Conflict(Exception):
    """A candidate's change does not apply on the current champion."""


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


class StudyRepo:
    """The user's repository as the study sees it: its branch, candidate refs, worktrees."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.branch = f"autoresearch/{study.name}"
        self.origin = open_repo(study.repo_root)
        self.lock = threading.Lock()  # one git command at a time on the shared refs

    @property
    def git_dir(self) -> Path:
        return Path(self.origin.common_dir)

    def candidate_ref(self, number: int) -> str:
        return f"refs/autoresearch/{self.study.name}/{number}"

    # set-up ----------------------------------------------------------------------------

    def start(self, fresh: bool = False) -> None:
        """Create the branch if missing. fresh: nothing is recorded yet, so the study
        (re)starts from the repository's HEAD, which must hold the whole study folder."""
        if fresh:
            self.check_committed()
        self._exclude_state_dir()
        self.remove_stale_locks()
        head = self.origin.head.commit.hexsha
        if self.branch not in [h.name for h in self.origin.heads]:
            self.origin.create_head(self.branch, head)
        elif fresh and self.branch_head() != head:
            self.origin.git.update_ref(f"refs/heads/{self.branch}", head)

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

    def stale_locks(self) -> list[Path]:
        """Git lock files of this study's worktrees, branch and candidate refs, left by a
        killed git (stale only under the study's own lock: no other process of ours runs git
        on them)."""
        found = [
            *(self.git_dir / "worktrees").glob("*/*.lock"),
            self.git_dir / "refs" / "heads" / f"{self.branch}.lock",
            self.git_dir / "logs" / "refs" / "heads" / f"{self.branch}.lock",
            *(self.git_dir / "refs" / "autoresearch" / self.study.name).glob("*.lock"),
        ]
        return sorted({p for p in found if p.exists() and self._ours(p)})

    def remove_stale_locks(self) -> list[Path]:
        """Remove the stale locks (under the study's own lock); the ones removed."""
        stale = self.stale_locks()
        for lock in stale:
            lock.unlink(missing_ok=True)
        return stale

    def _ours(self, lock: Path) -> bool:
        """A lock of one of this study's worktrees (their admin folder names its path), or of
        the study's refs."""
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
        exclude = self.git_dir / "info" / "exclude"
        line = f"/{rel}/"
        text = exclude.read_text() if exclude.exists() else ""
        if line not in text.splitlines():
            exclude.parent.mkdir(parents=True, exist_ok=True)
            exclude.write_text(
                text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
            )

    # refs ------------------------------------------------------------------------------

    def branch_head(self) -> str:
        return self.origin.git.rev_parse(f"refs/heads/{self.branch}")

    def full(self, sha: str) -> str:
        return self.origin.git.rev_parse(f"{sha}^{{commit}}")

    def advance(self, new: str, old: str) -> None:
        """Move the branch from the champion `old` to `new`; GitCommandError when it moved."""
        with self.lock:
            self.origin.git.update_ref(f"refs/heads/{self.branch}", new, self.full(old))

    def reset_branch(self, sha: str) -> None:
        """Put the branch back at `sha` (repair: the ledger's champion)."""
        with self.lock:
            self.origin.git.update_ref(f"refs/heads/{self.branch}", self.full(sha))

    def hold(self, number: int, sha: str) -> None:
        """Keep a candidate reachable while it is in flight."""
        with self.lock:
            self.origin.git.update_ref(self.candidate_ref(number), sha)

    def release(self, number: int) -> None:
        with self.lock:
            try:
                self.origin.git.update_ref("-d", self.candidate_ref(number))
            except git.GitCommandError:
                pass  # never held, or already released

    def push(self, remote: str, number: int, champion: str) -> None:
        """Send a candidate (and the champion it is measured against) to the study's remote."""
        ref = self.candidate_ref(number)
        with self.lock:
            self.origin.git.push(
                remote, f"+{ref}:{ref}", f"+{self.full(champion)}:refs/heads/{self.branch}"
            )

    def show(self, sha: str, path: str) -> str:
        return self.origin.git.show(f"{sha}:{path}")


class Workspace:
    """One worktree of a study (a slot), detached at the commit it measures."""

    def __init__(self, study: Study, slot: str = "worktree", repo: StudyRepo | None = None) -> None:
        self.study = study
        self.path = study.state_dir / slot
        self.slot = slot
        self.repo_of_study = repo or StudyRepo(study)
        self._repo: git.Repo | None = None

    @property
    def branch(self) -> str:
        return self.repo_of_study.branch

    @property
    def origin(self) -> git.Repo:
        return self.repo_of_study.origin

    def open_at(self, sha: str) -> Workspace:
        """The worktree, created if missing, detached and clean at `sha`."""
        self.checkout(sha)
        return self

    def checkout(self, sha: str) -> None:
        """Detached at `sha`, with nothing else in the worktree (created if missing)."""
        if not self.exists():
            with self.repo_of_study.lock:
                self.origin.git.worktree("prune")
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.origin.git.worktree("add", "--detach", str(self.path), sha)
        repo = self.repo
        if repo.head.is_detached and repo.head.commit.hexsha == self.repo_of_study.full(sha):
            repo.git.reset("--hard")
        else:
            repo.git.checkout("--detach", "--force", sha)
        repo.git.clean("-fd")

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = open_repo(self.path)
        return self._repo

    @property
    def study_dir(self) -> Path:
        """The study folder inside the worktree: where the evaluator runs."""
        return self.path / self.study.rel

    def exists(self) -> bool:
        return (self.path / ".git").exists()

    def head(self) -> str:
        return self.repo.head.commit.hexsha

    # reading ---------------------------------------------------------------------------

    def editable_files(self) -> dict[str, str]:
        """The editable files as checked out, repo-relative path -> text."""
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

    def rebase(self, sha: str, onto: str) -> tuple[str, int, int]:
        """The change of commit `sha`, applied again on `onto` as a new commit; Conflict when it
        does not apply cleanly (the worktree is left at `onto`)."""
        self.checkout(onto)
        repo = self.repo
        try:
            with repo.git.custom_environment(**IDENTITY):
                repo.git.cherry_pick("--keep-redundant-commits", sha)
        except git.GitCommandError as exc:
            if (Path(repo.git_dir) / "CHERRY_PICK_HEAD").exists():
                repo.git.cherry_pick("--abort")
            self.checkout(onto)
            said = str(exc.stderr).replace("stderr: '", "").strip(" '\n")
            lines = [ln.strip() for ln in said.splitlines() if "CONFLICT" in ln or "error" in ln]
            raise Conflict("; ".join(lines) or "the change does not apply") from None
        if not repo.git.diff("HEAD~1", "HEAD"):
            self.checkout(onto)
            raise Conflict("the change is in the champion already")
        return self.head(), *self.line_counts("HEAD~1", "HEAD")

    def check_commit(self, old: str, new: str, protected: dict[str, str]) -> None:
        """Reject a commit that touches a non-editable path, adds a symbolic link (the tool
        reads editable files itself: a link would hand it any file on the machine) or leaves a
        protected file changed. A rename counts as both of its paths."""
        raw = self.repo.git.diff("--raw", "--no-renames", old, new).splitlines()
        changed = {line.split("\t", 1)[1]: line.split()[1] for line in raw}  # path: new mode
        outside = [p for p in changed if not _under(p, self.study.editable)]
        if outside:
            raise GuardViolation(f"candidate changes non-editable paths: {', '.join(outside)}")
        links = [p for p, mode in changed.items() if mode == "120000"]
        if links:
            raise GuardViolation(f"candidate adds symbolic links: {', '.join(links)}")
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
        self.checkout(sha)

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
