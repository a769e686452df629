"""A Prefect server on 127.0.0.1 for this project: found or started, deployments applied, a worker.

Everything Prefect runs here as its own process (`prefect server start`, `prefect deploy`,
`prefect worker start`), so this module imports nothing from Prefect: the core stays free of it,
and `prefect deploy --all --prefect-file deployments.yaml` is exactly what `autoresearch serve`
does.

A server started here requires basic authentication (Prefect's PREFECT_SERVER_API_AUTH_STRING),
with the string generated once in its home (core.credentials), and keeps its home private: the
folder 0700, its database and log 0600 (the server runs with umask 077). Without it, any local
process (a candidate with network access among them) could write measurements and states, or
create deployments that a worker runs. Every client started here is given the string as
PREFECT_API_AUTH_STRING (`Server.client_settings`); it is never printed or logged.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from core import credentials
from core.files import atomic_write
from core.processes import stop_group

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = credentials.DEFAULT_HOME
DEFAULT_DEPLOYMENTS = PROJECT_ROOT / "deployments.yaml"
HOST = "127.0.0.1"
DEFAULT_PORT = 4200
SERVE_RECORD = "serve.json"  # where `autoresearch serve` says its server runs
PR_SET_PDEATHSIG = 1
DATABASE_ENV = "PREFECT_API_DATABASE_CONNECTION_URL"  # Prefect's own server setting
DATABASE_SCHEMES = {  # what `--database` takes, and the driver Prefect's server needs
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


class ServerError(RuntimeError):
    """The server, a deployments file or the worker could not be brought up; says why."""

    exit_code = 1


def prefect_command(*args: str) -> list[str]:
    """The `prefect` CLI of this very environment, not whichever is first on PATH."""
    beside = Path(sys.executable).with_name("prefect")
    return [str(beside) if beside.exists() else "prefect", *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def request(url: str, auth: str | None, data: bytes | None = None) -> urllib.request.Request:
    """An HTTP request to the API, with its basic-auth header when there are credentials."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return urllib.request.Request(url, data=data, headers=headers)


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """GET <api>/health answers `true` when the server is up and its database is reachable
    (Prefect answers it without credentials)."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200 and resp.read().strip() == b"true"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def ui_url(api_url: str) -> str:
    return api_url.rstrip("/").removesuffix("/api")


def prefect_env(
    api_url: str | None = None, home: Path | None = None, auth: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a Prefect child process: this one, pointed at one server and home,
    with that server's credentials."""
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    if auth:
        env[credentials.API_AUTH_ENV] = auth
    env.update(extra)
    return env


