"""Summaries of a study's ledger: tables (pandas), the campaign summary, the champion's markdown,
progress.png (matplotlib, imported only when a chart is drawn) and a self-contained report.html;
for a study with several objectives, the Pareto front (a table, and pareto.png).

Everything is read from the ledger's typed rows: the table's columns are Row's fields (the
metric's under the study's metric name, as in results.tsv) and its status column holds Status
values, so a column added to Row or a status added to Status reaches the report by itself.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_origin, get_type_hints

import pandas as pd

from core.decide import Direction, gain
from core.files import atomic_write
from core.ledger import Ledger, Row, Status, numbers_text
from core.pareto import Point, front, points
from core.secrets import known_secrets, redact
from proposers.portfolio import row_gains

if TYPE_CHECKING:
    from core.study import Study

# The table's columns: Row's fields but `extra` (columns this version does not know), typed as
# Row types them whatever the rows (or none) and whatever pandas would infer: Status values stay.
TYPES: dict[str, Any] = {f.name: get_type_hints(Row)[f.name] for f in fields(Row)}
TYPES.pop("extra")
# dict fields (the evaluator's other numbers) show as results.tsv writes them: `name=value ...`
NUMBERS = {name for name, t in TYPES.items() if get_origin(t) is dict}
SHOWN = {int: "int64", float: "float64", str: "str"}
DTYPES = {n: "str" if n in NUMBERS else SHOWN.get(t, "object") for n, t in TYPES.items()}


def _field(name: str) -> str:
    """A Row field's name, checked when this module loads: a field renamed in core.ledger fails
    at import, not halfway through a report."""
    if name not in TYPES:
        raise AttributeError(f"core.ledger.Row has no field {name!r}")
    return name


# The only columns the report reads by name.
EXPERIMENT = _field("experiment")
STATUS = _field("status")
DECIDED = _field("decided_at")
DESCRIPTION = _field("description")
COMMIT = _field("commit")
METRIC = _field("metric")
PROPOSER = _field("proposer")
STARTED = _field("started_at")
DURATION = _field("duration_s")
COST = _field("cost_usd")
SUSPECT = _field("suspect")
TOKENS = [name for name in TYPES if name.startswith("tokens_")]
COUNTED = [s for s in Status if s is not Status.HOLDOUT]  # outcomes; a holdout is no experiment's
CHARTED = (Status.KEEP, Status.DISCARD)  # rows whose metric is a real measurement of a candidate


def artifact_key(name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "study"


def results_frame(ledger: Ledger) -> pd.DataFrame:
    """results.tsv as a table, built from the typed rows: the file's columns in its order,
    numbers as numbers, statuses as Status, text redacted again."""
    rows = ledger.rows()
    frame = pd.DataFrame({n: pd.Series(_column(n, rows), dtype=DTYPES[n]) for n in TYPES})
    return frame.rename(columns={METRIC: ledger.metric})[ledger.columns]


def _column(name: str, rows: list[Row]) -> list[Any]:
    values = [getattr(r, name) for r in rows]
    if name in NUMBERS:
        return [numbers_text(v) for v in values]
    return _redacted(values) if TYPES[name] is str else values


def _redacted(texts: list[str]) -> list[str]:
    """Text redacted again, for a secret known since the row was written: a column in one pass,
    value by value only where a match ran from one value into the next (fewer lines came back).
    """
    secrets = known_secrets()
    out = redact("\n".join(texts), secrets).split("\n")
    return out if len(out) == len(texts) else [redact(t, secrets) for t in texts]


@dataclass(frozen=True)
class Summary:
    """Baseline, best, gain and counts: what a person wants to see first in the morning.

    `publish` adds the report's path and the campaign how it ended, with `dataclasses.replace`.
    """

    experiments: int = 0  # rows, holdouts included
    keep: int = 0  # counts the baseline: the kept changes are one fewer
    discard: int = 0
    crash: int = 0
    rejected: int = 0
    invalid: int = 0
    screened: int = 0  # stopped by a cheap stage of the evaluation
    suspect: int = 0  # rows whose keep the audit doubts (any status: a reverted one too)
    baseline: float | None = None  # None: no baseline yet
    best: float | None = None
    champion: str | None = None  # the champion's commit
    cost_usd: float = 0.0
    gain: float | None = None  # signed: positive when the champion is better than the baseline
    gain_pct: float | None = None  # None when the baseline is 0
    report: str | None = None  # report.html, once written
    ran: int = 0  # experiments the campaign ran
    stop: str = ""  # why the campaign stopped before its budget, if it did
    overfitting: bool = False  # a holdout check during the campaign found the champion worse

    def count(self, status: Status) -> int:
        """How many rows ended in `status` (a holdout is not counted)."""
        return int(getattr(self, status.value)) if status in COUNTED else 0


def summary(ledger: Ledger, direction: Direction) -> Summary:
    """The ledger's Summary; its gain is signed by `direction`."""
    rows = ledger.rows()
    n = Counter(r.status for r in rows)
    counts = Summary(
        experiments=len(rows),
        **{status.value: n[status] for status in COUNTED},
        suspect=len(suspects(rows)),
        cost_usd=math.fsum(r.cost_usd for r in rows),
    )
    base, best = ledger.baseline(), ledger.champion()
    if not (base and best):
        return counts
    up = gain(direction, best.metric, base.metric)
    pct = 100 * up / abs(base.metric) if base.metric else None
    return replace(
        counts, baseline=base.metric, best=best.metric, champion=best.commit, gain=up, gain_pct=pct
    )


