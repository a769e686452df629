"""The `autoresearch` command: run a study, look at it, report on it, serve and trigger it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autoresearch import server as srv
from core import credentials, interrupt
from core.interrupt import Interrupted
from core.ledger import Ledger, Status, format_metric
from core.study import Study, StudyError
from proposers import KINDS as PROPOSER_KINDS
from steps.plugins import load_study

if TYPE_CHECKING:
    from steps.report import Summary

console = Console(soft_wrap=True)
TEMPLATE_DIR = Path(__file__).parent / "template"


def _fail(exc: Exception) -> None:
    console.print(f"[red]{escape(str(exc))}[/red]", highlight=False, soft_wrap=True)
    sys.exit(getattr(exc, "exit_code", 1))


def _preflight(spec: Study) -> None:
    """What would make a campaign fail at once (uncommitted, a command missing), said now."""
    from steps.preflight import preflight

    try:
        preflight(spec)
    except StudyError as exc:
        _fail(exc)


def _ledger(study_path: str) -> tuple[Study, Ledger]:
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
    "-n",
    "--experiments",
    type=int,
    help="How many experiments (default: the study's budget; 0: until stopped).",
)
@click.option("--forever", is_flag=True, help="Run until Ctrl-C or SIGTERM (the same as -n 0).")
@click.option("--minutes", type=float, help="Stop starting experiments after this many minutes.")
@click.option("--proposer", type=click.Choice(list(PROPOSER_KINDS)))
@click.option("--seed", type=int, help="Seed of the offline proposer.")
@click.option(
    "--parallel", type=int, help="Candidates in flight at once (default: the study's `parallel`)."
)
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=0.0,
    help="If another run is writing STUDY, wait up to this many seconds for it "
    "(default 0: refuse at once; -1: as long as it takes).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show Prefect's run logs here too.")
def run(
    study: str,
    experiments: int | None,
    forever: bool,
    minutes: float | None,
    proposer: str | None,
    seed: int | None,
    parallel: int | None,
    wait_s: float,
    verbose: bool,
) -> None:
    """Hill-climb STUDY: experiments as Prefect flows, each kept only if really better.

    Ctrl-C (or SIGTERM) finishes the experiment in hand, prints the summary and exits 130
    (143); a second one stops at once, rolling that experiment back.
    """
    spec, ledger = _ledger(study)
    _preflight(spec)  # before a server or a flow run: one clear message, exit 2
    found, where = srv.for_command()
    try:
        result, signum = _run(spec, ledger, found, where, 0 if forever else experiments,
                              minutes, proposer, seed, parallel, wait_s, verbose)  # fmt: skip
    finally:
        found.stop(wait=False)
    if result.stop:
        console.print(f"[yellow]{escape(result.stop)}[/yellow]")
    _print_summary(spec, ledger)
    if signum:
        sys.exit(128 + signum)


def _run(
    spec: Study,
    ledger: Ledger,
    found: Any,
    where: str,
    experiments: int | None,
    minutes: float | None,
    proposer: str | None,
    seed: int | None,
    parallel: int | None,
    wait_s: float,
    verbose: bool,
) -> tuple[Summary, int | None]:
    """The campaign under a Prefect server, with the progress shown from the ledger; its
    summary, and the signal that stopped it, if any."""
    if not verbose:  # the full logs still go to the Prefect UI; here, the progress bar
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from core.lock import StudyLocked
    from core.sandbox import SandboxUnavailable
    from proposers import choose_kind, make_proposer
    from steps.report import Summary

    kind, why = choose_kind(spec, proposer)
    researcher = make_proposer(spec, kind, seed)
    console.print(f"[bold]{spec.name}[/bold]: {why}")
    from flows.campaign import campaign  # while the server starts

    _check_sandbox(spec, ledger, found, researcher.name)
    console.print(f"[dim]{where}[/dim]", highlight=False)
    planned = None if experiments == 0 else (experiments or spec.config.budget.experiments)

    def flow() -> Any:
        return campaign(str(spec.folder), experiments, minutes, proposer, seed, wait_s,
                        researcher, parallel)  # fmt: skip

    outcome, signum = _in_thread(flow, found, ledger, planned)
    error = outcome.get("error")
    if isinstance(error, StudyLocked | StudyError | SandboxUnavailable):
        _fail(error)
    if isinstance(error, Interrupted):
        return Summary(stop="stopped now: the experiment in hand was rolled back"), signum
    if error is not None:
        raise error
    return outcome["result"], signum


def _check_sandbox(spec: Study, ledger: Ledger, found: Any, researcher: str) -> None:
    """Whether candidates can run as the study needs them (a missing sandbox fails now, not
    in the flow); the notice when they run unsandboxed; the server up."""
    from core.sandbox import SandboxUnavailable, choose
    from steps.sandboxes import runs_model_code

    try:
        untrusted = runs_model_code(spec, ledger.rows(), researcher)
        notice = choose(spec.config.sandbox.enabled, untrusted)[1]
        found.wait_healthy()
    except (SandboxUnavailable, srv.ServerError) as exc:
        _fail(exc)
    if notice:
        console.print(f"[yellow]{escape(notice)}[/yellow]", highlight=False)


def _in_thread(
    flow: Callable[[], Any], found: Any, ledger: Ledger, planned: int | None
) -> tuple[dict[str, Any], int | None]:
    """The campaign (`flow()`, under the server's settings) run in a thread, so that the
    signals stay ours (Prefect takes SIGTERM in its own), with the progress shown from the
    ledger: its result or its error, and the signal that stopped it."""
    from prefect.settings import temporary_settings

    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(ledger, planned, done), daemon=True)
    watcher.start()
    outcome: dict[str, Any] = {}

    def work() -> None:
        with temporary_settings(found.client_settings()):  # its URL and credentials
            try:
                outcome["result"] = asyncio.run(flow())
            except BaseException as exc:  # handed to the main thread
                outcome["error"] = exc
            finally:
                _deliver()  # while the server is up: nothing left to send when it stops

    with Interrupts() as interrupts:
        worker = threading.Thread(target=work, name="campaign")
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
        done.set()
        watcher.join()
    return outcome, interrupts.signum


def _deliver() -> None:
    """Every log line and event of the campaign sent to the server now: Prefect would send what
    is left at exit, to a server already stopped ("Error logging to API")."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    EventsWorker.drain_all(timeout=10)


class Interrupts:
    """Ctrl-C or SIGTERM: finish the experiment in hand, then stop; a second one stops now."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        interrupt.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            interrupt.stop_now.set()
            console.print("[yellow]stopping now[/yellow]")
            return
        self.signum = signum
        interrupt.stop_requested.set()
        console.print(
            "[yellow]stopping after the experiment in hand (again: stop now, rolling it back)"
            "[/yellow]"
        )


# how each outcome shows (rejected and invalid: yellow)
COLOURS = {"keep": "green", "discard": "dim", "crash": "red", "holdout": "cyan", "screened": "blue"}


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
        while True:
            finished = done.wait(0.5)
            rows = ledger.rows()
            for r in rows[start:]:
                style = COLOURS.get(r.status, "yellow")
                console.print(
                    f"#{r.experiment:>3} [{style}]{r.status:<8}[/{style}] "
                    f"{format_metric(r.metric):>12} {r.description}",
                    highlight=False,
                )
            ran = sum(r.status != Status.HOLDOUT for r in rows[start:])
            start = len(rows)
            best = ledger.champion()
            text = f"best {ledger.metric} {best.metric:.6g}" if best else "measuring the baseline"
            bar.update(task, advance=ran, description=text)
            if finished:
                return


def _print_in_flight(spec: Study) -> None:
    """What each slot (or worker) measures now, since when, at which stage."""
    from core.pending import Pending, Stage

    records = [r for r in Pending(spec.state_dir).all() if r.stage != Stage.HOLDOUT]
    if not records:
        return
    table = Table(title=f"in flight (parallel {spec.parallel})")
    for col in ("experiment", "slot", "since", "stage", "hypothesis"):
        table.add_column(col)
    for r in records:
        stage = r.stage.value + (" (on a worker)" if r.flow_run else "")
        table.add_row(str(r.experiment), str(r.slot), r.since, stage, r.hypothesis[:60])
    console.print(table)


def _print_slots(spec: Study) -> None:
    """Which GPU each slot holds (as a campaign started here would give them) and what it
    measures: shown for `slots: auto` or several slots."""
    from core.pending import Pending, Stage
    from steps.slots import environments

    records = [r for r in Pending(spec.state_dir).all() if r.stage != Stage.HOLDOUT]
    count = max([spec.parallel, *(r.slot for r in records)])
    if count == 1 and not spec.config.slots.auto:
        return
    try:
        envs, note = environments(spec, count)
    except StudyError as exc:
        console.print(f"[yellow]{escape(str(exc))}[/yellow]", highlight=False)
        return
    busy = {r.slot: f"#{r.experiment} ({r.stage.value})" for r in records}
    table = Table(title="slots")
    for col in ("slot", "GPU", "measuring"):
        table.add_column(col)
    for i, env in enumerate(envs, start=1):
        table.add_row(str(i), env.get("CUDA_VISIBLE_DEVICES", "-"), busy.get(i, "idle"))
    console.print(table)
    if note:
        console.print(f"[yellow]{escape(note)}[/yellow]", highlight=False)


def _print_summary(spec: Study, ledger: Ledger) -> None:
    from steps import report

    s = report.summary(ledger, spec.metric.direction)
    if s.baseline is None:
        console.print("No baseline yet.")
        return
    table = Table(title=f"{spec.name}: {ledger.metric} ({spec.metric.direction})")
    for col in ("baseline", "best", "gain", "kept", "discarded", "crashed", "screened", "other"):
        table.add_column(col, justify="right")
    pct = f" ({s.gain_pct:.1f}%)" if s.gain_pct is not None else ""
    table.add_row(
        f"{s.baseline:.6g}",
        f"{s.best:.6g}",
        f"{s.gain:.6g}{pct}",
        str(s.keep - 1),  # the baseline is no kept change
        str(s.discard),
        str(s.crash),
        str(s.screened),
        str(s.rejected + s.invalid),
    )
    console.print(table)
    if s.cost_usd:
        console.print(f"cost: ${s.cost_usd:.4f}")
    console.print(f"champion {s.champion} on branch autoresearch/{spec.name}; ledger {ledger.path}")


@main.command()
@click.argument("study", type=click.Path(exists=True))
@click.option("--rows", default=10, show_default=True, help="How many recent rows to show.")
def status(study: str, rows: int) -> None:
    """Champion, best against baseline, counts and the last rows of STUDY."""
    spec, ledger = _ledger(study)
    _print_in_flight(spec)
    _print_slots(spec)
    recent = ledger.rows()[-rows:]
    if recent:
        table = Table(title="recent experiments")
        for col in ("experiment", "commit", ledger.metric, "status", "description"):
            table.add_column(col)
        for r in recent:
            table.add_row(
                str(r.experiment), r.commit, format_metric(r.metric), r.status, r.description[:70]
            )
        console.print(table)
    _print_summary(spec, ledger)
    _print_suspects(ledger)
    _print_pareto(spec, ledger)
    _print_proposers(spec, ledger)
    _print_notes(spec)


@main.command()
@click.argument("study", type=click.Path(exists=True))
@click.argument("text", required=False)
@click.option("--remove", type=int, metavar="N", help="Remove note N.")
def note(study: str, text: str | None, remove: int | None) -> None:
    """Steer STUDY without stopping it: every proposal reads TEXT until it is removed.

    Without TEXT, lists the notes. A running campaign reads them from its next proposal on.
    """
    from core.notes import NOTES, Notes, NotesError

    spec, _ = _ledger(study)
    notes = Notes(spec.state_dir / NOTES)
    try:
        if remove is not None:
            gone = notes.remove(remove)
            console.print(f"note {gone.id} removed: {escape(gone.text)}")
        elif text is not None:
            added = notes.add(text)
            console.print(f"note {added.id} taken: every proposal reads it until "
                          f"`autoresearch note {study} --remove {added.id}`")  # fmt: skip
    except NotesError as exc:
        _fail(exc)
    _print_notes(spec)


def _print_notes(spec: Study) -> None:
    """The person's notes, which every proposal reads."""
    from core.notes import NOTES, Notes, NotesError

    try:
        found = Notes(spec.state_dir / NOTES).all()
    except NotesError as exc:
        console.print(f"[yellow]{escape(str(exc))}[/yellow]")
        return
    if not found:
        return
    table = Table(title=f"notes for the researcher ({len(found)})")
    for col in ("#", "added", "note"):
        table.add_column(col)
    for n in found:
        table.add_row(str(n.id), n.added_at, escape(n.text))
    console.print(table)


def _print_suspects(ledger: Ledger) -> None:
    """The keeps the audit doubts, if any: why, and what re-measuring them found."""
    from steps import report

    doubted = report.suspects(ledger.rows())
    if not doubted:
        return
    table = Table(title=f"suspect keeps ({len(doubted)})")
    for col in ("experiment", "commit", "status", "why, and what re-measuring found"):
        table.add_column(col)
    for r in doubted:
        table.add_row(str(r.experiment), r.commit, r.status, escape(r.suspect))
    console.print(table)


def _print_pareto(spec: Study, ledger: Ledger) -> None:
    """The Pareto front, for a study with several objectives (the champion marked)."""
    from steps import report

    found = report.pareto(spec, ledger.rows())
    if found is None:
        return
    table = Table(title=f"Pareto front: {escape(found.title())}", caption=escape(found.note()))
    for col in ("", "experiment", "commit", *found.names, "description"):
        table.add_column(escape(col), justify="right" if col in found.names else "left")
    for p in found.front:
        mark = found.mark(p)
        table.add_row(
            "[bold red]champion[/bold red]" if mark == "champion" else mark,
            str(p.experiment),
            p.commit,
            *(f"{v:.6g}" for v in p.values),
            escape(p.description[:60]),
        )
    console.print(table)


def _print_proposers(spec: Study, ledger: Ledger) -> None:
    """Each proposer's keeps, spend and gain per dollar, when several proposed (a portfolio)."""
    from steps import report

    frame = report.proposers_frame(ledger.rows(), spec.metric.direction)
    if len(frame) < 2:
        return
    table = Table(title="by proposer")
    for col in ("proposer", "experiments", "keeps", "cost", "time", "gain", "gain per $"):
        table.add_column(col, justify="left" if col == "proposer" else "right")
    for r in frame.itertuples(index=False):
        table.add_row(
            escape(r.proposer),
            str(r.experiments),
            str(r.keeps),
            f"${r.cost_usd:.4f}",
            f"{r.duration_s:.0f}s",
            f"{r.gain:.6g}",
            "" if r.gain_per_usd != r.gain_per_usd else f"{r.gain_per_usd:.6g}",  # NaN: no spend
        )
    console.print(table)


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
    from core.lock import StudyLock, StudyLocked
    from core.sandbox import SandboxUnavailable
    from core.workspace import GuardViolation
    from steps.lab import Lab, ensure_startable

    spec, _ = _ledger(study)
    try:  # opening the lab resets the worktree: never under a running campaign
        ensure_startable(spec)
        with StudyLock(spec.state_dir, spec.name, what="autoresearch check"):
            lab = Lab.open(study)
            console.print(f"{lab.study.folder / 'study.yaml'}: valid")
            log = lab.study.state_dir / "logs" / "check.log"
            m = lab.instrument.run_once(lab.workspace, log)
    except (StudyLocked, StudyError, GuardViolation, SandboxUnavailable) as exc:
        _fail(exc)
    if m.status != "ok":
        console.print(f"[red]evaluator crashed: {escape(m.reason)}[/red]\n{escape(m.log_tail)}")
        sys.exit(1)
    extra = ", ".join(f"{k} {v:g}" for k, v in m.secondary.items())
    console.print(
        f"{lab.study.metric.name}: {m.metric:.6g} in {m.duration_s:.1f}s"
        + (f" ({extra})" if extra else "")
    )


@main.command()
@click.argument("study", type=click.Path(exists=True))
@click.option("--fix", is_flag=True, help="Repair what can be repaired safely.")
def doctor(study: str, fix: bool) -> None:
    """Check STUDY's invariants: ledger rows 1..n, kept commits on the branch, branch head =
    champion, a clean worktree, no stale git locks or leftover evaluators, protected files.

    Exits 1 when one does not hold (after --fix: when one still does not).
    """
    from core.lock import StudyLock, StudyLocked
    from steps import doctor as checks
    from steps.lab import Lab

    spec, _ = _ledger(study)
    try:
        with StudyLock(spec.state_dir, spec.name, what="autoresearch doctor"):
            lab = Lab(spec)
            for done in checks.fix(lab) if fix else []:
                console.print(f"fixed: {done}")
            findings = checks.examine(lab)
    except StudyLocked as exc:
        _fail(exc)
    table = Table(title=f"{spec.name}: invariants")
    for col in ("check", "", "detail"):
        table.add_column(col)
    for f in findings:
        mark = "[green]ok[/green]" if f.ok else "[red]no[/red]"
        hint = " (--fix repairs it)" if not f.ok and f.fixable and not fix else ""
        table.add_row(f.check, mark, ("" if f.ok else f.detail) + hint)
    console.print(table)
    sys.exit(0 if all(f.ok for f in findings) else 1)


@main.command(name="report")
@click.argument("study", type=click.Path(exists=True))
def report_command(study: str) -> None:
    """Write progress.png and a self-contained report.html into runs/<name>/ of STUDY."""
    from steps import report

    spec, _ = _ledger(study)
    try:
        png, page = report.write_report(spec)
    except FileNotFoundError as exc:
        _fail(exc)
    console.print(f"chart  {png}\nreport {page}")


@main.command(name="export")
@click.argument("study", type=click.Path(exists=True))
@click.option("--branch", help="The branch to write (default: autoresearch/<name>-export).")
@click.option("--force", is_flag=True, help="Replace the branch if it exists.")
def export_command(study: str, branch: str | None, force: bool) -> None:
    """A reviewable branch from STUDY's base to its champion: one commit per kept change that
    survives in it, and a pull request's summary in runs/<name>/export.md."""
    from steps.export import ExportError, export

    spec, _ = _ledger(study)
    try:
        done = export(spec, branch, force)
    except ExportError as exc:
        _fail(exc)
    console.print(f"branch  {done.branch} ({len(done.commits)} commits on {done.base[:7]})")
    for keep, sha in done.commits:
        console.print(f"  {sha[:7]}  #{keep.row.experiment} {escape(keep.row.description[:70])}")
    for keep, why in done.folded:
        console.print(f"  folded  #{keep.row.experiment} {escape(why)}")
    console.print(f"summary {done.summary}")


@main.command()
@click.option(
    "--deployments",
    "prefect_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A prefect.yaml-format file (default: deployments.yaml of this project).",
)
@click.option("--port", type=int, default=4200, show_default=True, help="Port of a new server.")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="PREFECT_HOME of a new server, its SQLite database inside (default: .prefect/).",
)
@click.option("--worker/--no-worker", default=True, help="Run a process worker (default).")
@click.option(
    "--database",
    metavar="URL",
    help="The new server's database, PostgreSQL for many workers: "
    "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB (default: Prefect's "
    "PREFECT_API_DATABASE_CONNECTION_URL, which keeps the password off the command line; "
    "else SQLite in the home).",
)
def serve(
    prefect_file: Path | None, port: int, home: Path | None, worker: bool, database: str | None
) -> None:
    """Start (or connect to) a Prefect server, apply the deployments and run a worker.

    With PREFECT_API_URL set, that server is used (it must answer; its credentials are read
    from PREFECT_API_AUTH_STRING or the home's api-auth); otherwise one starts on 127.0.0.1
    and stops with this command. A server started here requires basic authentication: the
    string is generated once into HOME/api-auth (mode 0600, HOME 0700), every command of this
    tool reads it from there, and the UI asks for it. Ctrl-C stops everything this command
    started.
    """
    prefect_file = prefect_file or srv.DEFAULT_DEPLOYMENTS
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(signum, _interrupt)
    children: list[Any] = []
    try:
        found = srv.connect_or_start(home, port, database)
    except srv.ServerError as exc:
        _fail(exc)
    if found.process is not None:
        found.record()  # `autoresearch run` uses this server while it runs
    try:
        how = f"started in {found.started_in_s:.1f}s, home {found.home}" if found.process else ""
        console.print(f"Prefect UI: {found.ui_url}" + (f" ({how})" if how else ""), highlight=False)
        if found.process and found.home is not None:  # where the login is, never the login
            login = f"the UI asks for the contents of {found.home / credentials.API_AUTH_FILE}"
            console.print(f"database: {srv.database_of(found, database)}\n{login}", highlight=False)
        pools = srv.pools(prefect_file) if worker else []
        for pool in pools:  # first: a starting worker creates its pool, deploy needs it
            children.append(srv.start_worker(pool, found.api_url, found.home, auth=found.auth))
        for pool, child in zip(pools, children, strict=True):
            srv.wait_for_pool(found.api_url, pool, child, auth=found.auth)
        names = srv.apply_deployments(prefect_file, found.api_url, found.home, auth=found.auth)
        console.print(f"deployed from {prefect_file}: {', '.join(names)}", highlight=False)
        for name in srv.skipped(prefect_file):
            console.print(f"[yellow]skipped {name}: its study folder has no study.yaml[/yellow]")
        for pool in pools:
            console.print(f"worker on work pool {pool}")
        if not worker and found.process is None:
            return
        console.print("Ctrl-C stops the worker" + (" and the server" if found.process else ""))
        _wait_children(children + ([found.process] if found.process else []))
    except srv.ServerError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        console.print("stopping the worker, then the server (Ctrl-C again: at once)")
    finally:
        _stop_all(children, found)


