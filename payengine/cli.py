"""The `payengine` command line: the composition root's front door.

Errors a user can fix (bad configuration, bad arguments, an unreachable database) print one line
on stderr and exit with code 2; nothing is changed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
import trio_asyncio

from engine.errors import InvalidInput, StoreUnavailable
from payengine import database
from payengine.config import Config, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, as everywhere else
        raise UsageError(message)


def _where(config: Config) -> tuple[str, str]:
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


def _sole_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _run(fn: Callable[[], Awaitable[int]]) -> int:
    async def main() -> int:
        async with trio_asyncio.open_loop():
            return await fn()

    try:
        return trio.run(main)
    except BaseException as exc:  # re-raised below unless it is a database we cannot reach
        leaf = _sole_leaf(exc)
        if isinstance(leaf, OSError | trio.TooSlowError | StoreUnavailable):
            raise UsageError(f"cannot reach the database: {leaf}") from exc
        if leaf is not exc:
            raise leaf from exc
        raise


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    from engine.store.postgres import apply_migrations

    dsn, where = _where(config)

    async def go() -> int:
        applied = await apply_migrations(dsn)
        print(
            f"{where}: applied {len(applied)} migration(s)"
            + (f": {', '.join(applied)}" if applied else "; the schema is up to date")
        )
        return EXIT_OK

    return _run(go)


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from engine.store.postgres import open_postgres_store
    from payengine.demo import run_demo
    from payengine.serve import ServeOptions, mint_keys, serve_api

    options = ServeOptions.from_args(args) if args.serve else None
    dsn, where = _where(config)

    async def go() -> int:
        async with open_postgres_store(dsn) as store:
            keys = await mint_keys(store, ("storefront", "admin"), "payengine demo")
            api_url = None if options is None else options.api_url
            code = await run_demo(store, where, keys=keys, api_url=api_url)
            if code == EXIT_OK and options is not None:
                code = await serve_api(store, config, options, where)
            return code

    return _run(go)


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    if args.action == "url":
        print(_where(config)[0])
    elif args.action == "status":
        status = database.embedded_status(config.data_dir)
        state = (
            f"running (pid {status.pid}, socket {status.socket_dir})"
            if status.running
            else "stopped"
        )
        print(f"embedded PostgreSQL in {config.data_dir / 'pg'}: {state}")
    elif args.action == "stop":
        stopped = database.stop_embedded(config.data_dir)
        print("stopped" if stopped else "was not running")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    # Importing serve registers serve, keys, payments, dlq and ledger.
    from payengine.serve import add_serve_arguments

    parser = _Parser(prog="payengine", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", help="TOML configuration file (default: ./payengine.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(fn=cmd_migrate)
    demo = sub.add_parser("demo", help="a narrated checkout on the real engine")
    demo.add_argument(
        "--serve", action="store_true", help="then serve the HTTP API with the printed keys"
    )
    add_serve_arguments(demo)
    demo.set_defaults(fn=cmd_demo)
    db = sub.add_parser("db", help="the embedded PostgreSQL: url, status, stop")
    db.add_argument("action", choices=["url", "status", "stop"])
    db.set_defaults(fn=cmd_db)
    for register in _EXTENSIONS:
        register(sub)
    return parser


#: Later subcommand groups (scenario, serve, keys...) add themselves here.
_EXTENSIONS: list[Callable[[Any], None]] = []


def _register_extensions() -> None:
    from payengine import psp_cli, scenario_cli

    _EXTENSIONS.append(scenario_cli.register)
    _EXTENSIONS.append(psp_cli.register)
    from payengine import money_out_cli  # payouts list|show, refunds create

    _EXTENSIONS.append(money_out_cli.register)


_register_extensions()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        config = load_config(path=args.config)
        code: int = args.fn(args, config)
        return code
    except (UsageError, ConfigError, InvalidInput) as exc:
        print(f"payengine: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
