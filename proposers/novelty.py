"""New ideas only: a candidate compared with everything tried, before it is measured.

Two candidates are the same when their editable files are, once comments, whitespace and the
way literals are written are set aside (`normalise`: Python through its syntax tree, JSON through
its parser, other files line by line). Such an exact duplicate is never measured again. A near
duplicate is a change to the same files as one tried before, within a small edit distance of it
(`distance`, over the normalised lines the two changes remove and add, token by token): the
same change made on another champion, say, or the same one with a detail moved. A model hears
of it, with the earlier experiment, and is asked for another idea.

Pure functions and plain records only: what was tried is read from the repository by
`steps.briefing`, which hands it to the proposers in the Context (`Tried`), and counts what the
checks saved (`Saved`).
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from core.ledger import format_metric

NEAR = 0.05  # a change within this normalised edit distance of a tried one is a near duplicate
CHANGE_CHARS = 4000  # of a change's normalised lines, kept and compared
DESCRIPTION_CHARS = 200
IN_FLIGHT = "in flight"  # the status of a proposal being evaluated now
DUPLICATE = "a tried change again (normalised)"  # opens a refusal: its rows are counted by it

HASH_COMMENTS = {
    ".py", ".pyi", ".sh", ".bash", ".zsh", ".yaml", ".yml", ".toml", ".cfg", ".ini",
    ".conf", ".r", ".jl", ".pl", ".rb", ".mk", ".tf", ".nim", ".cmake",
}  # fmt: skip
SLASH_COMMENTS = {
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cu", ".cuh", ".js", ".mjs", ".cjs",
    ".ts", ".tsx", ".jsx", ".go", ".rs", ".java", ".kt", ".swift", ".scala", ".cs", ".zig",
    ".dart", ".php", ".glsl", ".wgsl", ".metal",
}  # fmt: skip
HASH_NAMES = {"makefile", "dockerfile", "gnumakefile", "cmakelists.txt"}
# a decimal literal, not part of a name, a version (1.2.3) or a quoted string
DECIMAL = re.compile(r"(?<![\w.'\"])(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.])")
SPACES = re.compile(r"[ \t\f\v]+")
TOKEN = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\w+|[^\w\s]")


# Normalising ---------------------------------------------------------------------------


def _comment_marker(path: str) -> str | None:
    p = PurePosixPath(path)
    suffix, name = p.suffix.lower(), p.name.lower()
    if suffix in HASH_COMMENTS or name in HASH_NAMES:
        return "#"
    if suffix in SLASH_COMMENTS:
        return "//"
    return None


def _without_comment(line: str, marker: str) -> str:
    """The line without a trailing comment: the marker at the line's start or after a space,
    outside quotes (a `#` inside a string or `http://` stays)."""
    start = 0
    while (i := line.find(marker, start)) >= 0:
        before = line[:i]
        if (i == 0 or before[-1].isspace()) and before.count('"') % 2 == before.count("'") % 2 == 0:
            return before
        start = i + len(marker)
    return line


def _lines(path: str, text: str) -> str:
    """Any text file: line ends unified, comment lines and trailing comments dropped (for the
    languages whose comments are known), runs of spaces made one (indentation kept), blank lines
    dropped; decimal literals written one way in code."""
    marker = _comment_marker(path)
    out = []
    for raw in text.splitlines():
        line = (_without_comment(raw, marker) if marker else raw).rstrip()
        body = line.lstrip()
        if not body:
            continue
        indent = line[: len(line) - len(body)]
        if marker:
            body = DECIMAL.sub(lambda m: repr(float(m.group())), body)
        out.append(indent + SPACES.sub(" ", body))
    return "\n".join(out) + "\n" if out else ""


@functools.lru_cache(maxsize=256)
def normalise(path: str, text: str) -> str:
    """The text with what cannot change what it does set aside: Python through its syntax tree
    (comments, layout, quotes, parentheses and the way literals are written: `x = 1.0  # c` and
    `x=1.00` are one program; docstrings are kept, being values), JSON through its parser,
    other files line by line. Text that does not parse is normalised line by line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in (".py", ".pyi"):
        try:
            return ast.unparse(ast.parse(text)) + "\n"
        except (SyntaxError, ValueError, RecursionError):
            pass
    if suffix == ".json":
        try:
            return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":")) + "\n"
        except (ValueError, RecursionError):
            pass
    return _lines(path, text)


def digest(path: str, text: str) -> str:
    """The identity of one file's normalised text."""
    return hashlib.sha256(normalise(path, text).encode()).hexdigest()[:32]


def combine(digests: Mapping[str, str]) -> str:
    """The identity of a whole candidate from its files' digests (path -> digest)."""
    blob = json.dumps(sorted(digests.items())).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def fingerprint(files: Mapping[str, str]) -> str:
    """The identity of a whole candidate (all its editable files), normalised."""
    return combine({p: digest(p, t) for p, t in files.items()})


# Changes -------------------------------------------------------------------------------