def _stop_all(children: list[Any], found: Any) -> None:
    """The workers, then the server we started: each given a few seconds (a run in flight is
    left to its study's repair); a second Ctrl-C (or SIGTERM) kills whatever is left at once."""
    try:
        for child in children:
            srv.stop_child(child, grace_s=5)
        found.stop()
    except KeyboardInterrupt:
        for child in children:  # in our process group
            if child.poll() is None:
                child.kill()
        if found.process is not None and found.process.poll() is None:  # leads its own group
            os.killpg(found.process.pid, signal.SIGKILL)
        found.stop(wait=False)


@main.command()
@click.argument("study", type=click.Path(exists=True))
@click.option("--port", type=int, default=8025, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Behind a TLS proxy.")
def inbox(study: str, port: int, host: str) -> None:
    """Receive STUDY's replies and email events: SendGrid's Inbound Parse (POST
    /sendgrid/inbound), its signed Event Webhook (POST /sendgrid/events) and the unsubscribe
    links (/unsubscribe/<token>). Put it behind the study's public hostname.

    Reads SENDGRID_WEBHOOK_PUBLIC_KEY (the Event Webhook's verification key; without it event
    posts are refused) and SENDGRID_INBOUND_PASSWORD (Basic auth on Inbound Parse, optional).
    """
    import logging

    from email_ab.inbox import InboxError, serve_inbox

    spec, _ = _ledger(study)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    console.print(f"inbox of {spec.name} on http://{host}:{port} (Ctrl-C stops it)")
    try:
        serve_inbox(
            spec.state_dir,
            port,
            host,
            public_key=os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY"),
            inbound_password=os.environ.get("SENDGRID_INBOUND_PASSWORD"),
        )
    except InboxError as exc:
        _fail(StudyError(str(exc)))


@main.command()
@click.option("--pool", required=True, help="The work pool of the studies' `evaluator.work_pool`.")
@click.option(
    "--clone",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="This machine's clone of the studies' repository.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many candidates this machine measures at once (one per GPU, say).",
)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The campaign's signing key (a copy of signing.key from its Prefect home). Default: "
    "AUTORESEARCH_SIGNING_KEY, else signing.key in this machine's Prefect home.",
)
@click.option(
    "--auth-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The server's credentials (a copy of api-auth from its Prefect home). Default: "
    "PREFECT_API_AUTH_STRING, else api-auth in this machine's Prefect home.",
)
@click.option(
    "--passenv",
    multiple=True,
    metavar="NAME",
    help="A variable of this environment that the flow runs also get (SSH_AUTH_SOCK for a "
    "fetch over ssh, say); an evaluation still gets only what its study allows.",
)
def worker(
    pool: str,
    clone: Path,
    limit: int,
    key_file: Path | None,
    auth_file: Path | None,
    passenv: tuple[str, ...],
) -> None:
    """Evaluate candidates on this machine for campaigns elsewhere: a Prefect process worker on
    POOL, in this clone. Each candidate is fetched from its study's `remote`, measured in a
    sandboxed worktree here, and its measurement sent back, signed; the campaign decides.

    Talks to PREFECT_API_URL (else a running `autoresearch serve`), the campaigns' server (on
    PostgreSQL for many workers), with its
    credentials (--auth-file). Needs the campaign's signing key (--key-file): it runs only the
    tool's own `evaluate` flow for requests the campaign signed, and the campaign reads only
    measurements signed with it. Anything else on POOL (another deployment, pull steps, job
    variables, an unsigned request) is refused, and the run marked Crashed with the reason.
    Flow runs get an allowlisted environment, not this one (--passenv adds to it).
    """
    from core.study import find_repo_root

    found, api_url = _served(None)
    root = find_repo_root(clone.resolve())
    if root is None:
        _fail(click.ClickException(f"{clone} is not inside a git clone of the studies' repository"))
    try:
        auth = auth_file.read_text().strip() if auth_file else found.auth
        key = credentials.signing_key(key_file=key_file)
        srv.pool_exists(api_url, pool, auth)  # a 401 now, not in the worker's log
    except (credentials.MissingSecret, srv.ServerError, OSError) as exc:
        _fail(exc)
    env = _worker_env(api_url, root, key, auth, passenv)
    console.print(f"worker on pool {pool}, clone {root}, server {srv.ui_url(api_url)}")
    signal.signal(signal.SIGTERM, _interrupt)
    child = srv.start_evaluate_worker(pool, env, cwd=root, limit=limit)
    try:
        _wait_children([child])
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        srv.stop_child(child)


