"""Summaries of a study's ledger: tables (pandas), the campaign summary, the champion's markdown,
progress.png (matplotlib, imported only when a chart is drawn) and a self-contained report.html.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.decide import gain
from core.files import atomic_write
from core.ledger import Ledger, Status
from core.secrets import redact

if TYPE_CHECKING:
    from core.study import Study
    from steps.lab import Lab

STATUSES = ("keep", "discard", "crash", "rejected", "invalid")
TOKENS = ["tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write"]


def artifact_key(name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "study"


def results_frame(ledger: Ledger) -> pd.DataFrame:
    """results.tsv as a table: the file's columns, numbers as numbers."""
    records = [
        {c: v for c, v in zip(ledger.columns, ledger.line(r).rstrip("\n").split("\t"), strict=True)}
        for r in ledger.rows()
    ]
    frame = pd.DataFrame(records, columns=ledger.columns)
    for col in (ledger.metric, "memory_gb", "duration_s", "cost_usd"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame["experiment"] = pd.to_numeric(frame["experiment"], errors="coerce").astype("Int64")
    return frame


def summary(ledger: Ledger, direction: str) -> dict[str, Any]:
    """Baseline, best, gain and counts: what a person wants to see first in the morning."""
    frame = results_frame(ledger)
    counts = {s: int((frame["status"] == s).sum()) for s in STATUSES}
    base, best = ledger.baseline(), ledger.champion()
    out: dict[str, Any] = {
        "experiments": len(frame),
        **counts,
        "baseline": base.metric if base else None,
        "best": best.metric if best else None,
        "champion": best.commit if best else None,
        "cost_usd": float(frame["cost_usd"].sum()) if len(frame) else 0.0,
    }
    if base and best:  # signed: positive when the champion is better than the baseline
        out["gain"] = gain(direction, best.metric, base.metric)
        out["gain_pct"] = 100 * out["gain"] / abs(base.metric) if base.metric else None
    return out


def summary_markdown(lab: Lab, chart: str = "", report_path: Path | None = None) -> str:
    """The champion against the baseline; with the chart, the cost so far and the report's path."""
    s = summary(lab.ledger, lab.study.metric.direction)
    metric = lab.study.metric
    lines = [f"# {lab.study.name}: {metric.name} ({metric.direction})", ""]
    if s["baseline"] is None:
        return "\n".join(lines + ["No baseline yet."])
    pct = f" ({s['gain_pct']:.2f}%)" if s.get("gain_pct") is not None else ""
    lines += [
        "| baseline | champion | gain | kept | discarded | crashed | cost |",
        "|---|---|---|---|---|---|---|",
        f"| {s['baseline']:.6g} | {s['best']:.6g} (`{s['champion']}`) | {s['gain']:.6g}{pct} "
        f"| {s['keep']} | {s['discard']} | {s['crash']} | ${s['cost_usd']:.4f} |",
    ]
    frame = results_frame(lab.ledger)
    tokens = {c: int(pd.to_numeric(frame[c], errors="coerce").fillna(0).sum()) for c in TOKENS}
    lines += [
        "",
        f"Cost so far: **${s['cost_usd']:.4f}** over {s['experiments']} experiments "
        f"({tokens['tokens_in']} tokens in, {tokens['tokens_out']} out).",
    ]
    if chart:
        lines += ["", chart]
    if report_path is not None:
        uri = report_path.resolve().as_uri()
        lines += ["", f"Full report: [report.html]({uri}) (`{report_path.resolve()}`)"]
    rows = [r for r in lab.ledger.rows() if r.status == Status.KEEP]
    if len(rows) > 1:
        last = rows[-1]
        diff = lab.workspace.repo.git.show("--format=", last.commit)
        lines += ["", f"## Last kept change (#{last.experiment}): {last.description}", ""]
        lines += ["```diff", diff[:6000], "```"]
    return redact("\n".join(lines))


# charts and the report ---------------------------------------------------------------------

CHARTED = ("keep", "discard")  # rows whose metric is a real measurement of a candidate


def running_best(frame: pd.DataFrame, metric: str, direction: str) -> pd.Series:
    """The champion's metric after each experiment: the best kept value so far."""
    kept = frame[metric].where(frame["status"] == "keep")
    best = kept.cummin() if direction == "minimize" else kept.cummax()
    return best.ffill()


def progress_figure(frame: pd.DataFrame, metric: str, direction: str, title: str) -> Any:
    """Karpathy's progress.png: every measured experiment, kept against discarded, the best line.

    Built on a bare Figure (no pyplot): no global state, safe inside a worker thread.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    measured = frame[frame["status"].isin(CHARTED) & frame[metric].notna()]
    discarded = measured[measured["status"] == "discard"]
    kept = measured[measured["status"] == "keep"]
    ax.scatter(discarded["experiment"], discarded[metric], s=18, c="#b0b0b0", label="discarded")
    ax.scatter(kept["experiment"], kept[metric], s=42, c="#2ca02c", label="kept", zorder=3)
    best = running_best(frame, metric, direction)
    ax.step(frame["experiment"], best, where="post", c="#1f77b4", lw=1.5, label="running best")
    for _, row in kept.iloc[1:].iterrows():
        ax.annotate(
            str(row["description"])[:40].replace("$", r"\$"),  # no mathtext
            (row["experiment"], row[metric]),
            fontsize=6,
            rotation=20,
            xytext=(3, 4),
            textcoords="offset points",
            color="#2c6e2c",
        )
    crashed = int((frame["status"] == "crash").sum())
    ax.set_title(f"{title}: {metric} ({direction}); {len(frame)} experiments, {crashed} crashed")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("experiment")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if len(measured):
        ax.legend(loc="best", fontsize=8)
    return fig


def progress_png(frame: pd.DataFrame, metric: str, direction: str, title: str, dpi: int) -> bytes:
    import io

    buf = io.BytesIO()
    progress_figure(frame, metric, direction, title).savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """A PNG inline, for a self-contained page and for the Prefect UI's markdown artifacts."""
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def kept_changes(repo_root: Path, frame: pd.DataFrame) -> list[dict[str, str]]:
    """Each kept change after the baseline, with its diff (`git show` of its commit)."""
    import git

    repo = git.Repo(repo_root)
    out = []
    for _, row in frame[frame["status"] == "keep"].iloc[1:].iterrows():
        try:
            diff = repo.git.show("--format=%H%n%an %aI%n%n%B", "--stat", "-p", row["commit"])
        except git.GitCommandError as exc:
            diff = f"(commit {row['commit']} not found in {repo_root}: {exc.stderr.strip()})"
        out.append(
            {
                "experiment": str(row["experiment"]),
                "commit": str(row["commit"]),
                "description": str(row["description"]),
                "diff": diff,
            }
        )
    return out


def counts_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """How many experiments ended in each status (keep counts the baseline)."""
    order = list(STATUSES) + sorted(set(frame["status"]) - set(STATUSES))
    counts = [int((frame["status"] == s).sum()) for s in order]
    return pd.DataFrame({"status": order, "experiments": counts})


def costs_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Tokens and dollars by proposer, with a total row."""
    money = frame[["proposer", *TOKENS, "cost_usd"]].copy()
    for col in TOKENS:
        money[col] = pd.to_numeric(money[col], errors="coerce").fillna(0).astype(int)
    money["cost_usd"] = money["cost_usd"].fillna(0.0)
    by = money.groupby("proposer", sort=True).agg(
        experiments=("cost_usd", "size"), **{c: (c, "sum") for c in [*TOKENS, "cost_usd"]}
    )
    by.loc["total"] = by.sum()
    by["experiments"] = by["experiments"].astype(int)
    by["cost_usd"] = by["cost_usd"].map("{:.6f}".format)  # dollars as in results.tsv
    return by.reset_index()


def timeline_frame(frame: pd.DataFrame, metric: str, direction: str) -> pd.DataFrame:
    """The metric over time: one row per experiment, with the best so far."""
    out = frame[
        ["experiment", "started_at", "status", metric, "duration_s", "cost_usd", "commit"]
    ].copy()
    out["best so far"] = running_best(frame, metric, direction)
    out["description"] = frame["description"]
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


def report_html(study: Study, ledger: Ledger, png: bytes) -> str:
    """One self-contained page: summary, chart, counts, costs, the timeline, diffs, learnings."""
    import html

    frame = results_frame(ledger)
    metric, direction = study.metric.name, study.metric.direction
    s = summary(ledger, direction)
    title = html.escape(f"{study.name}: {metric} ({direction})")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>",
        f"<p>results: {html.escape(str(ledger.path))}</p>",
        "<h2>Summary</h2>",
        _table(summary_frame(s), "summary"),
        f"<img alt='progress' src='{data_uri(png)}'>",
        "<h2>Kept, discarded, crashed</h2>",
        "<p>keep counts the baseline: the kept changes are one fewer.</p>",
        _table(counts_frame(frame), "counts"),
        "<h2>Costs</h2>",
        _table(costs_frame(frame), "costs"),
        f"<h2>{html.escape(metric)} over time</h2>",
        _table(timeline_frame(frame, metric, direction), "timeline"),
        "<h2>Kept changes</h2>",
    ]
    changes = kept_changes(study.repo_root, frame)
    if not changes:
        parts.append("<p>None yet.</p>")
    for c in changes:
        head = f"#{c['experiment']} {c['commit']}: {c['description']}"
        parts.append(f"<h3 id='keep-{c['experiment']}'>{html.escape(head)}</h3>")
        parts.append(f"<pre class='diff'>{html.escape(c['diff'])}</pre>")
    tests = study.state_dir / "ab-tests.md"
    if tests.exists():
        parts += [
            "<h2>A/B tests in flight</h2>",
            f"<pre id='ab-tests'>{html.escape(tests.read_text())}</pre>",
        ]
    resource = study.state_dir / "resource.md"
    notes = resource.read_text(errors="replace") if resource.exists() else "(no resource.md yet)"
    parts += ["<h2>Learnings (resource.md)</h2>", f"<pre id='learnings'>{html.escape(notes)}</pre>"]
    return redact("\n".join(parts + ["</body></html>\n"]))  # diffs may hold a key


def summary_frame(s: dict[str, Any]) -> pd.DataFrame:
    keys = ["experiments", "baseline", "best", "gain", "gain_pct", "champion", "cost_usd"]
    keys += list(STATUSES)
    return pd.DataFrame({"what": keys, "value": [_fmt(s.get(k)) for k in keys]})


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_report(study: Study) -> tuple[Path, Path]:
    """progress.png and report.html in the study's state folder (runs/<name>/)."""
    ledger = Ledger(study.state_dir / "results.tsv", study.metric.name)
    if not ledger.rows():
        raise FileNotFoundError(f"{ledger.path}: no experiments yet, nothing to report")
    frame = results_frame(ledger)
    png = progress_png(frame, study.metric.name, study.metric.direction, study.name, dpi=110)
    png_path = study.state_dir / "progress.png"
    atomic_write(png_path, png)
    html_path = study.state_dir / "report.html"
    atomic_write(html_path, report_html(study, ledger, png))
    return png_path, html_path


def chart_markdown(study: Study, png_path: Path) -> str:
    """The progress chart (progress.png, as write_report drew it) as markdown with a data-URI
    PNG, which the Prefect UI renders inline."""
    return f"![{study.name} progress]({data_uri(png_path.read_bytes())})"
