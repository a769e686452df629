"""Prefect on PostgreSQL against SQLite: one campaign, its candidates evaluated by several
workers, on a fresh server of each; throughput, crashes and the lock errors in every log.

Per backend: the server `autoresearch serve --database URL` starts (autoresearch.server; the
PostgreSQL a throwaway of scripts/postgres.sh, SQLite in the server's home), WORKERS `autoresearch
worker --pool bench --clone CLONE` (each its own clone; `--limit` so that PARALLEL fit on them),
then `autoresearch run STUDY` of bench/parallel.py's study whose evaluator sleeps, PARALLEL
candidates in flight, pushed to a bare remote. Timed: from the baseline's row in the ledger to
the last of EXPERIMENTS more (the campaign's start and exit are not). The two servers create
their databases at the same time; the campaigns run one after the other. Lock errors: what the
server's, the workers' and the campaign's logs say of "database is locked" (SQLite), "deadlock
detected" or "could not obtain lock" (PostgreSQL).

    .venv/bin/python bench/postgres.py [--workers 4] [--parallel 8] [-n 32] [--sleep 2]
    .venv/bin/python bench/postgres.py --smoke   # 2 workers, parallel 2, 2 experiments

Without PostgreSQL here (nor apt-get to install it, as root) its row says why; SQLite's runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from autoresearch import server as srv  # noqa: E402
from bench._common import parse_args  # noqa: E402

SCRIPT = ROOT / "scripts" / "postgres.sh"
CLI = str(Path(sys.executable).with_name("autoresearch"))
UNAVAILABLE = 3  # the script's exit status: no PostgreSQL here, nor a way to install it
LOCK_ERRORS = re.compile(r"database is locked|deadlock detected|could not obtain lock", re.I)
REQUEST_ERROR = re.compile(r"^.*Encountered (?:retryable )?exception in request", re.M)
# the server logs a request's database error (a 503 that the client retries) only when told to
LOG_ERRORS = {"PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true", "PREFECT_UI_ENABLED": "0"}
WORKER_POLL = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
# a server of the caller's (a test session's, say) is no business of ours: ours are started here
FOREIGN = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_HOME", srv.DATABASE_ENV)
SMOKE = {"workers": 2, "parallel": 2, "n": 2, "sleep": 0.2, "rounds": 1}


class Unavailable(RuntimeError):
    """No PostgreSQL here; says why (the script's words)."""


@contextmanager
def throwaway_postgres(timeout_s: float = 600.0) -> Iterator[str]:
    """A throwaway PostgreSQL (`scripts/postgres.sh hold`): its URL for Prefect's server (a
    password inside), until the end, then stopped and deleted. Unavailable when the script says
    there is none and it cannot install it; RuntimeError when it fails otherwise."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            ["bash", str(SCRIPT), "hold"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            url = proc.stdout.readline().strip()  # apt-get may come first: it takes its time
            if not url:
                code = proc.wait(timeout_s)
                err.seek(0)
                said = " ".join(err.read().replace("postgres.sh: ", "").split())
                if code == UNAVAILABLE:
                    raise Unavailable(said)
                raise RuntimeError(f"scripts/postgres.sh hold exited {code}: {said}")
            yield url
        finally:
            proc.stdin.close()  # the script stops the cluster and deletes its folder
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(10)


@dataclass
class Result:
    backend: str
    seconds: float
    experiments: int  # rows of the timed run in the ledger
    crashed: int
    lock_errors: int
    phases: dict[str, float]  # untimed: the workers' start, the baseline


def clean_env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in FOREIGN} | extra


def pool_workers(api_url: str, pool: str, auth: str | None) -> int:
    """How many workers have sent the server a heartbeat on `pool`."""
    url = f"{api_url}/work_pools/{pool}/workers/filter"
    try:
        with urllib.request.urlopen(srv.request(url, auth, b"{}"), timeout=10) as resp:
            return len(json.load(resp))
    except OSError:  # 404: the first worker has not created the pool yet
        return 0


Proc = subprocess.Popen[bytes]


def wait_until(what: str, ready: Callable[[], bool], procs: list[Proc], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{what}: {' '.join(map(str, dead[0].args[:3]))} exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not in {timeout_s:g} s")
        time.sleep(0.2)


def spawn(argv: list[str], env: dict[str, str], log: Path) -> Proc:
    """A child in our process group (a timeout that stops the group stops it too), its output
    in `log`."""
    with log.open("w") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def timed_rows(campaign: Proc, ledger: Path, rows: int, timeout_s: float) -> tuple[float, float]:
    """When the ledger's first row (the baseline) landed, and its last: the experiments after
    the baseline are timed between the two, the campaign's start and exit are not."""
    first, deadline = None, time.monotonic() + timeout_s
    while True:
        with suppress(FileNotFoundError):
            found = ledger.read_text().count("\n") - 1  # the header; whole lines only
            if found >= 1 and first is None:
                first = time.perf_counter()
            if found >= rows and first is not None:
                return first, time.perf_counter()
        if campaign.poll() is not None:
            raise RuntimeError(f"the campaign exited {campaign.returncode}, {ledger} unfinished")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the campaign did not finish in {timeout_s:g} s")
        time.sleep(0.05)


def lock_errors(root: Path, server_log: Path, start: int) -> int:
    """The server's requests that failed on a lock from `start` in its log on (each error
    logged with its traceback), and the lines of the workers' and the campaign's logs (in
    `root`) that name one."""
    with server_log.open("rb") as log:
        log.seek(start)
        failed = REQUEST_ERROR.split(log.read().decode(errors="replace"))[1:]  # one a request
    clients = "".join(p.read_text(errors="replace") for p in root.glob("*.log"))
    return sum(bool(LOCK_ERRORS.search(b)) for b in failed) + len(LOCK_ERRORS.findall(clients))


def make_bench_study(root: Path, name: str, args: argparse.Namespace) -> Path:
    """bench/parallel.py's sleeping study, its candidates evaluated on the work pool of its
    name and pushed to a bare remote beside it."""
    from bench.parallel import GIT, make_study  # here: importing it sets Prefect's log level

    remote = root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    folder = make_study(root, name, args.sleep, f"parallel: {args.parallel}\nremote: {remote}\n")
    spec = folder / "study.yaml"
    pool = f"timeout_s: 120, work_pool: {name}}}"
    spec.write_text(spec.read_text().replace("timeout_s: 60}", pool))
    subprocess.run(["git", "-C", str(folder.parent), "commit", "-qam", "pool"], check=True, env=GIT)
    return folder


def launch(root: Path, database: str | None) -> srv.Server:
    """A fresh server (no UI) with its home in root/home, on `database` (None: SQLite there);
    not waited for: the two backends' servers create their databases at the same time."""
    root.mkdir(parents=True)
    port = srv.free_port()
    db = {srv.DATABASE_ENV: srv.database_url(database)} if database else {}
    home = root / "home"
    return srv.launch(srv.app_command(port), home, port, die_with_us=True, **(LOG_ERRORS | db))


def run_backend(
    backend: str, server: srv.Server, root: Path, name: str, args: argparse.Namespace
) -> Result:
    """One campaign of study `name` on `server`, its candidates evaluated by workers of their
    own on pool `name`; everything it logged in root/name (the server's log in root/home)."""
    from steps.lab import Lab

    root = root / name
    root.mkdir()
    folder = make_bench_study(root, name, args)
    assert server.log_path is not None
    mark = server.log_path.stat().st_size  # the server's log from here on is this campaign's
    phases: dict[str, float] = {}
    env = clean_env(PREFECT_HOME=str(server.home)) | server.client_settings()
    procs: list[Proc] = []
    try:
        clock = time.perf_counter()
        limit = -(-args.parallel // args.workers)
        for i in range(args.workers):
            clone = root / f"clone-{i}"
            subprocess.run(["git", "clone", "-q", str(folder.parent), str(clone)], check=True)
            argv = [CLI, "worker", "--pool", name, "--clone", str(clone), "--limit", str(limit)]
            procs.append(spawn(argv, env | WORKER_POLL, root / f"worker-{i}.log"))
        ready = lambda: pool_workers(server.api_url, name, server.auth) >= args.workers  # noqa: E731
        wait_until("workers", ready, procs, 180)
        phases["workers"] = time.perf_counter() - clock
        clock = time.perf_counter()
        log = root / "campaign.log"
        campaign = spawn([CLI, "run", str(folder), "-n", str(args.n + 1)], env, log)
        procs.append(campaign)
        ledger = folder.parent / "runs" / name / "results.tsv"
        first, last = timed_rows(campaign, ledger, args.n + 1, timeout_s=max(600, 30 * args.n))
        if campaign.wait() != 0:
            raise RuntimeError(f"the campaign exited {campaign.returncode}; {log}")
        phases["baseline"] = first - clock
    finally:
        for proc in procs:
            srv.stop_child(proc, grace_s=30.0)  # a worker stops its own
    rows = Lab.open(folder).records.ledger.rows()[1:]  # after the baseline
    crashed = sum(r.status == "crash" for r in rows)
    locks = lock_errors(root, server.log_path, mark)
    return Result(backend, last - first, len(rows), crashed, locks, phases)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4, help="`autoresearch worker`s")
    parser.add_argument("--parallel", type=int, default=8, help="candidates in flight")
    parser.add_argument("-n", type=int, default=32, help="experiments, timed")
    parser.add_argument("--sleep", type=float, default=2.0, help="the evaluator's seconds")
    parser.add_argument("--rounds", type=int, default=1, help="campaigns per backend, by turns")
    parser.add_argument("--keep", type=Path, help="keep every log and study here")
    return parse_args(parser, SMOKE)


def row(result: Result, args: argparse.Namespace) -> str:
    per_minute = result.experiments / result.seconds * 60
    return (
        f"{result.backend:<11} {args.workers:>7} {args.parallel:>8} {result.experiments:>11} "
        f"{result.seconds:>8.1f} {per_minute:>10.1f} {result.crashed:>7} {result.lock_errors:>11}"
    )


def main() -> None:
    args = arguments()
    results: list[Result] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = args.keep or Path(tmp)
        servers: dict[str, srv.Server] = {}
        try:
            url = stack.enter_context(throwaway_postgres())
            servers["postgresql"] = launch(root / "postgresql", url)
        except Unavailable as exc:
            skipped["postgresql"] = f"skipped: {exc}"
        servers["sqlite"] = launch(root / "sqlite", None)
        for server in servers.values():  # before PostgreSQL stops
            stack.callback(server.stop)
        clock = time.perf_counter()
        for server in servers.values():  # both up before either campaign starts
            server.wait_healthy(300)
        up = time.perf_counter() - clock
        for n in range(args.rounds):  # one campaign at a time; every other round the other first
            for backend in list(servers)[:: 1 if n % 2 == 0 else -1]:
                server = servers[backend]
                results.append(run_backend(backend, server, root / backend, f"r{n}", args))
    report(args, results, skipped, up)


def report(
    args: argparse.Namespace, results: list[Result], skipped: dict[str, str], up: float
) -> None:
    print(f"{args.n} experiments of a {args.sleep:g} s evaluator, {args.workers} workers "
          f"(--limit {-(-args.parallel // args.workers)}), parallel {args.parallel}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'backend':<11} {'workers':>7} {'parallel':>8} {'experiments':>11} {'seconds':>8} "
          f"{'per minute':>10} {'crashed':>7} {'lock errors':>11}")  # fmt: skip
    for backend, why in skipped.items():
        print(f"{backend:<11} {why}")
    for result in results:
        print(row(result, args))
    print(f"untimed: the servers up in {up:.1f} s (both at once, fresh databases)")
    for result in results:
        untimed = ", ".join(f"{k} {v:.1f} s" for k, v in result.phases.items())
        print(f"  {result.backend}: {untimed}")
    totals = {}
    for backend in dict.fromkeys(r.backend for r in results):
        mine = [r for r in results if r.backend == backend]
        totals[backend] = sum(r.experiments for r in mine) / sum(r.seconds for r in mine) * 60
    if len(totals) == 2:
        pg, lite = totals["postgresql"], totals["sqlite"]
        print(f"experiments per minute over {args.rounds} round(s): postgresql {pg:.1f}, "
              f"sqlite {lite:.1f}: {pg / lite:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
