"""The `autoresearch` command: run a study, look at it, start a new one, check one."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autoresearch import report
from autoresearch.ledger import Ledger
from autoresearch.study import StudyError, load_study

console = Console(soft_wrap=True)
TEMPLATE_DIR = Path(__file__).parent / "template"


def _fail(exc: Exception) -> None:
    console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
    sys.exit(getattr(exc, "exit_code", 1))


def _ledger(study_path: str) -> tuple[Any, Ledger]:
    try:
        study = load_study(study_path)
    except StudyError as exc:
        _fail(exc)
    return study, Ledger(study.state_dir / "results.tsv", study.metric.name)


@click.group()
@click.version_option(package_name="autoresearch")
def main() -> None:
    """Autonomous hill-climbing for any optimizable system, orchestrated by Prefect."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@main.command()
@click.argument("study", type=click.Path(exists=True, file_okay=True))
@click.option(
    "-n", "--experiments", type=int, help="How many experiments (default: the study's budget)."
)
@click.option("--minutes", type=float, help="Stop starting experiments after this many minutes.")
@click.option("--proposer", type=click.Choice(["auto", "mutate", "claude", "agent_cli"]))
@click.option("--seed", type=int, help="Seed of the offline proposer.")
def run(
    study: str,
    experiments: int | None,
    minutes: float | None,
    proposer: str | None,
    seed: int | None,
) -> None:
    """Hill-climb STUDY: experiments as Prefect flows, each kept only if really better."""
    spec, ledger = _ledger(study)
    from flows.campaign import campaign
    from proposers import choose_kind

    console.print(f"[bold]{spec.name}[/bold]: {choose_kind(spec, proposer)[1]}")
    planned = experiments or spec.config.budget.experiments
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(ledger, planned, done), daemon=True)
    watcher.start()
    try:
        result = campaign(str(spec.folder), experiments, minutes, proposer, seed)
    finally:
        done.set()
        watcher.join()
    if result.get("stop"):
        console.print(f"[yellow]{result['stop']}[/yellow]")
    _print_summary(spec, ledger)


def _watch(ledger: Ledger, planned: int | None, done: threading.Event) -> None:
    """Show progress from the ledger itself, the one place every experiment lands."""
    start = len(ledger.rows())
    columns = [
        TextColumn("experiment"),
        MofNCompleteColumn(),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    ]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("", total=planned)
        while not done.wait(0.5):
            rows = ledger.rows()
            best = ledger.champion()
            text = f"best {ledger.metric} {best.metric:.6g}" if best else "measuring the baseline"
            bar.update(task, completed=len(rows) - start, description=text)


def _print_summary(spec: Any, ledger: Ledger) -> None:
    s = report.summary(ledger)
    if s["baseline"] is None:
        console.print("No baseline yet.")
        return
    table = Table(title=f"{spec.name}: {ledger.metric} ({spec.metric.direction})")
    for col in ("baseline", "best", "gain", "kept", "discarded", "crashed", "other"):
        table.add_column(col, justify="right")
    other = s["rejected"] + s["invalid"]
    pct = f" ({s['gain_pct']:.1f}%)" if s.get("gain_pct") is not None else ""
    table.add_row(
        f"{s['baseline']:.6g}",
        f"{s['best']:.6g}",
        f"{s['gain']:.6g}{pct}",
        str(s["keep"] - 1),
        str(s["discard"]),
        str(s["crash"]),
        str(other),
    )
    console.print(table)
    if s["cost_usd"]:
        console.print(f"cost: ${s['cost_usd']:.4f}")
    console.print(
        f"champion {s['champion']} on branch autoresearch/{spec.name}; ledger {ledger.path}"
    )


@main.command()
@click.argument("study", type=click.Path(exists=True))
@click.option("--rows", default=10, show_default=True, help="How many recent rows to show.")
def status(study: str, rows: int) -> None:
    """Champion, best against baseline, counts and the last rows of STUDY."""
    spec, ledger = _ledger(study)
    recent = ledger.rows()[-rows:]
    if recent:
        table = Table(title="recent experiments")
        for col in ("experiment", "commit", ledger.metric, "status", "description"):
            table.add_column(col)
        for r in recent:
            table.add_row(
                r["experiment"], r["commit"], r[ledger.metric], r["status"], r["description"][:70]
            )
        console.print(table)
    _print_summary(spec, ledger)


@main.command()
@click.argument("folder", type=click.Path())
@click.option("--name", help="Study name (default: the folder's name).")
def init(folder: str, name: str | None) -> None:
    """Create a new study in FOLDER from a commented template."""
    target = Path(folder)
    if (target / "study.yaml").exists():
        _fail(click.ClickException(f"{target / 'study.yaml'} already exists; nothing written"))
    target.mkdir(parents=True, exist_ok=True)
    for src in TEMPLATE_DIR.iterdir():
        dest = target / src.name
        if not dest.exists():
            shutil.copy(src, dest)
    study_file = target / "study.yaml"
    study_file.write_text(study_file.read_text().replace("{name}", name or target.resolve().name))
    console.print(f"new study in {target}: edit study.yaml, then `autoresearch check {target}`")


@main.command()
@click.argument("study", type=click.Path(exists=True))
def check(study: str) -> None:
    """Validate STUDY and run its evaluator once on the champion."""
    from autoresearch.lab import Lab

    try:
        lab = Lab.open(study)
    except StudyError as exc:
        _fail(exc)
    console.print(f"{lab.study.folder / 'study.yaml'}: valid")
    log = lab.study.state_dir / "logs" / "check.log"
    m = lab.evaluator.evaluate(lab.workspace.study_dir, log)
    if m.status != "ok":
        console.print(f"[red]evaluator crashed: {m.reason}[/red]\n{m.log_tail}")
        sys.exit(1)
    extra = ", ".join(f"{k} {v:g}" for k, v in m.secondary.items())
    console.print(
        f"{lab.study.metric.name}: {m.metric:.6g} in {m.duration_s:.1f}s"
        + (f" ({extra})" if extra else "")
    )
