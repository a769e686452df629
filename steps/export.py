"""`autoresearch export`: a reviewable branch from the study's base to its champion.

One commit per kept change that survives in the champion, in the order they were kept; a change
that later keeps undid or rewrote is folded away (into the commit that rewrote it, when any of
its lines are left). The branch is built from the kept commits' editable files alone, whatever
the shape of the study's history (a tree search's keeps need not descend from each other):

1. the editable files at each kept commit, the baseline's (the base) first, the champion's last;
2. per file, the base-to-champion diff, each changed line owned by the kept change that last
   wrote it (a blame along the kept commits; a removed base line by the keep that removed it);
   the lines a hunk replaces are its latest owner's, and a hunk whose owners interleave goes
   whole to its latest owner;
3. commit k holds the base with every hunk owned by a change up to k applied: each commit is a
   diff from its parent by construction, and the last one holds the champion's editable files,
   which is checked byte for byte before any branch is written.

The commits are written with git plumbing (a temporary index, commit-tree) in the user's
repository; the only ref written is the new branch. The pull request's summary (the ledger's
story, the champion against the baseline, the suspect keeps) lands in runs/<name>/export.md.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

import git
from gitdb import IStream

from core.decide import gain
from core.files import atomic_write
from core.ledger import Ledger, Row, format_metric
from core.secrets import redact
from core.workspace import IDENTITY, open_repo
from steps import report

if TYPE_CHECKING:
    from core.study import Study

Entry = tuple[str, bytes]  # a file as git holds it: its mode ("100644") and its bytes
Files = dict[str, Entry]  # repo-relative path -> entry
SUBJECT = 72  # characters of a commit's first line


class ExportError(Exception):
    """The study cannot be exported as asked; the message says why and what to do."""


# attribution: which kept change owns each line the champion changed ---------------------------


def _lines(entry: Entry | None) -> list[bytes]:
    return entry[1].splitlines(keepends=True) if entry else []


@dataclass
class Blame:
    """A file along its versions (the base first, 0): the version that wrote each line of the
    last one (0: the base), the version that removed each line of the base (None: none), and
    for each version, the later ones that removed lines it wrote."""

    origin: list[int]
    removed: list[int | None]
    replaced: dict[int, set[int]] = field(default_factory=dict)


def _blame(versions: list[Entry | None]) -> Blame:
    previous = _lines(versions[0])
    blame = Blame([0] * len(previous), [None] * len(previous))
    base_line: list[int | None] = list(range(len(previous)))
    for step, version in enumerate(versions[1:], 1):
        lines = _lines(version)
        if lines == previous:
            continue
        origin, new_base = [step] * len(lines), [None] * len(lines)
        kept: set[int] = set()
        for a, b, size in SequenceMatcher(
            None, previous, lines, autojunk=False
        ).get_matching_blocks():
            origin[b : b + size] = blame.origin[a : a + size]
            new_base[b : b + size] = base_line[a : a + size]
            kept.update(range(a, a + size))
        for gone in set(base_line) - set(new_base) - {None}:
            blame.removed[gone] = step
        for writer in {blame.origin[a] for a in range(len(previous)) if a not in kept} - {0}:
            blame.replaced.setdefault(writer, set()).add(step)
        blame.origin, base_line, previous = origin, new_base, lines
    return blame


def _split(tag: str, removed: list[int], added: list[int]) -> list[int]:
    """A hunk's owners, line by line (its removed lines, then its added ones). A replacement's
    removed lines go to its latest owner: a base line removed at k was there until k, so a
    change before k only added lines beside it, and one after k rewrote what k put there.
    Owners as found when each one's lines are one run; else the whole hunk is the latest's."""
    top = max(removed + added)
    if tag == "replace":
        removed = [top] * len(removed)
    if _one_run_each(removed) and _one_run_each(added):
        return removed + added
    return [top] * (len(removed) + len(added))


def _one_run_each(owners: list[int]) -> bool:
    runs = [owner for owner, _ in groupby(owners)]
    return len(runs) == len(set(runs))


def _last_change(versions: list[Entry | None], key: int | None = None) -> int:
    """The last version that changed the file (key 0: its mode only; None: anything)."""
    pick = (lambda v: v) if key is None else (lambda v: v and v[key])
    changed = [k for k in range(1, len(versions)) if pick(versions[k]) != pick(versions[k - 1])]
    return changed[-1] if changed else 0


@dataclass
class FilePlan:
    """One editable file changed from the base to the champion: its lines in the champion's
    diff order, each kept ("="), removed ("-") or added ("+"), with the change that owns it."""

    path: str
    first: Entry | None  # at the base (None: absent)
    last: Entry | None  # in the champion
    pieces: list[tuple[str, bytes, int]] = field(default_factory=list)
    appears: int = 0  # a new file: the change that creates it
    vanishes: int = 0  # a removed file: the change that removes it
    mode_change: int = 0  # the change that set the champion's mode, when it differs
    folded: dict[int, int] = field(default_factory=dict)  # a change -> the later one it joined
    replaced: dict[int, set[int]] = field(default_factory=dict)  # see Blame

    def owners(self) -> set[int]:
        found = {owner for kind, _, owner in self.pieces if kind != "="}
        if self.first is None:
            found.add(self.appears)
        if self.last is None:
            found.add(self.vanishes)
        if self.first and self.last and self.first[0] != self.last[0]:
            found.add(self.mode_change)
        return found

    def at(self, step: int) -> Entry | None:
        """The file once the changes up to `step` are applied (None: absent)."""
        if self.first is None and step < self.appears:
            return None
        if self.last is None and step >= self.vanishes:
            return None
        kept = [
            line
            for kind, line, owner in self.pieces
            if kind == "=" or (kind == "-" and owner > step) or (kind == "+" and owner <= step)
        ]
        modes = [e[0] for e in (self.first, self.last) if e]
        mode = modes[-1] if self.first is None or step >= self.mode_change else modes[0]
        return mode, b"".join(kept)


def plan_file(path: str, versions: list[Entry | None]) -> FilePlan | None:
    """A file's plan from its versions (the base first, the champion last); None: unchanged."""
    first, last = versions[0], versions[-1]
    if first == last:
        return None
    plan = FilePlan(path, first, last, mode_change=_last_change(versions, key=0))
    blame = _blame(versions)
    origin, removed, plan.replaced = blame.origin, blame.removed, blame.replaced
    fallback = _last_change(versions)  # for a line the two alignments disagree on
    old, new = _lines(first), _lines(last)
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            plan.pieces += [("=", line, 0) for line in old[i1:i2]]
            continue
        gone = [removed[i] or fallback for i in range(i1, i2)]
        found = gone + [origin[j] or fallback for j in range(j1, j2)]
        owners = _split(tag, gone, found[len(gone) :])
        for was, now in zip(found, owners, strict=True):
            if was != now:
                plan.folded[was] = max(plan.folded.get(was, 0), now)
        cut = i2 - i1
        plan.pieces += [("-", line, o) for line, o in zip(old[i1:i2], owners[:cut], strict=True)]
        plan.pieces += [("+", line, o) for line, o in zip(new[j1:j2], owners[cut:], strict=True)]
    added = [owner for kind, _, owner in plan.pieces if kind == "+"]
    plan.appears = min(added) if added else _last_change(versions)
    plan.vanishes = _last_change(versions)
    return plan


