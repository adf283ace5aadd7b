"""The asyncio side of the PostgreSQL store's units of work: connection set-up, a unit's lazy
begin, its end, and dropping a connection whose state is unknown.

Why a module of its own: postgres.py owns the trio side (the port, deadlines, statistics);
everything here runs on the bridge's loop (pg_bridge.py) and touches asyncpg objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import trio

from engine.store import pg_messages as mq
from engine.store import pg_queries as q
from engine.store.pg_batch import Write, apply_unit_writes

T = TypeVar("T")


async def init_connection(conn: Any) -> None:
    """Every pooled connection decodes json/jsonb into dicts (payloads, response headers)."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, schema="pg_catalog", encoder=q.dump_json, decoder=json.loads
        )


async def keep_session(conn: Any) -> None:
    """Pool reset: units always end their transaction and change no session state, so the
    default reset (RESET ALL and friends, one more round trip per unit) is not needed. asyncpg
    still rolls back a transaction left open."""


class UnitState:
    """A unit's connection and transaction, set on the asyncio side by its first operation."""

    __slots__ = ("acquire_timeout_s", "conn", "pool", "txn")

    def __init__(self, pool: Any, acquire_timeout_s: float) -> None:
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s
        self.conn: Any = None
        self.txn: Any = None


async def acquire(state: UnitState) -> Any:
    """A pooled connection; a pool that stays full for `acquire_timeout_s` is too slow."""
    try:
        async with asyncio.timeout(state.acquire_timeout_s) as deadline:
            return await state.pool.acquire()
    except TimeoutError:
        if deadline.expired():
            raise trio.TooSlowError(
                f"no pooled connection free within {state.acquire_timeout_s} s"
            ) from None
        raise


async def in_unit(
    state: UnitState, op: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
) -> T:
    """Run `op(conn, ...)` in the unit's transaction; the first one acquires and begins it
    (acquire, BEGIN and the operation in one bridge crossing)."""
    if state.conn is None:
        conn = await acquire(state)
        try:
            txn = conn.transaction(isolation="read_committed")
            await txn.start()
        except BaseException:
            await state.pool.release(conn)
            raise
        state.conn, state.txn = conn, txn
    return await op(state.conn, *args, **kwargs)


async def end_unit(
    state: UnitState,
    *,
    commit: bool,
    acks: list[tuple[str, str]] | None = None,
    writes: list[Write] | None = None,
) -> None:
    """Commit (after the unit's queued writes and deferred acks) or roll back, then give the
    connection back: one bridge crossing."""
    if state.conn is None:  # acks only: one statement, atomic on its own, no BEGIN/COMMIT
        conn = await acquire(state)
        try:
            await mq.ack_deliveries(conn, acks or [])
        finally:
            await state.pool.release(conn)
        return
    try:
        if commit:
            try:
                await apply_unit_writes(state.conn, writes or [], acks or [])
            except BaseException:
                with contextlib.suppress(Exception):
                    await state.txn.rollback()
                raise
            await state.txn.commit()
        else:
            await state.txn.rollback()
    finally:
        await state.pool.release(state.conn)


def terminate(conn: Any) -> None:
    """Drop a connection whose state is unknown; the server rolls back a closed session.
    Runs on the asyncio side (`Bridge.post`).

    `end_unit` gives the connection back to the pool even when its commit or rollback fails,
    and a released proxy refuses every call: that refusal must not replace the caller's error.
    """
    with contextlib.suppress(asyncpg.InterfaceError):  # already released: the pool has it
        conn.terminate()
