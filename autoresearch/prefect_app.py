"""The Prefect server app that `autoresearch` starts (its temporary server, `serve`).

Prefect's own app, with one change for SQLite: every write transaction begins IMMEDIATE. With
DEFERRED transactions, a flow run created while the server records another run's task events
fails at once with "database is locked" (a 503 the client retries 2 s later); with several
candidates in flight that happened at nearly every start (measured: 12 experiments of 2 s, 4 at
a time, 24-27 s of wall time, against 8 s with this change). IMMEDIATE transactions wait for
the lock instead (SQLite's busy timeout). A server on PostgreSQL is left as it is.

    uvicorn --factory autoresearch.prefect_app:create_app
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prefect.server.api.server import create_app as prefect_app
from prefect.server.database.configurations import AioSqliteConfiguration

_begin = AioSqliteConfiguration.begin_transaction


@asynccontextmanager
async def _begin_immediate(
    self: AioSqliteConfiguration, session: Any, with_for_update: bool = False
) -> AsyncIterator[Any]:
    async with _begin(self, session, with_for_update=True) as transaction:
        yield transaction


def create_app() -> FastAPI:
    AioSqliteConfiguration.begin_transaction = _begin_immediate  # type: ignore[method-assign]
    return prefect_app()