def summary_markdown(
    study: Study, ledger: Ledger, chart: str = "", report_path: Path | None = None
) -> str:
    """The champion against the baseline; with the chart, the cost so far and the report's path;
    the keeps the audit doubts and, with several objectives, the Pareto front.
    The study and its ledger only, not a Lab: the Prefect markdown artifact of `publish`."""
    metric = study.metric
    s = summary(ledger, metric.direction)
    lines = [f"# {study.name}: {metric.name} ({metric.direction})", ""]
    if s.baseline is None:
        return "\n".join(lines + ["No baseline yet."])
    pct = f" ({s.gain_pct:.2f}%)" if s.gain_pct is not None else ""
    rows = ledger.rows()
    tokens_in, tokens_out = sum(r.tokens_in for r in rows), sum(r.tokens_out for r in rows)
    lines += [
        "| baseline | champion | gain | kept | discarded | crashed | screened | cost |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s.baseline:.6g} | {s.best:.6g} (`{s.champion}`) | {s.gain:.6g}{pct} "
        f"| {s.keep} | {s.discard} | {s.crash} | {s.screened} | ${s.cost_usd:.4f} |",
        "",
        f"Cost so far: **${s.cost_usd:.4f}** over {s.experiments} experiments "
        f"({tokens_in} tokens in, {tokens_out} out).",
    ]
    lines += suspects_markdown(rows)
    lines += _proposers_markdown(proposers_frame(rows, metric.direction))
    lines += _pareto_markdown(pareto(study, rows))
    if chart:
        lines += ["", chart]
    if report_path is not None:
        uri = report_path.resolve().as_uri()
        lines += ["", f"Full report: [report.html]({uri}) (`{report_path.resolve()}`)"]
    return redact("\n".join(lines + _last_kept_change(study.repo_root, rows)))


def pareto_markdown(study: Study, rows: list[Row]) -> str:
    """The Pareto front alone (the UI's `<name>-pareto` artifact while a campaign runs); empty
    for a study of one number."""
    found = pareto(study, rows)
    if found is None:
        return ""
    return redact("\n".join([f"# {study.name}", *_pareto_markdown(found)]))


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def _pareto_markdown(found: Front | None) -> list[str]:
    if found is None:
        return []
    lines = ["", f"## Pareto front: {found.title()}", "", found.note()]
    if not found.front:
        return lines
    lines += [
        "",
        "| | experiment | commit | " + " | ".join(found.names) + " | description |",
        "|---" * (len(found.names) + 4) + "|",
    ]
    for p in found.front:
        mark = f"**{found.mark(p)}**" if p.commit == found.champion else found.mark(p)
        values = " | ".join(f"{v:.6g}" for v in p.values)
        text = _markdown_cell(p.description)
        lines.append(f"| {mark} | {p.experiment} | `{p.commit}` | {values} | {text} |")
    return lines


