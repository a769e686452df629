"""The researcher's prompt, built from a Context; shared by the claude and agent_cli proposers.

A prompt has three parts, ordered from the most to the least stable so that prompt caching pays:
the system text (role, rules, program.md, the metric) changes only when a person edits
program.md; the files part (editable files in full, protected names and roles) changes only
when a candidate is kept; the task part (ledger rows, learnings, the last crash, the request)
changes every experiment and therefore comes after the last cache breakpoint.

Also here, because both proposers need them: the identity of a candidate (`files_key`) and the
removal of anything that looks like a secret (`redact`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import PurePosixPath

from core import constraints
from core.ledger import format_metric
from proposers.base import Context, Outcome

PROPOSE_TOOL = "propose_change"
LEARN_TOOL = "write_learnings"
CRASH_TAIL_CHARS = 3000
DIFF_CHARS = 4000
DESCRIPTION_CHARS = 200

LEARNING_SECTIONS = (
    "## What worked",
    "## What did not work",
    "## What crashed and why",
    "## Ideas not yet tried",
    "## Assumptions proven wrong",
)

ROLE = """\
You are the researcher of an autonomous hill-climbing study. Each experiment applies one change
that you propose to the editable files, runs a fixed evaluator that turns them into one number,
keeps the change only if that number is really better than the champion's (the best version so
far), and otherwise rolls it back. Code, not you, measures and decides; your job is to choose
changes that are likely to improve the metric and to learn from every result."""

RULES_API = f"""\
- Propose exactly one idea per experiment, small enough that its effect can be told apart, and
  submit it by calling the `{PROPOSE_TOOL}` tool once.
- `hypothesis`: one sentence saying what you change and why you expect the metric to improve.
  It becomes the commit message.
- `edits`: each `search` is copied exactly from the file as shown (whitespace included) and must
  occur exactly once in that file; `replace` is its new text. Use several edits for several
  places. `path` is the path shown in `<file path="...">`.
- Only the editable files may change. The protected files are the fixed evaluator and its data:
  never edit them, and never game the metric (no special cases for the evaluation data, no
  changes to how the number is computed).
- Do not repeat an experiment that the history shows was already tried; learn from crashes.
- Never write credentials, keys or tokens into any file."""

RULES_AGENT = """\
- Make exactly one change (one idea), small enough that its effect can be told apart.
- Edit only the editable files listed below, in place, in the current directory. Do not create,
  delete or rename other files, and never touch the protected files (the fixed evaluator and its
  data). Never game the metric.