# the study's kept commits, read from git --------------------------------------------------------


def snapshot(repo: git.Repo, commit: str, paths: list[str]) -> Files:
    """The files under `paths` (files or folders, repo-relative) in `commit`."""
    out: Files = {}
    listed = repo.git.ls_tree("-r", "-z", "--full-tree", commit, "--", *paths)
    for item in filter(None, listed.split("\0")):
        meta, path = item.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind == "blob":
            out[path] = (mode, repo.odb.stream(bytes.fromhex(sha)).read())
    return out


def _full(repo: git.Repo, row: Row) -> str:
    try:
        return repo.git.rev_parse("--verify", "--quiet", f"{row.commit}^{{commit}}")
    except git.GitCommandError:
        raise ExportError(
            f"experiment {row.experiment}'s commit {row.commit} is not in the repository "
            f"{repo.working_tree_dir}: its kept change cannot be exported"
        ) from None


@dataclass(frozen=True)
class Keep:
    """A kept row with its full commit and the metric of the champion it beat."""

    row: Row
    commit: str
    before: float


def keeps(repo: git.Repo, rows: list[Row]) -> list[Keep]:
    """The kept rows in order, the baseline first; ExportError when nothing was kept after it."""
    kept = [r for r in rows if r.kept]
    if len(kept) < 2:
        raise ExportError("nothing to export: no change was kept after the baseline")
    befores = [kept[0].metric] + [r.metric for r in kept[:-1]]
    return [Keep(r, _full(repo, r), b) for r, b in zip(kept, befores, strict=True)]


# the branch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """What `export` made: the branch, its base and commits, the folded changes and the summary."""

    branch: str
    base: str
    commits: list[tuple[Keep, str]]  # each surviving change and its commit on the branch
    folded: list[tuple[Keep, str]]  # each change folded away, and why
    summary: Path

    @property
    def tip(self) -> str:
        return self.commits[-1][1]