def suspects_markdown(rows: list[Row]) -> list[str]:
    """The keeps the audit doubted (a markdown table; nothing when there are none)."""
    doubted = suspects(rows)
    if not doubted:
        return []
    lines = [
        "",
        f"## Suspect keeps ({len(doubted)})",
        "",
        "| experiment | commit | status | why, and what re-measuring found | description |",
        "|---|---|---|---|---|",
    ]
    for r in doubted:
        why, text = _markdown_cell(r.suspect), _markdown_cell(r.description)
        lines.append(f"| {r.experiment} | `{r.commit}` | {r.status} | {why} | {text} |")
    return lines


def _last_kept_change(repo_root: Path, rows: list[Row]) -> list[str]:
    """The diff of the last kept change, when there is one after the baseline."""
    kept = [r for r in rows if r.kept]
    if len(kept) < 2:
        return []
    last = kept[-1]
    import git

    diff = git.Repo(repo_root).git.show("--format=", last.commit)  # the worktrees share it
    heading = f"## Last kept change (#{last.experiment}): {last.description}"
    return ["", heading, "", "```diff", diff[:6000], "```"]


# several objectives, and doubted keeps -----------------------------------------------------


@dataclass(frozen=True)
class Front:
    """A study's Pareto front: its objectives (the metric first) and their directions, every
    measured candidate that reports them all, those on the front, and the champion's commit."""

    names: list[str]
    directions: list[Direction]
    measured: list[Point]
    front: list[Point]
    champion: str | None

    def mark(self, point: Point) -> str:
        if point.commit == self.champion:
            return "champion"
        return "kept" if point.kept else ""

    def title(self) -> str:
        return ", ".join(f"{n} ({d})" for n, d in zip(self.names, self.directions, strict=True))

    def note(self) -> str:
        """How many are on the front, and where the champion stands."""
        if not self.measured:
            return "No measured candidate reports every objective yet."
        text = (
            f"{len(self.front)} of {len(self.measured)} measured candidates are on the front: "
            "no other is better on one objective without being worse on another."
        )
        if self.champion is None or any(p.commit == self.champion for p in self.front):
            return text
        if any(p.commit == self.champion for p in self.measured):
            return (
                f"{text} The champion `{self.champion}` is not on it: {self.names[0]} alone "
                "chooses the champion (within the constraints)."
            )
        return text + f" The champion `{self.champion}` does not report every objective."


def pareto(study: Study, rows: list[Row]) -> Front | None:
    """The front of a study with objectives (study.yaml `metric.objectives`), else None."""
    objectives = study.metric.all_objectives
    if not objectives:
        return None
    directions = list(objectives.values())
    measured = points(rows, study.metric.name, objectives)
    champion = next((r.commit for r in reversed(rows) if r.kept), None)
    return Front(list(objectives), directions, measured, front(measured, directions), champion)


def front_frame(found: Front) -> pd.DataFrame:
    """The front as a table: each candidate's objectives, the champion and the kept marked."""
    table: dict[str, list[Any]] = {
        EXPERIMENT: [p.experiment for p in found.front],
        COMMIT: [p.commit for p in found.front],
    }
    for i, name in enumerate(found.names):
        table[name] = [p.values[i] for p in found.front]
    table["mark"] = [found.mark(p) for p in found.front]
    table[DESCRIPTION] = _redacted([p.description for p in found.front])
    return pd.DataFrame(table)


