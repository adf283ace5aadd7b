"""`payengine reconcile FILE`: one settlement file through the engine, from the command line.

    payengine reconcile FILE [--format auto|stripe|adyen|camt053] [--dry-run]
                             [--window START[,END]] [--fee-bps N [--fee-fixed CUR=MINOR ...]]
                             [--psp-url URL]

Runs the file as `POST /v1/reconciliations` does: the store of DATABASE_URL (or the embedded
PostgreSQL), the reconciler actor, and its repairs carried out by the order and refund actors
through the PSP (payengine/recon_engine.py): a capture, refund or dispute we never heard of is
asked of the PSP and booked before the command prints. `--window` (UTC dates, END exclusive;
one date: that day) names the bookings the file must contain, so a movement missing from it
is reported; `--fee-bps`/`--fee-fixed` give the PSP's fee contract, so a fee that differs is.

Prints a summary table (lines; matched, auto_fixed, manual_review, investigate with their money
per currency) and every item that needs a person. Exit 0 when clean, 1 when items need a
person, 2 when the file (or an option) is unusable (one located line on stderr, nothing
written). A file run before (same SHA-256) prints its earlier run and changes nothing.
`--dry-run` matches and prints without writing anything and without starting any actor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.reconciler import Outcome, Reconciler, Window
    from engine.reconciliation import Format, ParseError

from payengine.cli_base import EXIT_OK, UsageError, run, where
from payengine.config import Config

EXIT_NEEDS_PERSON = 1
EXIT_UNUSABLE = 2
FORMATS = ("auto", "stripe", "adyen", "camt053")
#: Where `payengine serve` starts the fake PSP.
DEFAULT_PSP_URL = "http://127.0.0.1:8001"


def register(sub: Any) -> None:
    reconcile = sub.add_parser("reconcile", help="match a settlement file against the ledger")
    reconcile.add_argument("file", metavar="FILE", help="a Stripe or Adyen report, or camt.053")
    reconcile.add_argument("--format", choices=FORMATS, default="auto")
    reconcile.add_argument("--dry-run", action="store_true", help="match and print; write nothing")
    reconcile.add_argument(
        "--window",
        metavar="START[,END]",
        help="UTC dates: the bookings the file must contain, [START, END) (one date: that day)",
    )
    reconcile.add_argument("--fee-bps", type=int, help="the PSP's contracted fee, basis points")
    reconcile.add_argument(
        "--fee-fixed",
        action="append",
        default=[],
        metavar="CUR=MINOR",
        help="the contract's fixed part per capture in a currency (repeatable)",
    )
    reconcile.add_argument(
        "--psp-url",
        default=os.environ.get("PAYENGINE_PSP_URL", DEFAULT_PSP_URL),
        help=f"the PSP repairs ask (default: $PAYENGINE_PSP_URL or {DEFAULT_PSP_URL})",
    )
    reconcile.set_defaults(fn=cmd_reconcile)


def parse_window(text: str | None) -> Any:
    """`START[,END]` as a reconciler Window (UTC dates; END exclusive), or None."""
    from actors.recon_facts import Window

    if text is None:
        return None
    parts = text.split(",")
    try:
        days = [dt.date.fromisoformat(part.strip()) for part in parts]
    except ValueError:
        raise UsageError(f"--window: {text!r} is not START[,END] in YYYY-MM-DD") from None
    if len(days) == 1:
        days.append(days[0] + dt.timedelta(days=1))
    if len(days) != 2 or days[1] <= days[0]:
        raise UsageError(f"--window: {text!r} is not START[,END] with START before END")
    start, end = (
        int(dt.datetime.combine(d, dt.time(), tzinfo=dt.UTC).timestamp() * 1000) for d in days
    )
    return Window(start, end)


def parse_contract(fee_bps: int | None, fixed: list[str]) -> Any:
    """The fee contract of `--fee-bps` and `--fee-fixed`, or None."""
    from actors.reconciler import FeeContract
    from engine.money import currency_exponent

    if fee_bps is None:
        if fixed:
            raise UsageError("--fee-fixed needs --fee-bps")
        return None
    if not 0 <= fee_bps <= 10_000:
        raise UsageError(f"--fee-bps must be within 0..10000, got {fee_bps}")
    parts: dict[str, int] = {}
    for item in fixed:
        currency, _, minor = item.partition("=")
        try:
            currency_exponent(currency.upper())
            value = int(minor)
        except Exception:
            raise UsageError(f"--fee-fixed: {item!r} is not CUR=MINOR (e.g. USD=30)") from None
        if value < 0:
            raise UsageError(f"--fee-fixed: {item!r} is negative")
        parts[currency.upper()] = value
    return FeeContract(fee_bps, parts)


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
    from payengine.recon_engine import open_repairs
    from web.http_gateway import open_http_gateway

    path = Path(args.file)
    window = parse_window(args.window)
    contract = parse_contract(args.fee_bps, args.fee_fixed)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    fmt = None if args.format == "auto" else Format(args.format)
    dsn, _ = where(config)
    notes: list[str] = []

    async def go() -> int:
        clock = TrioClock(int(time.time() * 1000))
        ids = Ids(clock, random.SystemRandom())
        outcome: Outcome | ParseError
        async with open_postgres_store(dsn) as store:
            if args.dry_run:  # no actor, no write
                reconciler = Reconciler(store, clock, ids, contract=contract)
                outcome = await _reconcile(reconciler, data, fmt, window, dry_run=True)
            else:
                api_key = os.environ.get("PAYENGINE_PSP_API_KEY")
                gateway_cm = (
                    open_http_gateway(args.psp_url, api_key)
                    if api_key
                    else open_http_gateway(args.psp_url)
                )
                async with (
                    gateway_cm as gateway,
                    open_repairs(store, gateway, clock, ids, config.engine, notes.append) as tell,
                ):
                    reconciler = Reconciler(store, clock, ids, tell=tell, contract=contract)
                    outcome = await _reconcile(reconciler, data, fmt, window, dry_run=False)
        if isinstance(outcome, ParseError):
            print(f"payengine: {path}: {outcome}", file=sys.stderr)
            return EXIT_UNUSABLE
        print("\n".join(render(outcome, path.name)))
        if notes:
            print("repairs:")
            print("\n".join(f"  {note}" for note in notes))
        return EXIT_OK if outcome.run.clean else EXIT_NEEDS_PERSON

    return run(go)


async def _reconcile(
    reconciler: Reconciler, data: bytes, fmt: Format | None, window: Window | None, *, dry_run: bool
) -> Outcome | ParseError:
    """The outcome, or the ParseError of an unusable file as a value (so it leaves the repair
    actors' nursery as itself, not inside an exception group)."""
    from engine.reconciliation import ParseError

    try:
        return await reconciler.reconcile(data, fmt, window=window, dry_run=dry_run)
    except ParseError as exc:
        return exc