def message(keep: Keep, study: Study, joined: list[Keep]) -> str:
    """A commit's message: the hypothesis, the metric before and after, the experiment and the
    evidence; the doubt of a suspect keep; the folded changes whose lines it holds."""
    row, metric = keep.row, study.metric
    text = row.description.strip() or "(no hypothesis)"
    subject = text if len(text) <= SUBJECT else text[: SUBJECT - 3].rstrip() + "..."
    up = gain(metric.direction, row.metric, keep.before)
    lines = [subject, ""] + ([text, ""] if subject != text else [])
    lines += [
        f"{metric.name}: {format_metric(keep.before)} -> {format_metric(row.metric)} "
        f"({metric.direction}; gain {up:.6g})",
        f"Experiment: {row.experiment} of study {study.name} (candidate {row.commit})",
        f"Evidence: {row.evidence or '-'}",
    ]
    if row.suspect:
        lines.append(f"Suspect: {row.suspect}")
    if joined:
        later = ", ".join(f"#{k.row.experiment} ({k.row.description})" for k in joined)
        lines.append(f"Also holds what is left of: {later}")
    return redact("\n".join(lines) + "\n")


def _store(repo: git.Repo, data: bytes) -> str:
    stream = repo.odb.store(IStream(b"blob", len(data), io.BytesIO(data)))
    return stream.binsha.hex()


def write_commits(
    repo: git.Repo, base: str, plans: list[FilePlan], messages: dict[int, str]
) -> dict[int, str]:
    """One commit per change in `messages` (by index, in order) on `base`: the base's tree with
    the changes up to it applied. A temporary index: the user's index and files stay as they are."""
    out: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="autoresearch-export-") as tmp:
        index = str(Path(tmp) / "index")
        with repo.git.custom_environment(GIT_INDEX_FILE=index, **IDENTITY):
            repo.git.read_tree(base)
            parent = base
            for step, text in sorted(messages.items()):
                for plan in plans:
                    entry = plan.at(step)
                    if entry is None:
                        repo.git.update_index("--force-remove", "--", plan.path)
                    else:
                        info = f"{entry[0]},{_store(repo, entry[1])},{plan.path}"
                        repo.git.update_index("--add", "--cacheinfo", info)
                tree = repo.git.write_tree()
                parent = out[step] = repo.git.commit_tree(tree, "-p", parent, "-m", text)
    return out


def create_branch(repo: git.Repo, name: str, tip: str, force: bool, study_branch: str) -> None:
    """The branch `name` at `tip`; refused when it is the study's own branch, is not a valid
    name, exists (unless force) or is checked out."""
    if name == study_branch:
        raise ExportError(f"{name} is the study's own branch: choose another --branch")
    try:
        valid = repo.git.check_ref_format("--branch", name) == name  # not @{-1}: a name as given
    except git.GitCommandError:
        valid = False
    if not valid:
        raise ExportError(f"{name!r} is not a valid branch name")
    try:
        repo.git.show_ref("--verify", "--quiet", f"refs/heads/{name}")
        exists = True
    except git.GitCommandError:
        exists = False
    if exists and not force:
        raise ExportError(f"branch {name} exists: pass --force to replace it, or another --branch")
    if exists and (where := _checked_out(repo, name)):
        raise ExportError(f"branch {name} is checked out in {where}: choose another --branch")
    try:
        repo.git.branch(*(["-f"] if force else []), name, tip)
    except git.GitCommandError as exc:
        said = str(exc.stderr).replace("stderr: '", "").strip(" '\n")
        raise ExportError(f"branch {name} not written: {said}") from None