def suspects(rows: list[Row]) -> list[Row]:
    """The rows whose keep the audit doubts (kept, or reverted after re-measuring)."""
    return [r for r in rows if r.suspect]


def suspects_frame(rows: list[Row], metric: str) -> pd.DataFrame:
    doubted = suspects(rows)
    return pd.DataFrame(
        {
            EXPERIMENT: [r.experiment for r in doubted],
            COMMIT: [r.commit for r in doubted],
            STATUS: [r.status.value for r in doubted],
            metric: [r.metric for r in doubted],
            SUSPECT: _redacted([r.suspect for r in doubted]),
            DESCRIPTION: _redacted([r.description for r in doubted]),
        }
    )


# charts and the report ---------------------------------------------------------------------


def running_best(frame: pd.DataFrame, metric: str, direction: str) -> pd.Series:
    """The champion's metric after each experiment: the best kept value so far."""
    kept = frame[metric].where(frame[STATUS] == Status.KEEP)
    best = kept.cummin() if direction == "minimize" else kept.cummax()
    return best.ffill()


def decided_times(frame: pd.DataFrame) -> pd.Series | None:
    """When each row was decided, for a study whose results arrive over time (A/B tests: the
    `decided_at` of every measured row); None for a study measured on the spot."""
    measured = frame[frame[STATUS].isin(CHARTED)]
    if DECIDED not in frame or measured.empty or not measured[DECIDED].astype(bool).all():
        return None
    return pd.to_datetime(frame[DECIDED].where(frame[DECIDED].astype(bool)), utc=True)


def progress_figure(frame: pd.DataFrame, metric: str, direction: str, title: str) -> Any:
    """Karpathy's progress.png: every measured experiment, kept against discarded, the best line.
    Results that arrive over days are drawn against the time each was decided, each point
    labelled with its experiment's number.

    Built on a bare Figure (no pyplot): no global state, safe inside a worker thread.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    times = decided_times(frame)
    frame = frame.assign(_x=frame[EXPERIMENT] if times is None else times)
    measured = frame[frame[STATUS].isin(CHARTED) & frame[metric].notna()]
    discarded = measured[measured[STATUS] == Status.DISCARD]
    kept = measured[measured[STATUS] == Status.KEEP]
    ax.scatter(discarded["_x"], discarded[metric], s=18, c="#b0b0b0", label="discarded")
    ax.scatter(kept["_x"], kept[metric], s=42, c="#2ca02c", label="kept", zorder=3)
    best = running_best(frame, metric, direction)
    drawn = frame["_x"].notna()
    ax.step(
        frame["_x"][drawn], best[drawn], where="post", c="#1f77b4", lw=1.5, label="running best"
    )
    _axis(ax, times is not None, measured, metric)
    later = kept.iloc[1:]
    for n, value, text in zip(later["_x"], later[metric], later[DESCRIPTION], strict=True):
        ax.annotate(
            str(text)[:40].replace("$", r"\$"),  # no mathtext
            (n, value),
            fontsize=6,
            rotation=20,
            xytext=(3, 4),
            textcoords="offset points",
            color="#2c6e2c",
        )
    crashed = int((frame[STATUS] == Status.CRASH).sum())
    ax.set_title(f"{title}: {metric} ({direction}); {len(frame)} experiments, {crashed} crashed")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if len(measured):
        ax.legend(loc="best", fontsize=8)
    return fig


def _axis(ax: Any, timed: bool, measured: pd.DataFrame, metric: str) -> None:
    """Experiment numbers on the x axis; or the decision time, each point labelled `#n`."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.ticker import MaxNLocator

    if not timed:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("experiment")
        return
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("decided (UTC): results arrive over time; each point is its experiment #")
    for x, y, n in zip(measured["_x"], measured[metric], measured[EXPERIMENT], strict=True):
        ax.annotate(f"#{n}", (x, y), fontsize=6, xytext=(-3, -9), textcoords="offset points")


def progress_png(frame: pd.DataFrame, metric: str, direction: str, title: str, dpi: int) -> bytes:
    return _png(progress_figure(frame, metric, direction, title), dpi)