- Do not run git and do not commit: the harness takes your diff, commits and evaluates it.
- Do not repeat an experiment that the history shows was already tried; learn from crashes.
- Never write credentials, keys or tokens into any file.
- When you are done, print one last line: `HYPOTHESIS: <one sentence: what you changed and why
  it should improve the metric>`."""


# Secrets and identity ------------------------------------------------------------------


def files_key(files: dict[str, str]) -> str:
    """A stable identity of a candidate: the hash of all its editable files' text."""
    blob = json.dumps(sorted(files.items()), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


# Pieces --------------------------------------------------------------------------------


def metric_line(context: Context) -> str:
    m = context.study.metric
    better = "lower" if m.direction == "minimize" else "higher"
    return f"The metric is `{m.name}`; {better} is better ({m.direction})."


def evaluator_line(context: Context) -> str:
    return context.study.config.evaluator.describe()


def decision_line(context: Context) -> str:
    """How the code decides, so the researcher aims above the noise and keeps code small; and
    the constraints a candidate must hold, so that it does not spend one on breaking them."""
    said = constraints.prompt_line(context.study.metric.constraints)
    return context.study.rule.prompt_line() + (f"\n{said}" if said else "")


def study_path(context: Context, path: str) -> str:
    """A repository-relative path as seen from the study folder (an agent's working directory)."""
    rel = PurePosixPath(context.study.rel.as_posix())
    p = PurePosixPath(path)
    if str(rel) in ("", "."):
        return str(p)
    try:
        return str(p.relative_to(rel))
    except ValueError:
        return str(p)


def render_file(path: str, text: str) -> str:
    tail = "" if text.endswith("\n") or not text else "\n"
    return f'<file path="{path}">\n{text}{tail}</file>'


def files_origin(context: Context) -> str:
    """Where the files shown come from: the champion, or a node a tree search extends."""
    node = context.node
    if node is None:
        return "the champion: the best version so far"
    value = f"{context.study.metric.name} = {format_metric(node.metric)}"
    return (
        f"experiment {node.experiment}, {value}: close behind the champion; a tree search "
        "extends it to look past the champion's hill"
    )


def champion_value(context: Context) -> str | None:
    """The metric of the last kept (or baseline) experiment in the history, if any."""
    name = context.study.metric.name
    for row in reversed(context.history):
        if row.kept:
            return f"{name} = {format_metric(row.metric)} (experiment {row.experiment})"
    return None


def render_history(context: Context, rows: int) -> str:
    """The last `rows` ledger rows as a small tab-separated table, oldest first."""
    name = context.study.metric.name
    recent = context.history[-rows:] if rows > 0 else []
    if not recent:
        return "No experiments yet: this is the first one after the baseline."
    head = f"experiment\tcommit\t{name}\tstatus\tdescription"
    lines = [head]
    for row in recent:
        desc = " ".join(row.description.split())[:DESCRIPTION_CHARS]
        lines.append(
            f"{row.experiment}\t{row.commit[:7]}\t{format_metric(row.metric)}\t{row.status}\t{desc}"
        )
    shown = f"last {len(recent)} of {len(context.history)}"
    return f"({shown}, oldest first)\n" + "\n".join(lines)


def render_learnings(context: Context) -> str:
    text = context.learnings.strip() or "(empty: nothing learned yet)"
    return f"<learnings>\n{text}\n</learnings>"


def render_in_flight(context: Context) -> str:
    """The hypotheses being measured right now in other slots: not to be proposed again."""
    if not context.in_flight:
        return ""
    lines = "\n".join(f"- {' '.join(p.hypothesis.split())[:DESCRIPTION_CHARS]}"
                      for p in context.in_flight)  # fmt: skip
    return f"## Being evaluated now, in parallel (do not duplicate these)\n{lines}\n\n"


def render_notes(context: Context) -> str:
    """The person's notes: asked of every proposal until they are removed."""
    if not context.notes:
        return ""
    lines = "\n".join(f"- {note}" for note in context.notes)
    return f"## Notes from the person running this study (follow them)\n{lines}\n\n"


def render_crash(context: Context) -> str:
    if not context.last_crash:
        return ""
    tail = context.last_crash[-CRASH_TAIL_CHARS:]
    return f"## The last crash: tail of its log\n```text\n{tail}\n```\n\n"


# Prompts -------------------------------------------------------------------------------


def system_text(context: Context, agent: bool = False) -> str:
    """Role, study, program.md and rules: stable for the whole campaign."""
    program = context.program.strip() or "(no program.md: improve the metric)"
    rules = RULES_AGENT if agent else RULES_API
    return (
        f"{ROLE}\n\n# The study: {context.study.name}\n{metric_line(context)} "
        f"{evaluator_line(context)}\n{decision_line(context)}\n\n"
        f"# Research program (program.md)\n{program}\n\n"
        f"# Rules\n{rules}\n"
    )


def files_text(context: Context, agent: bool = False) -> str:
    """The editable files in full and the protected names: stable until a candidate is kept."""
    show = (lambda p: study_path(context, p)) if agent else (lambda p: p)
    blocks = "\n\n".join(render_file(show(p), t) for p, t in sorted(context.files.items()))
    protected = "\n".join(f"- {show(p)}" for p in context.protected) or "- (none)"
    return (
        f"# Editable files ({files_origin(context)})\n\n"
        f"{blocks}\n\n"
        "# Protected files (the fixed evaluator and its data: read-only)\n"
        f"{protected}\n{evaluator_line(context)}\n"
    )


def task_text(context: Context, rows: int, agent: bool = False) -> str:
    """History, learnings, last crash and the request: changes every experiment."""
    m = context.study.metric
    champion = champion_value(context)
    better = "lower" if m.direction == "minimize" else "higher"
    ask = (
        "Edit the files now, then print the HYPOTHESIS line."
        if agent
        else f"Call the `{PROPOSE_TOOL}` tool once with your hypothesis and edits."
    )
    return (
        f"# Experiment {context.experiment}\n\n"
        f"## Recent experiments\n{render_history(context, rows)}\n\n"
        f"Champion: {champion or 'the baseline (no measured champion in the history yet)'}\n\n"
        "## Learnings (resource.md: notes kept by you and edited by people; a person's edits "
        f"take precedence)\n{render_learnings(context)}\n\n"
        f"{render_notes(context)}"
        f"{render_crash(context)}"
        f"{render_in_flight(context)}"
        "## Your task\n"
        f"Propose the next experiment: one change to the editable files that you expect to make "
        f"`{m.name}` {better}. Do not repeat an experiment listed above. {ask}\n"
    )


def agent_prompt(context: Context, rows: int) -> str:
    """One text for a coding-agent CLI, which edits the files itself."""
    return "\n".join(
        [
            system_text(context, agent=True),
            files_text(context, agent=True),
            task_text(context, rows, agent=True),
        ]
    )


def outcome_diff(context: Context, outcome: Outcome) -> str:
    """A unified diff of the proposal against the champion, cut to a few thousand characters."""
    chunks: list[str] = []
    for path, new in sorted(outcome.proposal.files.items()):
        old = context.files.get(path, "")
        chunks.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"a/{path}",
                tofile=f"b/{path}",
            )
        )
    diff = "".join(chunks)
    return diff if len(diff) <= DIFF_CHARS else diff[:DIFF_CHARS] + "\n... (diff cut)\n"


