"""Schema migrations: numbered SQL files applied in order, each exactly once.

Why: the schema is part of the guarantees (unique keys, the append-only ledger, the balance
trigger), so every database payengine touches must be at the same, known version. Files live in
`engine/store/migrations/` as `NNNN_name.sql` and ship as package data.

Guarantees:
- Each migration runs in its own transaction together with its row in `schema_migrations`, so a
  migration is applied completely or not at all.
- Re-running applies nothing: applied names are recorded.
- Several processes may migrate the same database at once (every `payengine` start migrates):
  a session advisory lock serializes them, and the loser finds nothing left to do.
- An applied migration whose file has changed since (checksum mismatch), or an applied name this
  code does not know (the database is newer than the code), stops start-up with MigrationError
  instead of running against a schema nobody tested.

This module is asyncio-native (it is part of the asyncpg adapter); trio code calls it through the
bridge in postgres.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import asyncpg
import attrs

#: The advisory lock key that serializes migrators of one database (any fixed bigint).
MIGRATE_LOCK_KEY = 0x70617965_6D696772  # "payemigr"
#: How long a migrator waits for another one to finish before giving up.
MIGRATE_LOCK_TIMEOUT_S = 120

_FILE_RE = re.compile(r"^(?P<number>\d{4})_[a-z0-9_]+\.sql$")

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name          text COLLATE "C" NOT NULL,
    checksum      text   NOT NULL,
    applied_at_ms bigint NOT NULL,
    CONSTRAINT schema_migrations_pk PRIMARY KEY (name)
)
"""


class MigrationError(Exception):
    """The database's recorded migrations disagree with the files this code ships."""


@attrs.frozen
class Migration:
    name: str  # the file name without `.sql`, e.g. "0001_initial"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The shipped migrations in order; numbering must run 0001, 0002, ... without gaps."""
    folder = resources.files("engine.store").joinpath("migrations")
    found: list[Migration] = []
    for item in folder.iterdir():
        if not item.name.endswith(".sql"):
            continue
        if not _FILE_RE.match(item.name):
            raise MigrationError(f"migration file {item.name!r} is not named NNNN_name.sql")
        found.append(Migration(item.name.removesuffix(".sql"), item.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.name)
    for expected, migration in enumerate(found, start=1):
        if int(migration.name[:4]) != expected:
            raise MigrationError(f"migration {migration.name} should be numbered {expected:04d}")
    return found


def _pending(shipped: list[Migration], applied: Mapping[str, str]) -> list[Migration]:
    known = {m.name for m in shipped}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(
            f"the database has migrations this code does not know: {', '.join(unknown)}"
        )
    for migration in shipped:
        recorded = applied.get(migration.name)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} was changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )
    return [m for m in shipped if m.name not in applied]


@asynccontextmanager
async def _connection(target: Any) -> AsyncIterator[Any]:
    """A connection from a pool (returned afterwards) or the connection itself."""
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            yield conn
    else:
        yield target


async def _applied(conn: Any) -> dict[str, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
    return {row["name"]: row["checksum"] for row in rows}


async def pending_migrations(target: Any) -> list[str]:
    """Names of the shipped migrations not yet applied to the database (asyncpg conn or pool)."""
    async with _connection(target) as conn:
        return [m.name for m in _pending(load_migrations(), await _applied(conn))]


async def migrate(target: Any) -> list[str]:
    """Apply every pending migration in order; returns the names applied (empty: up to date)."""
    shipped = load_migrations()
    async with _connection(target) as conn:
        await conn.execute(f"SET lock_timeout = '{MIGRATE_LOCK_TIMEOUT_S}s'")
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK_KEY)
        finally:
            await conn.execute("RESET lock_timeout")
        try:
            await conn.execute(_BOOTSTRAP)
            todo = _pending(shipped, await _applied(conn))
            for migration in todo:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum, applied_at_ms)"
                        " VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
                        migration.name,
                        migration.checksum,
                    )
            return [m.name for m in todo]
        finally:
            if not conn.is_closed():  # a closed session has released its locks already
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK_KEY)