def _png(fig: Any, dpi: int) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


PARETO_STYLES: dict[str, dict[str, Any]] = {
    "discarded": {"s": 18, "c": "#b0b0b0"},
    "kept": {"s": 42, "c": "#2ca02c"},
    "on the front": {"s": 110, "facecolors": "none", "edgecolors": "#1f77b4"},
    "champion": {"s": 260, "c": "#d62728", "marker": "*"},
}


def pareto_figure(found: Front, title: str) -> Any:
    """pareto.png: every measured candidate on the first two objectives, kept against discarded,
    the front of those two as a step line, the champion starred. A bare Figure, as above."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    (x, y), directions = found.names[:2], found.directions[:2]
    groups = {
        "discarded": [p for p in found.measured if not p.kept],
        "kept": [p for p in found.measured if p.kept],
        "on the front": found.front,
        "champion": [p for p in found.measured if p.commit == found.champion],
    }
    for label, group in groups.items():
        if group:
            xs, ys = [p.values[0] for p in group], [p.values[1] for p in group]
            ax.scatter(xs, ys, zorder=3, label=label, **PARETO_STYLES[label])
    plane = [replace(p, values=p.values[:2]) for p in found.measured]
    line = sorted(front(plane, directions), key=lambda p: p.values[0])
    where = "post" if directions[0] == "minimize" else "pre"  # the edge of what the front beats
    ax.step([p.values[0] for p in line], [p.values[1] for p in line], where=where, c="#1f77b4")
    for p in found.front:
        ax.annotate(f"#{p.experiment}", p.values[:2], fontsize=7, xytext=(4, 4),
                    textcoords="offset points", color="#1f4e79")  # fmt: skip
    ax.set_title(f"{title}: Pareto front, {len(found.front)} of {len(found.measured)} measured")
    ax.set_xlabel(f"{x} ({directions[0]})")
    ax.set_ylabel(f"{y} ({directions[1]})")
    ax.grid(alpha=0.3)
    if found.measured:
        ax.legend(loc="best", fontsize=8)
    return fig


def data_uri(png: bytes) -> str:
    """A PNG inline, for a self-contained page and for the Prefect UI's markdown artifacts."""
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def kept_changes(repo_root: Path, rows: list[Row]) -> list[tuple[Row, str]]:
    """Each kept change after the baseline, with its diff (`git show` of its commit)."""
    import git

    repo = git.Repo(repo_root)
    out = []
    for row in [r for r in rows if r.kept][1:]:
        try:
            diff = repo.git.show("--format=%H%n%an %aI%n%n%B", "--stat", "-p", row.commit)
        except git.GitCommandError as exc:
            diff = f"(commit {row.commit} not found in {repo_root}: {exc.stderr.strip()})"
        out.append((row, diff))
    return out


def counts_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """How many experiments ended in each status (keep counts the baseline)."""
    order = [*COUNTED, *sorted(set(frame[STATUS]) - set(COUNTED))]
    counts = [int((frame[STATUS] == s).sum()) for s in order]
    return pd.DataFrame({STATUS: order, "experiments": counts})