def outcome_text(context: Context, outcome: Outcome, with_diff: bool = True) -> str:
    """What became of a proposal: status, metric against the champion, reason, log tail."""
    name = context.study.metric.name
    metric = "none" if outcome.metric is None else f"{outcome.metric:.6g}"
    champion = "none" if outcome.champion_metric is None else f"{outcome.champion_metric:.6g}"
    hypothesis = " ".join(outcome.proposal.hypothesis.split())
    log = outcome.log_tail[-CRASH_TAIL_CHARS:] if outcome.log_tail else ""
    log_part = f"log tail:\n```text\n{log}\n```\n" if log else ""
    diff = f"diff:\n```diff\n{outcome_diff(context, outcome)}```\n" if with_diff else ""
    return (
        "<outcome>\n"
        f"experiment: {context.experiment}\n"
        f"hypothesis: {hypothesis}\n"
        f"status: {outcome.status}\n"
        f"{name}: {metric} (champion before: {champion})\n"
        f"reason: {' '.join(outcome.reason.split())}\n"
        f"{diff}{log_part}"
        "</outcome>"
    )


def learn_instructions(max_chars: int) -> str:
    sections = "\n".join(LEARNING_SECTIONS)
    return (
        "Rewrite the learnings (resource.md) so that the next experiments benefit from this "
        f"result. Use short bullet points under these sections:\n{sections}\n"
        "Give numbers for what worked and what did not; say why a crash happened; drop ideas "
        "once tried. Keep what a person wrote unless this result proves it wrong. Merge or drop "
        f"old points to stay at most {max_chars} characters in total. Never include credentials "
        f"or keys. Call the `{LEARN_TOOL}` tool with the full new text.\n"
    )


def learn_task(context: Context, outcome: Outcome, max_chars: int) -> str:
    """The request to rewrite resource.md, standalone (after the cached files prefix)."""
    return (
        f"# Update the learnings after experiment {context.experiment}\n\n"
        f"{outcome_text(context, outcome)}\n\n"
        f"## The current learnings (resource.md)\n{render_learnings(context)}\n\n"
        f"## Your task\n{learn_instructions(max_chars)}"
    )


def learn_followup(context: Context, max_chars: int, learnings_edited: bool) -> str:
    """The request to rewrite resource.md, in the conversation that proposed the change."""
    edited = (
        "A person edited the learnings since you read them; here they are now:\n"
        f"{render_learnings(context)}\n\n"
        if learnings_edited
        else ""
    )
    return f"{edited}{learn_instructions(max_chars)}"
