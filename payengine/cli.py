"""The `payengine` command line: the composition root's front door.

Errors a user can fix (bad configuration, bad arguments, an unreachable database) print one line
on stderr and exit with code 2; nothing is changed.

Each command module has a `register(sub)` that adds its subcommands; `COMMAND_MODULES` lists
them, one per line (add yours on a line of its own). What they share lives in
`payengine.cli_base`, so no command module imports this one.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from engine.errors import InvalidInput
from payengine import database
from payengine.cli_base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    run,
    sole_leaf,
    where,
)
from payengine.config import Config, ConfigError, load_config

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "UsageError", "build_parser", "main"]

#: The modules whose `register(sub)` adds subcommands, in `--help` order.
COMMAND_MODULES = (
    "payengine.demo_cli",
    "payengine.serve",
    "payengine.scenario_cli",
    "payengine.psp_cli",
    "payengine.recon_cli",
    "payengine.money_out_cli",
)

# The names command modules imported from here before payengine.cli_base existed.
_where, _run, _sole_leaf, _Parser = where, run, sole_leaf, Parser
#: Registrations added at import time by modules not in COMMAND_MODULES (the older way).
_EXTENSIONS: list[Callable[[Any], None]] = []


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    from engine.store.postgres import apply_migrations

    dsn, described = where(config)

    async def go() -> int:
        applied = await apply_migrations(dsn)
        print(
            f"{described}: applied {len(applied)} migration(s)"
            + (f": {', '.join(applied)}" if applied else "; the schema is up to date")
        )
        return EXIT_OK

    return run(go)


def cmd_db(args: argparse.Namespace, config: Config) -> int:
    if args.action == "url":
        print(where(config)[0])
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
    parser = Parser(prog="payengine", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", help="TOML configuration file (default: ./payengine.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(fn=cmd_migrate)
    db = sub.add_parser("db", help="the embedded PostgreSQL: url, status, stop")
    db.add_argument("action", choices=["url", "status", "stop"])
    db.set_defaults(fn=cmd_db)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for register in _EXTENSIONS:
        register(sub)
    return parser


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
