"""`payengine reconcile FILE`: one settlement file against the ledger, from the command line.

    payengine reconcile FILE [--format auto|stripe|adyen|camt053] [--dry-run]

Prints a summary table (lines; matched, auto_fixed, manual_review, investigate with their money
per currency) and every item that needs a person. Exit 0 when clean, 1 when items need a
person, 2 when the file is unusable (one located line on stderr, nothing written). A file run
before (same SHA-256) prints its earlier run and changes nothing. `--dry-run` matches and
prints without writing anything.

Without a running engine, an auto_fixed capture is settled here and its order is completed by
the engine's order actor (its status poll, or recovery at its next start).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

from payengine.cli_base import EXIT_OK, UsageError, run, where
from payengine.config import Config

EXIT_NEEDS_PERSON = 1
EXIT_UNUSABLE = 2
FORMATS = ("auto", "stripe", "adyen", "camt053")


def register(sub: Any) -> None:
    reconcile = sub.add_parser("reconcile", help="match a settlement file against the ledger")
    reconcile.add_argument("file", metavar="FILE", help="a Stripe or Adyen report, or camt.053")
    reconcile.add_argument("--format", choices=FORMATS, default="auto")
    reconcile.add_argument("--dry-run", action="store_true", help="match and print; write nothing")
    reconcile.set_defaults(fn=cmd_reconcile)


def _money(per_currency: dict[str, int] | Any) -> str:
    from engine.money import Money

    return ", ".join(str(Money(minor, c)) for c, minor in sorted(per_currency.items())) or "-"


def render(outcome: Any, name: str) -> list[str]:
    """The summary table and the open items of a reconciler `Outcome`."""
    from engine.reconciliation.match import ItemClass

    run = outcome.run
    state = "dry run (nothing written)" if outcome.dry_run else "new run"
    if outcome.repeated:
        state = "already run: this is the earlier run (nothing done)"
    lines = [
        f"file      {name} ({run.format}, sha256 {run.file_hash[:16]}...)",
        f"run       {run.run_id}: {state}",
        f"lines     {run.lines}",
        f"{'class':<15}{'items':>7}  money",
    ]
    for klass in ItemClass:
        count = run.counts.get(klass.value, 0)
        lines.append(f"{klass.value:<15}{count:>7}  {_money(run.money.get(klass.value, {}))}")
    open_items = [
        i for i in outcome.stored if i.klass in (ItemClass.MANUAL_REVIEW, ItemClass.INVESTIGATE)
    ]
    if open_items:
        lines.append("needs a person:")
    for item in open_items:
        where = "-" if item.line_number is None else f"line {item.line_number}"
        money = []
        if item.expected is not None:
            money.append(f"expected {item.expected}")
        if item.found is not None:
            money.append(f"file {item.found}")
        detail = "; ".join([*money, *([item.detail] if item.detail else [])])
        lines.append(f"  {where:<10} {item.reference}  {item.klass}  {item.reason}  {detail}")
    return lines


def cmd_reconcile(args: argparse.Namespace, config: Config) -> int:
    from actors.clock import TrioClock
    from actors.reconciler import Reconciler
    from engine.ids import Ids
    from engine.reconciliation import Format, ParseError
    from engine.store.postgres import open_postgres_store

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    fmt = None if args.format == "auto" else Format(args.format)
    dsn, _ = where(config)

    async def go() -> int:
        clock = TrioClock(int(time.time() * 1000))
        ids = Ids(clock, random.SystemRandom())
        async with open_postgres_store(dsn) as store:
            reconciler = Reconciler(store, clock, ids)
            try:
                outcome = await reconciler.reconcile(data, fmt, dry_run=args.dry_run)
            except ParseError as exc:
                print(f"payengine: {path}: {exc}", file=sys.stderr)
                return EXIT_UNUSABLE
        print("\n".join(render(outcome, path.name)))
        return EXIT_OK if outcome.run.clean else EXIT_NEEDS_PERSON

    return run(go)