@dataclass
class Server:
    """A server this process started (process set) or found already running (process None)."""

    api_url: str
    home: Path | None = None
    auth: str | None = field(default=None, repr=False)  # basic-auth string; None: no auth
    process: subprocess.Popen[Any] | None = None
    log_path: Path | None = None
    started_in_s: float = 0.0
    _log: TextIO | None = field(default=None, repr=False)
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def ui_url(self) -> str:
        return ui_url(self.api_url)

    def client_settings(self) -> dict[str, str]:
        """Prefect settings (by their variable names) of a client of this server: for
        `temporary_settings` in this process, or the environment of a child."""
        settings = {"PREFECT_API_URL": self.api_url}
        if self.auth:
            settings[credentials.API_AUTH_ENV] = self.auth
        return settings

    def wait_healthy(self, timeout_s: float = 120.0) -> Server:
        """Wait until it answers /health; ServerError (and the server stopped) if it does not."""
        deadline = self._started + timeout_s
        try:
            while not healthy(self.api_url, timeout=1.0):
                proc = self.process
                if proc is None or proc.poll() is not None or time.monotonic() > deadline:
                    gone = proc is None or proc.poll() is not None
                    why = "exited" if gone else f"did not answer in {timeout_s:g}s"
                    raise ServerError(
                        f"the Prefect server {why}; {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.1)
        except BaseException:  # also Ctrl-C while waiting: never leave a server behind
            self.stop()
            raise
        self.started_in_s = time.monotonic() - self._started
        return self

    def stop(self, wait: bool = True) -> None:
        """Stop a server we started; without `wait`, only send the signal (we exit next)."""
        if self.process is not None:
            if wait:
                stop_group(self.process)
            elif self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
        if self._log is not None:
            self._log.close()
        if self.home is not None and self.process is not None:
            for record in {self.home / SERVE_RECORD, credentials.prefect_home() / SERVE_RECORD}:
                if _recorded(record).get("pid") == self.process.pid:
                    record.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def record(self) -> None:
        """Say where `autoresearch serve`'s server is, so that `run`, `trigger` and `worker`
        use it: in its home, and (for a server started with another `--home`) in the home
        they look in by default, pointing to it."""
        assert self.home is not None and self.process is not None
        said = {"api_url": self.api_url, "pid": self.process.pid, "home": str(self.home)}
        for home in {self.home, credentials.prefect_home()}:
            credentials.private_home(home)
            atomic_write(home / SERVE_RECORD, json.dumps(said) + "\n")


def database_url(url: str) -> str:
    """A server's database URL as Prefect's server takes it: postgresql[+asyncpg]:// (or
    postgres://) becomes postgresql+asyncpg://, sqlite:// sqlite+aiosqlite://; another scheme
    is a ServerError, said without the URL's password."""
    scheme, sep, rest = url.strip().partition("://")
    driver = DATABASE_SCHEMES.get(scheme.lower())
    if not sep or driver is None or not rest:
        raise ServerError(
            f"--database {redact(url)}: not a database URL Prefect's server takes; give "
            "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE (or sqlite+aiosqlite:///PATH)"
        )
    return f"{driver}://{rest}"


def redact(url: str) -> str:
    """A database URL with its password replaced by ***: what may be printed or logged."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGKILL when the parent dies, also by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl: go too
        os._exit(1)


def launch(argv: list[str], home: Path, port: int, die_with_us: bool = False, **env: str) -> Server:
    """Start a server process on 127.0.0.1:port with its SQLite database under `home` (or the
    database PREFECT_API_DATABASE_CONNECTION_URL names, in `env` or this environment); do not
    wait for it (`wait_healthy`). It leads its own process group."""
    if port_in_use(port):
        raise ServerError(f"port {port} on {HOST} is already in use; pick another with --port")
    credentials.private_home(home)
    auth = credentials.server_auth(home)
    log_path = home / "server.log"
    log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
    child_env = prefect_env(None, home, auth, PREFECT_SERVER_API_AUTH_STRING=auth, **env)
    child_env.pop("PREFECT_API_URL", None)
    parent = os.getpid()
    proc = subprocess.Popen(
        argv,
        env=child_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        umask=0o077,  # the database (and its -wal, -shm) its owner's only
        preexec_fn=(lambda: _die_with_parent(parent)) if die_with_us else None,
    )
    return Server(f"http://{HOST}:{port}/api", home, auth, proc, log_path, _log=log)


def app_command(port: int) -> list[str]:
    """uvicorn serving our Prefect server app (autoresearch/prefect_app.py) on 127.0.0.1."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "autoresearch.prefect_app:create_app",
        "--host", HOST, "--port", str(port), "--log-level", "error",
    ]  # fmt: skip


def start_server(
    home: Path,
    port: int | None = None,
    timeout_s: float = 120.0,
    database: str | None = None,
    **env: str,
) -> Server:
    """A Prefect server (API and UI) on 127.0.0.1; waits for health. The UI is told its own
    API's address, whatever the port. `database`: its database URL (PostgreSQL, say; the URL
    travels by environment, never on a command line); None: PREFECT_API_DATABASE_CONNECTION_URL
    when set, else SQLite in `home`."""
    port = port or free_port()
    ui_api = {"PREFECT_UI_API_URL": f"http://{HOST}:{port}/api"}
    if database is not None:
        ui_api[DATABASE_ENV] = database_url(database)
    return launch(app_command(port), home, port, **(ui_api | env)).wait_healthy(timeout_s)


def temporary_server(home: Path) -> Server:
    """A server for one command (no UI): it dies with this process, even by SIGKILL."""
    port = free_port()
    return launch(app_command(port), home, port, die_with_us=True, PREFECT_UI_ENABLED="0")