def costs_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Tokens and dollars by proposer, with a total row."""
    spent = [*TOKENS, COST]
    by = frame.groupby(PROPOSER, sort=True).agg(
        experiments=(COST, "size"), **{c: (c, "sum") for c in spent}
    )
    by.loc["total"] = by.sum()
    by["experiments"] = by["experiments"].astype(int)
    by[COST] = by[COST].map("{:.6f}".format)  # dollars as in results.tsv
    return by.reset_index()


def proposers_frame(rows: list[Row], direction: Direction) -> pd.DataFrame:
    """Each proposer's experiments, keeps, dollars, time and gain (what its kept changes gained
    on the champion before each, as a portfolio weighs it), per dollar and per hour; the
    baseline and the holdout checks are no proposer's."""
    by: dict[str, dict[str, float]] = {}
    for row, up in zip(rows, row_gains(rows, direction), strict=True):
        if row.status == Status.HOLDOUT or row.proposer == "-":
            continue
        one = by.setdefault(row.proposer, dict.fromkeys(PROPOSER_COLUMNS[1:6], 0.0))
        one["experiments"] += 1
        one["keeps"] += row.kept
        one[COST] += row.cost_usd
        one[DURATION] += row.duration_s
        one["gain"] += up
    frame = pd.DataFrame(
        [{PROPOSER: name, **one} for name, one in sorted(by.items())], columns=PROPOSER_COLUMNS
    )
    frame = frame.astype({"experiments": "int64", "keeps": "int64"})
    frame["gain_per_usd"] = (frame["gain"] / frame[COST]).where(frame[COST] > 0)
    frame["gain_per_hour"] = (frame["gain"] / (frame[DURATION] / 3600)).where(frame[DURATION] > 0)
    return frame


PROPOSER_COLUMNS = [PROPOSER, "experiments", "keeps", COST, DURATION, "gain"]


def _proposers_html(frame: pd.DataFrame) -> list[str]:
    """The table by proposer, when there are several (a portfolio's members, or campaigns)."""
    if len(frame) < 2:
        return []
    return ["<h2>By proposer</h2>", _table(frame, "proposers")]


