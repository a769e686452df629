"""resource.md: what the study has learned, in short sections a person can read and edit.

Offline, the core keeps a summary block (between two markers) rewritten from the ledger after
every experiment; everything outside the block is the person's and is never touched. A model
proposer may instead return the whole file. Either way the text is bounded and redacted.
"""

from __future__ import annotations

from pathlib import Path

from core.files import atomic_write
from core.ledger import Row, Status, format_metric
from core.secrets import redact

BEGIN = "<!-- autoresearch:summary (rewritten after each experiment; edit outside this block) -->"
END = "<!-- /autoresearch:summary -->"
TEMPLATE = f"""# Learnings

Notes for the researcher. Edit freely outside the summary block: the next proposal reads them.

{BEGIN}
{END}
"""
SHOWN = 8  # rows listed per section


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def cut(text: str, max_chars: int) -> str:
    """The text's first max_chars characters, at a line end, marked as cut when it was."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - 30)].rsplit("\n", 1)[0] + "\n(cut to stay short)\n"


def write(path: Path, notes: str, block: str, max_chars: int) -> None:
    """resource.md: the notes (a person's or a model's) with the summary block in them.

    Both are bounded so the whole file stays under max_chars: the block gets at most half,
    the notes around it the rest. Secrets are redacted.
    """
    block = cut(block, max_chars // 2)
    head, tail = around_block(notes)
    room = max(0, max_chars - len(block) - len(BEGIN) - len(END) - 4)
    head = cut(head, room)
    tail = cut(tail, max(0, room - len(head)))
    atomic_write(path, redact(f"{head}{BEGIN}\n{block}\n{END}{tail}"))


def _row_line(r: Row, metric: str) -> str:
    return f"- #{r.experiment} {r.description[:160]} ({metric} {format_metric(r.metric)})"


UNSUCCESSFUL = (Status.CRASH, Status.REJECTED, Status.INVALID)
SCORED = (Status.KEEP, Status.DISCARD)


def summary(rows: list[Row], metric: str) -> str:
    """A short, factual account of what was tried, kept, discarded and crashed, and why."""
    kept = [r for r in rows if r.kept]
    if not kept:
        return "No baseline yet."
    base, best = kept[0], kept[-1]
    counts = {s: sum(r.status == s for r in rows) for s in UNSUCCESSFUL[:1] + SCORED}
    others = len(rows) - sum(counts.values())
    lines = [
        f"Baseline {metric} {format_metric(base.metric)} (#{base.experiment}); champion "
        f"{format_metric(best.metric)} (#{best.experiment}, {best.commit[:8]}).",
        f"{len(rows)} experiments: {counts[Status.KEEP]} kept (baseline included), "
        f"{counts[Status.DISCARD]} discarded, {counts[Status.CRASH]} crashed"
        + (f", {others} rejected or invalid." if others else "."),
    ]
    sections = [
        ("What worked (kept)", kept[1:]),
        ("What did not (discarded, most recent)", [r for r in rows if r.status == Status.DISCARD]),
        ("What crashed, and why", [r for r in rows if r.status == Status.CRASH]),
        ("Rejected or invalid", [r for r in rows if r.status in UNSUCCESSFUL[1:]]),
    ]
    for title, items in sections:
        if items:
            lines += ["", f"### {title}"]
            lines += [_row_line(r, metric) + _why(r) for r in items[-SHOWN:]]
    return "\n".join(lines)


def _why(r: Row) -> str:
    return f": {r.evidence}" if r.status in UNSUCCESSFUL else ""


def around_block(text: str) -> tuple[str, str]:
    """What a person (or a model) wrote before and after the summary block.

    A file without a whole block (none yet, or a marker lost in an edit) keeps all its text
    before a new block; a stray marker is dropped.
    """
    text = text or TEMPLATE
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        return head, rest.split(END, 1)[1]
    text = text.replace(BEGIN, "").replace(END, "").rstrip()
    return text + "\n\n", "\n"