def change_lines(before: str, after: str) -> str:
    """What a change removes (`-line`) and adds (`+line`), of two normalised texts, in order;
    without line numbers, so that the same change on another champion reads the same."""
    a, b = before.splitlines(), after.splitlines()
    same = 0  # the lines both open with, then those both end with: most changes are local
    while same < min(len(a), len(b)) and a[same] == b[same]:
        same += 1
    a, b = a[same:], b[same:]
    same = 0
    while same < min(len(a), len(b)) and a[-1 - same] == b[-1 - same]:
        same += 1
    a, b = a[: len(a) - same], b[: len(b) - same]
    out: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out += [f"-{line}" for line in a[i1:i2]] + [f"+{line}" for line in b[j1:j2]]
    return "\n".join(out)[:CHANGE_CHARS]


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    """The normalised change from one candidate's files to another's, by path: only the paths
    whose normalised text differs. Texts are raw; a file absent on one side is empty there."""
    out = {}
    for path in sorted(set(before) | set(after)):
        old, new = normalise(path, before.get(path, "")), normalise(path, after.get(path, ""))
        if old != new:
            out[path] = change_lines(old, new)
    return out


def _tokens(change: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for path in sorted(change):
        for line in change[path].splitlines():
            out += [line[:1], *TOKEN.findall(line[1:])]
    return out


def distance(a: Mapping[str, str], b: Mapping[str, str], within: float = 1.0) -> float:
    """How far apart two changes are (from `changes`): 0 the same lines removed and added, 1
    nothing in common. Changes to different sets of files are 1 apart. Token by token (a number
    is one token), so a one-number difference in a small change is far, in a large one near.
    Past `within`, 1.0 is returned without the full comparison."""
    if not a or set(a) != set(b):
        return 1.0
    if a == b:
        return 0.0
    matcher = difflib.SequenceMatcher(None, _tokens(a), _tokens(b), autojunk=False)
    for bound in (matcher.real_quick_ratio, matcher.quick_ratio):
        if 1.0 - bound() > within:
            return 1.0
    return 1.0 - matcher.ratio()


# What was tried ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tried:
    """A candidate measured before (or being measured now): its row, its identity, its change
    (normalised, from the champion it was built on; empty for the baseline, which changed
    nothing)."""

    experiment: int
    status: str  # keep | discard | crash | in flight
    metric: float | None  # None: not measured (yet), or crashed
    description: str
    fingerprint: str
    change: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Match:
    """The tried candidate a proposal repeats: exactly (normalised), or nearly."""

    tried: Tried
    exact: bool
    distance: float


@dataclass
class Saved:
    """Evaluations saved in this campaign: experiments whose duplicate proposal was refused
    (exact: the same candidate, normalised) or sent back to the model and replaced (near)."""

    exact: int = 0
    near: int = 0

    @property
    def total(self) -> int:
        return self.exact + self.near


def match(
    files: Mapping[str, str],
    changed: Mapping[str, str],
    tried: list[Tried],
    near: float = NEAR,
) -> Match | None:
    """What a proposal (`changed`: the new text of the files it changes) on the champion
    (`files`: all its editable files) repeats, if anything: a tried candidate it equals once
    normalised, else the nearest tried change to the same files within `near`."""
    if not tried:
        return None
    candidate = {**files, **changed}
    mine = fingerprint(candidate)
    for t in tried:
        if t.fingerprint == mine:
            return Match(t, True, 0.0)
    if near <= 0:
        return None
    change = changes(files, candidate)
    best: Match | None = None
    for t in tried:
        d = distance(change, t.change, best.distance if best else near)
        if d < near and (best is None or d < best.distance):
            best = Match(t, False, d)
    return best


def saved_in(descriptions: list[str]) -> int:
    """How many ledger rows (their descriptions) are duplicates refused before evaluation."""
    return sum(DUPLICATE in d for d in descriptions)


# What is said about it -----------------------------------------------------------------


def describe(t: Tried, metric: str) -> str:
    """`experiment #N (discard, rmse = 0.41): "its hypothesis"`."""
    if t.status == IN_FLIGHT:
        value = "being evaluated now"
    elif t.metric is None:
        value = "no metric"
    else:
        value = f"{metric} = {format_metric(t.metric)}"
    said = " ".join(t.description.split())[:DESCRIPTION_CHARS]
    return f'experiment #{t.experiment} ({t.status}, {value}): "{said}"'


def refusal(m: Match, metric: str) -> str:
    """Why an exact duplicate is refused (the reason of its invalid row)."""
    return (
        f"{DUPLICATE}: same as {describe(m.tried, metric)}, once comments, whitespace and "
        "the way literals are written are set aside; not evaluated (one evaluation saved)"
    )


def near_request(m: Match, metric: str) -> str:
    """What a model hears of its near duplicate: the earlier experiment, and what to do."""
    return (
        f"this change is nearly the same as {describe(m.tried, metric)} (the same files, "
        f"normalised edit distance {m.distance:.3f}). Propose a different idea; only if yours "
        "differs from it in a way that matters, submit it again unchanged and say how in the "
        "hypothesis"
    )