def _checked_out(repo: git.Repo, name: str) -> str:
    """The worktree where the branch is checked out ("" if none)."""
    worktree = ""
    for line in repo.git.worktree("list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            worktree = line.removeprefix("worktree ")
        elif line == f"branch refs/heads/{name}":
            return worktree
    return ""


def _plans(repo: git.Repo, study: Study, kept: list[Keep]) -> list[FilePlan]:
    snaps = [snapshot(repo, k.commit, study.editable) for k in kept]
    paths = sorted(set().union(*snaps))
    found = (plan_file(p, [s.get(p) for s in snaps]) for p in paths)
    return [plan for plan in found if plan is not None]


def _why_folded(step: int, plans: list[FilePlan], kept: list[Keep]) -> str:
    joined = [p.folded[step] for p in plans if step in p.folded]
    if joined:
        return f"rewritten by #{kept[max(joined)].row.experiment}, whose commit holds what is left"
    later = sorted(set().union(*(p.replaced.get(step, set()) for p in plans)))
    by = ", ".join(f"#{kept[k].row.experiment}" for k in later)
    return f"nothing of it is in the champion: undone or rewritten by {by or 'later keeps'}"


def _check_tip(repo: git.Repo, study: Study, tip: str, champion: Keep) -> None:
    if snapshot(repo, tip, study.editable) != snapshot(repo, champion.commit, study.editable):
        raise ExportError(
            f"the export's tip {tip[:7]} does not hold the champion {champion.row.commit}'s "
            "editable files: no branch written"
        )


def export(study: Study, branch: str | None = None, force: bool = False) -> Exported:
    """Write the branch (default autoresearch/<name>-export) and runs/<name>/export.md."""
    name = branch or f"autoresearch/{study.name}-export"
    repo = open_repo(study.repo_root)
    rows = Ledger(study.state_dir / "results.tsv", study.metric.name).rows()
    kept = keeps(repo, rows)
    plans = _plans(repo, study, kept)
    surviving = sorted(set().union(*(p.owners() for p in plans)))
    if not surviving:
        raise ExportError("nothing to export: the champion's editable files are the base's")
    texts = {s: message(kept[s], study, _joined(s, plans, surviving, kept)) for s in surviving}
    commits = write_commits(repo, kept[0].commit, plans, texts)
    _check_tip(repo, study, commits[surviving[-1]], kept[-1])
    folded = [
        (kept[s], _why_folded(s, plans, kept)) for s in range(1, len(kept)) if s not in commits
    ]
    done = Exported(
        name,
        kept[0].commit,
        [(kept[s], commits[s]) for s in surviving],
        folded,
        study.state_dir / "export.md",
    )
    create_branch(repo, name, done.tip, force, f"autoresearch/{study.name}")
    atomic_write(done.summary, summary_markdown(study, rows, done))
    return done


def _joined(step: int, plans: list[FilePlan], surviving: list[int], kept: list[Keep]) -> list[Keep]:
    """The changes folded away whose remaining lines commit `step` holds."""
    found = {f for p in plans for f, to in p.folded.items() if to == step and f not in surviving}
    return [kept[f] for f in sorted(found)]


# the pull request's summary ----------------------------------------------------------------------


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def summary_markdown(study: Study, rows: list[Row], done: Exported) -> str:
    """The pull request's text: the champion against the baseline, the ledger's story (every
    kept change, in the branch or folded away), the suspect keeps."""
    metric = study.metric
    ledger = Ledger(study.state_dir / "results.tsv", metric.name)
    s = report.summary(ledger, metric.direction)
    pct = f" ({s.gain_pct:+.2f}%)" if s.gain_pct is not None else ""
    base, tip = done.base[:7], done.tip[:7]
    lines = [
        f"# {study.name}: {metric.name} ({metric.direction}) from {s.baseline:.6g} to {s.best:.6g}",
        "",
        f"Branch `{done.branch}`: {len(done.commits)} commits on `{base}`, the study's base; its "
        f"tip `{tip}` holds the champion `{s.champion}`'s editable files "
        f"({', '.join(f'`{p}`' for p in study.editable)}).",
        "",
        "| baseline | champion | gain | experiments | kept changes | discarded | crashed | cost |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s.baseline:.6g} | {s.best:.6g} | {s.gain:.6g}{pct} | {s.experiments} "
        f"| {s.keep - 1} | {s.discard} | {s.crash} | ${s.cost_usd:.4f} |",
    ]
    lines += _story(metric.name, done)
    lines += report.suspects_markdown(rows)
    return redact("\n".join(lines) + "\n")


def _story(metric: str, done: Exported) -> list[str]:
    why = {k.row.experiment: text for k, text in done.folded}
    shas = {k.row.experiment: sha for k, sha in done.commits}
    kept = sorted([k for k, _ in done.commits] + [k for k, _ in done.folded], key=_number)
    lines = [
        "",
        "## The kept changes, in order",
        "",
        f"| experiment | hypothesis | {metric} before → after | evidence | in this branch |",
        "|---|---|---|---|---|",
    ]
    for k in kept:
        n = k.row.experiment
        where = f"`{shas[n][:7]}`" if n in shas else f"folded away: {why[n]}"
        lines.append(
            f"| {n} | {_cell(k.row.description)} | {format_metric(k.before)} → "
            f"{format_metric(k.row.metric)} | {_cell(k.row.evidence or '-')} | {where} |"
        )
    return lines


def _number(keep: Keep) -> int:
    return keep.row.experiment
