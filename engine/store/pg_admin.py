"""`payengine migrate` and its dry run: one connection through a bridge of its own.

Why a module of its own: postgres.py is the store (a pool, units of work); these open a single
connection for the command line and close it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import trio

from engine.store import migrate as migrations
from engine.store.pg_bridge import open_bridge

#: How long closing the connection may take.
CLOSE_TIMEOUT_S = 5.0


async def apply_migrations(dsn: str) -> list[str]:
    """`payengine migrate`: apply pending migrations to `dsn`; returns the names applied."""
    return await _with_connection(dsn, migrations.migrate)


async def list_pending_migrations(dsn: str) -> list[str]:
    """The migrations `apply_migrations` would apply to `dsn` now."""
    return await _with_connection(dsn, migrations.pending_migrations)


async def _with_connection(dsn: str, op: Callable[[Any], Awaitable[list[str]]]) -> list[str]:
    async with open_bridge() as bridge:
        conn = await bridge.run(asyncpg.connect, dsn)
        try:
            return await bridge.run(op, conn)
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await bridge.run(conn.close)