def _worker_env(
    api_url: str, root: Path, key: bytes, auth: str | None, passenv: tuple[str, ...]
) -> dict[str, str]:
    """The worker process's environment: the allowlist (and --passenv), Prefect's settings,
    the server's login, the signing key and the clone."""
    from core.secrets import allowed_environ
    from steps.worker import CLONE

    prefect = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_")}
    env = allowed_environ(dict(os.environ), passenv) | prefect | {
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        CLONE: str(root),
        credentials.SIGNING_KEY_ENV: key.decode(),
    }  # fmt: skip
    env.pop(credentials.API_AUTH_ENV, None)
    if auth:
        env[credentials.API_AUTH_ENV] = auth
    return env


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _wait_children(children: list[Any]) -> None:
    """Return (with an error) when any of the server and workers exits on its own."""
    while True:
        for child in children:
            if child.poll() is not None:
                raise click.ClickException(
                    f"{' '.join(child.args[:3])} exited ({child.returncode})"
                )
        time.sleep(0.5)


def _parse_params(params: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE pairs; each value read as YAML, so experiments=2 is a number."""
    out: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


HOME_HELP = "The Prefect home of the `autoresearch serve` to talk to (default: PREFECT_HOME)."


def _served(home: Path | None) -> tuple[Any, str]:
    """The server a client command talks to (PREFECT_API_URL, else a running `serve`'s), said
    on the terminal; none answering is an error that says how to start one."""
    found = srv.served(home)
    if found is None:
        none = "no Prefect server: no PREFECT_API_URL and no running `autoresearch serve`"
        _fail(click.ClickException(f"{none}; start one with `autoresearch serve`"))
    server, how = found
    if not _answers(server.api_url):
        _fail(click.ClickException(f"no Prefect server answers at {how}: `autoresearch serve`"))
    console.print(f"[dim]Prefect server: {how}[/dim]", highlight=False)
    return server, server.api_url


def _answers(api_url: str, patience_s: float = 8.0) -> bool:
    """Whether the server answers its /health within a few seconds (a busy one is slow)."""
    deadline = time.monotonic() + patience_s
    while not srv.healthy(api_url, timeout=5.0):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _deployment_name(study: str, flow_name: str) -> str:
    """STUDY is a study folder (its name is read from study.yaml) or a study's name."""
    if Path(study).exists():
        spec, _ = _ledger(study)
        return f"{flow_name}/{spec.name}"
    return f"{flow_name}/{study}"


@main.command()
@click.argument("study")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A flow parameter.")
@click.option(
    "--watch", is_flag=True, help="Follow the run to its end; exit 1 unless it completed."
)
@click.option("--flow", "flow_name", default="campaign", show_default=True)
@click.option("--home", type=click.Path(path_type=Path), help=HOME_HELP)
def trigger(
    study: str, params: tuple[str, ...], watch: bool, flow_name: str, home: Path | None
) -> None:
    """Start a run of STUDY's deployment now (STUDY: its folder or its name).

    Talks to PREFECT_API_URL, else to the server of a running `autoresearch serve` (whatever
    its --port and --home), with the credentials in PREFECT_API_AUTH_STRING or its home.
    """
    parameters = _parse_params(params)
    name = _deployment_name(study, flow_name)
    found, api_url = _served(home)
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import temporary_settings

    with temporary_settings(found.client_settings()):
        try:
            run = run_deployment(name, parameters=parameters, timeout=0, as_subflow=False)
        except ObjectNotFound:
            missing = f"no deployment {name} at {api_url}: apply deployments.yaml"
            _fail(click.ClickException(missing))
        console.print(
            f"flow run {run.name} ({run.id}) of {name}: {found.ui_url}/v2/runs/flow-run/{run.id}",
            highlight=False,
        )
        if watch:
            sys.exit(_follow(run.id))


def _follow(run_id: Any, poll_s: float = 1.0) -> int:
    """Print each state change of the run until it ends: 0 when it completed, else 1."""
    from prefect import get_client

    seen = None
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run_id).state
            if state is not None and (state.type, state.name) != seen:
                seen = (state.type, state.name)
                note = f": {state.message}" if state.message else ""
                console.print(f"{state.timestamp:%H:%M:%S} {state.name}{note}", highlight=False)
            if state is not None and state.is_final():
                return 0 if state.is_completed() else 1
            time.sleep(poll_s)