def _recorded(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def running_serve(home: Path) -> Server | None:
    """The server `autoresearch serve` runs with this home (or with the home this one's record
    points to), when it is up; its credentials are in that home."""
    record = _recorded(home / SERVE_RECORD)
    api_url, own = record.get("api_url"), record.get("home")
    if isinstance(api_url, str) and healthy(api_url, timeout=1.0):
        where = Path(own) if isinstance(own, str) and own else home
        return Server(api_url, auth=credentials.api_auth(where), home=where)
    return None


def served(home: Path | None = None) -> tuple[Server, str] | None:
    """The server a client command (`trigger`, `worker`) talks to, and how it was found:
    PREFECT_API_URL, else the server of a running `autoresearch serve` (whatever its port and
    home); None when there is neither."""
    home = home or credentials.prefect_home()
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        return Server(api_url, auth=credentials.api_auth(home)), f"{api_url} (PREFECT_API_URL)"
    found = running_serve(home)
    if found is None:
        return None
    return found, f"{found.api_url}, the server of `autoresearch serve` (home {found.home})"


def for_command(home: Path | None = None) -> tuple[Server, str]:
    """The server a command should use, and how it was found: PREFECT_API_URL, the server of a
    running `autoresearch serve`, or a temporary one (started here, not yet healthy)."""
    home = home or credentials.prefect_home()
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        found = Server(api_url, auth=credentials.api_auth(home))
        return found, f"Prefect server at {api_url} (PREFECT_API_URL)"
    found = running_serve(home)
    if found is not None:
        return found, f"Prefect server of `autoresearch serve` at {found.ui_url}"
    server = temporary_server(home)
    return server, f"a temporary Prefect server at {server.ui_url} (stops with this command)"


def connect_or_start(
    home: Path | None = None, port: int = DEFAULT_PORT, database: str | None = None
) -> Server:
    """The server named by PREFECT_API_URL when set (it must answer), else a new local one (on
    `database`, a URL, when given)."""
    home = home or credentials.prefect_home()
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url and database is not None:
        raise ServerError(
            f"--database is the database of a server started here, but PREFECT_API_URL={api_url} "
            "names a running one; unset PREFECT_API_URL to start one on that database"
        )
    if database is not None:
        database_url(database)  # a wrong URL said before a server starts
    if api_url:
        if not healthy(api_url):
            raise ServerError(
                f"PREFECT_API_URL={api_url} does not answer {api_url.rstrip('/')}/health; "
                "start that server or unset PREFECT_API_URL to start one here"
            )
        return Server(api_url, auth=credentials.api_auth(home))
    return start_server(home, port, database=database)


def database_of(server: Server, database: str | None = None) -> str:
    """Which database a server started here keeps its runs in, as may be printed (no password)."""
    url = database_url(database) if database else os.environ.get(DATABASE_ENV)
    if url:
        return redact(url)
    return f"SQLite, {(server.home or credentials.prefect_home()) / 'prefect.db'}"


# deployments -------------------------------------------------------------------------------


def load_deployments(path: Path) -> list[dict[str, Any]]:
    """The `deployments:` list of a prefect.yaml-format file, checked for what serve needs."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ServerError(f"{path}: cannot read it ({exc})") from None
    items = data.get("deployments") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ServerError(f"{path}: needs a non-empty `deployments:` list")
    for i, item in enumerate(items):
        for key in ("name", "entrypoint", "work_pool"):
            if not isinstance(item, dict) or not item.get(key):
                raise ServerError(f"{path}: deployments[{i}].{key} is missing")
        if not (item["work_pool"] or {}).get("name"):
            raise ServerError(f"{path}: deployments[{i}].work_pool.name is missing")
    return items


def study_ready(item: dict[str, Any], cwd: Path) -> bool:
    """A deployment whose study folder has no study.yaml yet is skipped, not failed."""
    study = (item.get("parameters") or {}).get("study")
    return not study or ((cwd / str(study)).resolve() / "study.yaml").exists()


def _run(cmd: list[str], env: dict[str, str], cwd: Path, what: str) -> str:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-30:])
        raise ServerError(f"{what} failed (exit {out.returncode}):\n{tail}")
    return out.stdout


def pool_exists(api_url: str, name: str, auth: str | None = None) -> bool:
    """GET <api>/work_pools/<name>: 200 when it exists, 404 when not."""
    url = f"{api_url.rstrip('/')}/work_pools/{urllib.parse.quote(name, safe='')}"
    try:
        with urllib.request.urlopen(request(url, auth), timeout=10) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        if exc.code == 401:
            raise ServerError(
                f"{url}: 401 Unauthorized: this server's credentials are not here "
                f"(its home's {credentials.API_AUTH_FILE}, or {credentials.API_AUTH_ENV})"
            ) from None
        raise ServerError(f"{url}: HTTP {exc.code}") from None


def ensure_pool(name: str, env: dict[str, str], cwd: Path) -> bool:
    """Create the process work pool unless it exists; True when it was created."""
    if pool_exists(env["PREFECT_API_URL"], name, env.get(credentials.API_AUTH_ENV)):
        return False
    _run(
        prefect_command("work-pool", "create", name, "--type", "process"),
        env,
        cwd,
        f"creating work pool {name}",
    )
    return True


def apply_deployments(
    path: Path,
    api_url: str,
    home: Path | None = None,
    cwd: Path = PROJECT_ROOT,
    auth: str | None = None,
) -> list[str]:
    """`prefect deploy` of every deployment whose study exists, after creating their pools.

    Runs in `cwd` (the project root), where the entrypoints and relative study paths resolve;
    returns the names deployed.
    """
    items = load_deployments(path)
    ready = [d for d in items if study_ready(d, cwd)]
    if not ready:
        raise ServerError(f"{path}: no deployment names a study folder with a study.yaml")
    env = prefect_env(api_url, home, auth)
    for pool in sorted({d["work_pool"]["name"] for d in ready}):
        ensure_pool(pool, env, cwd)
    names = [str(d["name"]) for d in ready]
    args = ["deploy", "--prefect-file", str(path.resolve()), "--no-prompt"]
    if len(ready) == len(items):
        args.append("--all")
    else:
        for name in names:
            args += ["--name", name]
    _run(prefect_command(*args), env, cwd, f"prefect deploy of {path}")
    return names


def skipped(path: Path, cwd: Path = PROJECT_ROOT) -> list[str]:
    return [str(d["name"]) for d in load_deployments(path) if not study_ready(d, cwd)]


def pools(path: Path, cwd: Path = PROJECT_ROOT) -> list[str]:
    items = [d for d in load_deployments(path) if study_ready(d, cwd)]
    return sorted({d["work_pool"]["name"] for d in items})


def start_worker(
    pool: str,
    api_url: str,
    home: Path | None = None,
    cwd: Path = PROJECT_ROOT,
    limit: int | None = None,
    auth: str | None = None,
    **env: str,
) -> subprocess.Popen[Any]:
    """A process worker on `pool` (the campaigns' deployments) running at most `limit` flow
    runs at once (no limit: None); it stays in our process group, so Ctrl-C stops it with us."""
    limit_args = ("--limit", str(limit)) if limit else ()
    return subprocess.Popen(
        prefect_command("worker", "start", "--pool", pool, "--type", "process", *limit_args),
        env=prefect_env(api_url, home, auth, **env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def start_evaluate_worker(
    pool: str, env: dict[str, str], cwd: Path, limit: int | None = None
) -> subprocess.Popen[Any]:
    """`autoresearch worker`'s worker (autoresearch/worker.py): it runs the tool's `evaluate`
    flow only, with exactly the environment `env` (an allowlist, credentials included). `-P`:
    imported from this install, never from a same-named folder of the clone it runs in."""
    limit_args = ("--limit", str(limit)) if limit else ()
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "autoresearch.worker", "--pool", pool, *limit_args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def wait_for_pool(
    api_url: str,
    name: str,
    worker: subprocess.Popen[Any],
    timeout_s: float = 120.0,
    auth: str | None = None,
) -> None:
    """A worker creates its work pool when it starts: wait for that (or for the worker to die)."""
    deadline = time.monotonic() + timeout_s
    while not pool_exists(api_url, name, auth):
        if worker.poll() is not None:
            raise ServerError(f"the worker on pool {name} exited ({worker.returncode})")
        if time.monotonic() > deadline:
            raise ServerError(f"work pool {name} did not appear in {timeout_s:g}s")
        time.sleep(0.2)


def stop_child(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM one child (a worker cancels its flow runs on it), then SIGKILL it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
