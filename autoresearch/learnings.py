"""resource.md: what the study has learned, in short sections a person can read and edit.

Offline, the core keeps a summary block (between two markers) rewritten from the ledger after
every experiment; everything outside the block is the person's and is never touched. A model
proposer may instead return the whole file. Either way the text is bounded and redacted.
"""

from __future__ import annotations

from pathlib import Path

from autoresearch.ledger import atomic_write
from autoresearch.secrets import redact

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


def bound(text: str, max_chars: int) -> str:
    """Cut from the middle of the longest section's list rather than lose the headings."""
    if len(text) <= max_chars:
        return text
    return text[: max_chars - 40].rsplit("\n", 1)[0] + "\n\n(truncated to stay short)\n"


def write(path: Path, text: str, max_chars: int) -> None:
    atomic_write(path, bound(redact(text), max_chars))


def _row_line(r: dict[str, str], metric: str) -> str:
    value = r.get(metric, "")
    return f"- #{r['experiment']} {r['description']} ({metric} {value})"


def summary(rows: list[dict[str, str]], metric: str) -> str:
    """A short, factual account of what was tried, kept, discarded and crashed, and why."""
    kept = [r for r in rows if r["status"] == "keep"]
    if not kept:
        return "No baseline yet."
    base, best = kept[0], kept[-1]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("keep", "discard", "crash")}
    others = len(rows) - sum(counts.values())
    lines = [
        f"Baseline {metric} {base[metric]} (#{base['experiment']}); champion {best[metric]} "
        f"(#{best['experiment']}, {best['commit'][:8]}).",
        f"{len(rows)} experiments: {counts['keep']} kept (baseline included), "
        f"{counts['discard']} discarded, {counts['crash']} crashed"
        + (f", {others} rejected or invalid." if others else "."),
    ]
    sections = [
        ("What worked (kept)", kept[1:]),
        ("What did not (discarded, most recent)", [r for r in rows if r["status"] == "discard"]),
        ("What crashed, and why", [r for r in rows if r["status"] == "crash"]),
        ("Rejected or invalid", [r for r in rows if r["status"] in {"rejected", "invalid"}]),
    ]
    for title, items in sections:
        if items:
            lines += ["", f"### {title}"]
            lines += [_row_line(r, metric) + _why(r) for r in items[-SHOWN:]]
    return "\n".join(lines)


def _why(r: dict[str, str]) -> str:
    return f": {r['evidence']}" if r["status"] in {"crash", "rejected", "invalid"} else ""


def with_summary(existing: str, block: str) -> str:
    """Put the summary block into resource.md, keeping everything a person wrote around it."""
    text = existing if BEGIN in existing and END in existing else (existing or TEMPLATE)
    if BEGIN not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"
