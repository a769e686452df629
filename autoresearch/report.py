"""Summaries of a study's ledger: tables (pandas), the campaign summary, the champion's markdown."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from autoresearch.ledger import Ledger

if TYPE_CHECKING:
    from autoresearch.lab import Lab

STATUSES = ("keep", "discard", "crash", "rejected", "invalid")


def artifact_key(name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "study"


def results_frame(ledger: Ledger) -> pd.DataFrame:
    frame = pd.DataFrame(ledger.rows(), columns=ledger.columns)
    for col in (ledger.metric, "memory_gb", "duration_s", "cost_usd"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame["experiment"] = pd.to_numeric(frame["experiment"], errors="coerce").astype("Int64")
    return frame


def summary(ledger: Ledger) -> dict[str, Any]:
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
    if base and best:
        out["gain"] = abs(best.metric - base.metric)
        out["gain_pct"] = 100 * out["gain"] / abs(base.metric) if base.metric else None
    return out


def summary_markdown(lab: Lab) -> str:
    s = summary(lab.ledger)
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
    rows = [r for r in lab.ledger.rows() if r["status"] == "keep"]
    if len(rows) > 1:
        last = rows[-1]
        diff = lab.workspace.repo.git.show("--format=", last["commit"])
        lines += ["", f"## Last kept change (#{last['experiment']}): {last['description']}", ""]
        lines += ["```diff", diff[:6000], "```"]
    return "\n".join(lines)
