"""What every `payengine` command module shares: exit codes, the usage error, the parser that
reports one line, where the database is, and how a command runs under trio.

Why a module of its own: command modules (serve, scenario, psp, demo, and those to come) used to
import these from `payengine.cli`, which imported them back to register their subcommands: a
circle. Now they all import this module, and `payengine.cli` lists the command modules by name.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from engine.errors import StoreUnavailable
from payengine import database
from payengine.config import Config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, as everywhere else
        raise UsageError(message)


def where(config: Config) -> tuple[str, str]:
    """(dsn, description) of the database to use, starting the embedded one if needed."""
    if config.database_url:
        return config.database_url, "DATABASE_URL"
    try:
        dsn = database.start_embedded(config.data_dir)
    except OSError as exc:
        raise UsageError(
            f"cannot start the embedded PostgreSQL in {config.data_dir}: {exc}"
        ) from exc
    return dsn, f"embedded PostgreSQL in {config.data_dir / 'pg'}"


def sole_leaf(exc: BaseException) -> BaseException:
    """The one error inside nested single-error groups (`exc` itself when it is no group)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run(fn: Callable[[], Awaitable[int]]) -> int:
    """Run `fn` under trio; an unreachable database is a UsageError (exit 2), anything else
    propagates."""
    try:
        return trio.run(fn)
    except BaseException as exc:  # re-raised below unless it is a database we cannot reach
        leaf = sole_leaf(exc)
        if isinstance(leaf, OSError | trio.TooSlowError | StoreUnavailable):
            raise UsageError(f"cannot reach the database: {leaf}") from exc
        if leaf is not exc:
            raise leaf from exc
        raise
