"""What the bench scripts share: `--smoke` sizes, and the Prefect server a bench reports to.

Not a bench itself (tests/test_bench.py runs every bench/*.py but those starting with `_`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoresearch.server import Server

SMOKE_HELP = "tiny sizes, done in seconds: that the bench still runs and prints its figures"


def parse_args(parser: argparse.ArgumentParser, smoke: dict[str, Any]) -> argparse.Namespace:
    """The arguments, with a `--smoke` flag whose sizes replace the defaults (a size given on
    the command line still wins), so that a smoke run is the full bench made small."""
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    if parser.parse_known_args()[0].smoke:
        parser.set_defaults(**smoke)
    return parser.parse_args()


def found_or_started(home: Path) -> tuple[Server, bool]:
    """The server PREFECT_API_URL names (with the login the tool would use), or a temporary
    one with its home in `home`; and whether it was started here (then it is ours to stop)."""
    from autoresearch.server import Server, temporary_server
    from core import credentials

    url = os.environ.get("PREFECT_API_URL")
    if url:
        return Server(url, credentials.prefect_home(), credentials.api_auth()), False
    return temporary_server(home).wait_healthy(), True


@contextmanager
def prefect_server(home: Path) -> Iterator[Server]:
    """This process (its Prefect settings) and its children (os.environ) pointed at one server
    until the end: the one PREFECT_API_URL names, a test session's say, since a server on a
    fresh database takes 10-15 s to start; else a temporary one, stopped at the end."""
    server, started = found_or_started(home)
    env = server.client_settings() | {"PREFECT_HOME": str(server.home)}
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        from prefect.logging.handlers import APILogHandler
        from prefect.settings import temporary_settings

        with temporary_settings(server.client_settings()):
            try:
                yield server
            finally:
                APILogHandler().flush()  # the last logs reach the server before it stops
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if started:
            server.stop()