def _proposers_markdown(frame: pd.DataFrame) -> list[str]:
    if len(frame) < 2:
        return []
    lines = [
        "",
        "| proposer | experiments | keeps | cost | time | gain | gain per $ |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in frame.itertuples(index=False):
        per_usd = "" if pd.isna(r.gain_per_usd) else f"{r.gain_per_usd:.6g}"
        lines.append(
            f"| {r.proposer} | {r.experiments} | {r.keeps} | ${r.cost_usd:.4f} "
            f"| {r.duration_s:.0f}s | {r.gain:.6g} | {per_usd} |"
        )
    return lines


def timeline_frame(frame: pd.DataFrame, metric: str, direction: str) -> pd.DataFrame:
    """The metric over time: one row per experiment, with the best so far."""
    out = frame[[EXPERIMENT, STARTED, STATUS, metric, DURATION, COST, COMMIT]].copy()
    out["best so far"] = running_best(frame, metric, direction)
    out[DESCRIPTION] = frame[DESCRIPTION]
    return out


def _table(frame: pd.DataFrame, table_id: str) -> str:
    return frame.to_html(index=False, table_id=table_id, border=0, na_rep="", escape=True)


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}
td:last-child{text-align:left}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:12px}
img{max-width:100%}
"""


def report_html(study: Study, ledger: Ledger, png: bytes, pareto_png: bytes = b"") -> str:
    """One self-contained page: summary, chart, the Pareto front (with several objectives), the
    keeps the audit doubts, counts, costs, the timeline, diffs, learnings."""
    import html

    frame = results_frame(ledger)
    rows = ledger.rows()
    metric, direction = study.metric.name, study.metric.direction
    title = html.escape(f"{study.name}: {metric} ({direction})")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>",
        f"<p>results: {html.escape(str(ledger.path))}</p>",
        "<h2>Summary</h2>",
        _table(summary_frame(summary(ledger, direction)), "summary"),
        f"<img alt='progress' src='{data_uri(png)}'>",
        *_pareto_html(pareto(study, rows), pareto_png),
        *_suspects_html(rows, metric),
        "<h2>Kept, discarded, crashed</h2>",
        "<p>keep counts the baseline: the kept changes are one fewer.</p>",
        _table(counts_frame(frame), "counts"),
        "<h2>Costs</h2>",
        _table(costs_frame(frame), "costs"),
        *_proposers_html(proposers_frame(rows, direction)),
        f"<h2>{html.escape(metric)} over time</h2>",
        _table(timeline_frame(frame, metric, direction), "timeline"),
        "<h2>Kept changes</h2>",
        *_changes_html(study.repo_root, rows),
        *_notes_html(study.state_dir),
    ]
    return redact("\n".join(parts + ["</body></html>\n"]))  # diffs may hold a key


def _pareto_html(found: Front | None, png: bytes) -> list[str]:
    import html

    if found is None:
        return []
    parts = [f"<h2>Pareto front: {html.escape(found.title())}</h2>"]
    parts.append(f"<p>{html.escape(found.note())}</p>")
    if found.front:
        parts.append(_table(front_frame(found), "pareto"))
    if png:
        parts.append(f"<img alt='pareto front' src='{data_uri(png)}'>")
    return parts


def _suspects_html(rows: list[Row], metric: str) -> list[str]:
    """The keeps the audit doubts: why, and what re-measuring them found."""
    frame = suspects_frame(rows, metric)
    if not len(frame):
        return []
    return [f"<h2>Suspect keeps ({len(frame)})</h2>", _table(frame, "suspects")]


def _changes_html(repo_root: Path, rows: list[Row]) -> list[str]:
    import html

    changes = kept_changes(repo_root, rows)
    if not changes:
        return ["<p>None yet.</p>"]
    parts = []
    for row, diff in changes:
        head = f"#{row.experiment} {row.commit}: {row.description}"
        parts.append(f"<h3 id='keep-{row.experiment}'>{html.escape(head)}</h3>")
        parts.append(f"<pre class='diff'>{html.escape(diff)}</pre>")
    return parts


def _notes_html(state_dir: Path) -> list[str]:
    """The A/B tests in flight, if any, and the learnings."""
    import html

    parts = []
    tests = state_dir / "ab-tests.md"
    if tests.exists():
        parts += [
            "<h2>A/B tests in flight</h2>",
            f"<pre id='ab-tests'>{html.escape(tests.read_text())}</pre>",
        ]
    resource = state_dir / "resource.md"
    notes = resource.read_text(errors="replace") if resource.exists() else "(no resource.md yet)"
    return parts + [
        "<h2>Learnings (resource.md)</h2>",
        f"<pre id='learnings'>{html.escape(notes)}</pre>",
    ]


def summary_frame(s: Summary) -> pd.DataFrame:
    """The summary as report.html shows it: one line a figure, the counts last."""
    shown: list[tuple[str, Any]] = [
        ("experiments", s.experiments),
        ("baseline", s.baseline),
        ("best", s.best),
        ("gain", s.gain),
        ("gain_pct", s.gain_pct),
        ("champion", s.champion),
        ("cost_usd", s.cost_usd),
        *((status.value, s.count(status)) for status in COUNTED),
        ("suspect", s.suspect),
    ]
    return pd.DataFrame({"what": [w for w, _ in shown], "value": [_fmt(v) for _, v in shown]})


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_report(study: Study) -> tuple[Path, Path]:
    """progress.png and report.html in the study's state folder (runs/<name>/); with several
    objectives, pareto.png too."""
    ledger = Ledger(study.state_dir / "results.tsv", study.metric.name)
    if not ledger.rows():
        raise FileNotFoundError(f"{ledger.path}: no experiments yet, nothing to report")
    frame = results_frame(ledger)
    png = progress_png(frame, study.metric.name, study.metric.direction, study.name, dpi=110)
    png_path = study.state_dir / "progress.png"
    atomic_write(png_path, png)
    found = pareto(study, ledger.rows())
    front_png = _png(pareto_figure(found, study.name), dpi=110) if found else b""
    if front_png:
        atomic_write(study.state_dir / "pareto.png", front_png)
    html_path = study.state_dir / "report.html"
    atomic_write(html_path, report_html(study, ledger, png, front_png))
    return png_path, html_path


def chart_markdown(study: Study, png_path: Path) -> str:
    """The progress chart (progress.png, as write_report drew it) as markdown with a data-URI
    PNG, which the Prefect UI renders inline."""
    return f"![{study.name} progress]({data_uri(png_path.read_bytes())})"
