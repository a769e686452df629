"""The secrets the tool's own processes share, each in a file only its owner reads, in the
tool's Prefect home (a folder only its owner enters; the SQLite database of every study's runs
and logs lives there too):

- `api-auth`: the basic-auth string of the Prefect server the tool starts (Prefect's
  PREFECT_SERVER_API_AUTH_STRING on the server, PREFECT_API_AUTH_STRING on every client).
  Whoever holds it drives the API: starts runs, reads every study's logs, logs in to the UI.
- `signing.key`: the key that signs what a campaign asks of its workers and what they measure.
  It is kept apart from the API's credentials: a person may be given the UI without the power
  to write a measurement.

Each is generated once (secrets.token_urlsafe) and never printed or logged. A worker on another
machine is given them by environment variable or file (`autoresearch worker --help`).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from core.files import private

DEFAULT_HOME = Path(__file__).resolve().parent.parent / ".prefect"
API_AUTH_FILE = "api-auth"
SIGNING_KEY_FILE = "signing.key"
API_AUTH_ENV = "PREFECT_API_AUTH_STRING"  # Prefect's own client setting
SIGNING_KEY_ENV = "AUTORESEARCH_SIGNING_KEY"
USER = "autoresearch"
MIN_KEY_CHARS = 32


class MissingSecret(RuntimeError):
    """A secret a process needs is nowhere it may come from; says where to put it."""

    exit_code = 2


def prefect_home() -> Path:
    """The tool's Prefect home: PREFECT_HOME, else the project's `.prefect/`."""
    return Path(os.environ.get("PREFECT_HOME") or DEFAULT_HOME).expanduser()


def private_home(home: Path) -> Path:
    """`home` created, or made again, a folder only its owner enters (0700); what is already in
    it (the SQLite database, the server's log) readable by its owner only."""
    private(home)
    for entry in home.iterdir():
        if entry.is_symlink():
            continue
        mode = entry.stat().st_mode & 0o7777
        if mode & 0o077:
            entry.chmod(mode & ~0o077)
    return home


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def _secret(path: Path, create: bool, make: str) -> str | None:
    """The secret in `path`; when missing and `create`, `make` written there first, mode 0600,
    never replacing one that another process wrote meanwhile (link, not rename)."""
    found = _read(path)
    if found is not None or not create:
        return found
    private_home(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(make + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process was first: theirs is the one
    finally:
        os.unlink(tmp)
    return _read(path)


def server_auth(home: Path) -> str:
    """The basic-auth string the server of `home` requires (generated once)."""
    made = f"{USER}:{secrets.token_urlsafe(32)}"
    found = _secret(home / API_AUTH_FILE, True, made)
    assert found is not None
    return found


def api_auth(home: Path | None = None) -> str | None:
    """A client's credentials: PREFECT_API_AUTH_STRING when set, else the home's `api-auth`
    (None when neither: a server without authentication, or a 401)."""
    return os.environ.get(API_AUTH_ENV) or _read((home or prefect_home()) / API_AUTH_FILE)


def signing_key(
    home: Path | None = None, key_file: Path | None = None, create: bool = True
) -> bytes:
    """The signing key: from `key_file` when given, else AUTORESEARCH_SIGNING_KEY, else the
    home's `signing.key` (generated once when `create`)."""
    if key_file is not None:
        found = _read(key_file)
        where = str(key_file)
    elif os.environ.get(SIGNING_KEY_ENV):
        found, where = os.environ[SIGNING_KEY_ENV].strip(), SIGNING_KEY_ENV
    else:
        path = (home or prefect_home()) / SIGNING_KEY_FILE
        found, where = _secret(path, create, secrets.token_urlsafe(32)), str(path)
    if not found:
        raise MissingSecret(
            f"no signing key in {where}: copy the campaign's {SIGNING_KEY_FILE} (in its Prefect "
            f"home) here, or set {SIGNING_KEY_ENV}"
        )
    if len(found) < MIN_KEY_CHARS:
        raise MissingSecret(f"the signing key in {where} is shorter than {MIN_KEY_CHARS} chars")
    return found.encode()
