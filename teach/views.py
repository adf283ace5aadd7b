"""What the teaching pages show, read from the store (committed state only) and the running
engine: plain dictionaries for the templates. Amounts are formatted from integer minor units
(engine/money.py); nothing here computes money, it only adds up what the ledger holds."""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any, cast

import attrs
import trio

from actors.engine import Engine
from engine.ledger import Entry, Transaction, account_type
from engine.money import format_amount
from engine.records import PaymentOrder
from engine.states import OrderStatus, PaymentStatus, RefundStatus
from engine.store.port import EntryCursor, ReconciledStore, Store
from teach.machines import svg

#: Payments listed on the Inside and Money pages (newest first).
PAYMENTS_LISTED_MAX = 12
#: Entries read per account to draw its T-account, and the newest shown of them.
ENTRIES_SCANNED_MAX = 2_000
ENTRIES_SHOWN_MAX = 12
ENTRIES_PAGE_MAX = 500
DEAD_LETTERS_LISTED_MAX = 50
#: The engine's outbox subscribers (actors/engine.py).
SUBSCRIBERS = ("notifications", "analytics")
#: Sections of the Money page that appear once the store can list them (built by other
#: issues: payouts, disputes, reconciliation): (title, store method taking a limit).
#: Rows each money-out section (payouts, disputes, reconciliation items) lists at most.
OPTIONAL_ROWS_MAX = 20


def money(minor: int, currency: str) -> str:
    return f"{format_amount(minor, currency)} {currency}"


def _order(order: PaymentOrder) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "seller_id": order.seller_id,
        "amount": money(order.amount_minor, order.currency),
        "status": order.status.value,
        "booked": order.ledger_booked and order.wallet_booked,
        "attempts": order.attempts,
        "machine": svg(OrderStatus, order.status, "payment order"),
    }


async def payment(store: Store, payment_id: str) -> dict[str, Any] | None:
    found = await store.get_payment(payment_id)
    if found is None:
        return None
    orders = await store.get_orders(payment_id)
    refunds = []
    for order in orders:
        for refund in await store.list_refunds(order.order_id, 100):
            refunds.append(
                {
                    "refund_id": refund.refund_id,
                    "order_id": refund.order_id,
                    "amount": money(refund.amount_minor, refund.currency),
                    "status": refund.status.value,
                    "machine": svg(RefundStatus, refund.status, "refund"),
                }
            )
    return {
        "payment_id": found.payment_id,
        "checkout_id": found.checkout_id,
        "buyer_id": found.buyer_id,
        "amount": money(found.amount_minor, found.currency),
        "status": found.status.value,
        "final": found.status
        in (
            PaymentStatus.COMPLETED,
            PaymentStatus.FAILED,
            PaymentStatus.EXPIRED,
            PaymentStatus.REJECTED_BY_RISK,
        ),
        "hosted_url": found.hosted_url,
        "machine": svg(PaymentStatus, found.status, "payment"),
        "orders": [_order(o) for o in orders],
        "refunds": refunds,
    }


async def recent_payments(store: Store, limit: int = PAYMENTS_LISTED_MAX) -> list[dict[str, Any]]:
    found = []
    for p in await store.list_payments(limit):
        view = await payment(store, p.payment_id)
        if view is not None:
            found.append(view)
    return found


class _Links:
    """Which payment each ledger transaction belongs to (its reference: an order or a refund)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.txns: dict[str, Transaction | None] = {}
        self.payments: dict[str, str | None] = {}

    async def txn(self, txn_id: str) -> Transaction | None:
        if txn_id not in self.txns:
            self.txns[txn_id] = await self.store.get_transaction(txn_id)
        return self.txns[txn_id]

    async def payment_of(self, txn: Transaction) -> str | None:
        if txn.reference not in self.payments:
            self.payments[txn.reference] = await self._lookup(txn.reference)
        return self.payments[txn.reference]

    async def _lookup(self, reference: str) -> str | None:
        order = await self.store.get_order(reference)
        if order is None:
            refund = await self.store.get_refund(reference)
            if refund is not None:
                order = await self.store.get_order(refund.order_id)
        return None if order is None else order.payment_id


@attrs.define(eq=False)
class LedgerTails:
    """The newest entries of each account, kept between page views.

    The store pages entries in ascending order only, so each view reads on from where the last
    one stopped (at most ENTRIES_SCANNED_MAX entries per account per view) instead of from the
    start: after an hour of `--traffic`, an account has tens of thousands of entries. An
    entry whose transaction commits after a newer one was read may be missed here (ids are
    given at creation); this is a picture, the trial balance is summed by the database."""

    tails: dict[str, tuple[EntryCursor | None, list[tuple[str, int, Entry]], int]] = attrs.Factory(
        dict
    )

    #: Two pages viewed at once must not both read on from the same place.
    lock: trio.Lock = attrs.Factory(trio.Lock)

    async def newest(self, store: Store, account: str) -> tuple[list[tuple[str, int, Entry]], int]:
        async with self.lock:
            return await self._read_on(store, account)

    async def _read_on(
        self, store: Store, account: str
    ) -> tuple[list[tuple[str, int, Entry]], int]:
        after, rows, count = self.tails.get(account, (None, [], 0))
        scanned = 0
        while scanned < ENTRIES_SCANNED_MAX:
            page = await store.list_entries(account, ENTRIES_PAGE_MAX, after)
            if not page:
                break
            scanned += len(page)
            rows = (rows + page)[-ENTRIES_SHOWN_MAX:]
            after = (page[-1][0], page[-1][1])
            if len(page) < ENTRIES_PAGE_MAX:
                break
        count += scanned
        self.tails[account] = (after, rows, count)
        return rows, count


async def _t_account(
    store: Store, account: str, links: _Links, tails: LedgerTails
) -> dict[str, Any]:
    rows, count = await tails.newest(store, account)
    debits: list[dict[str, Any]] = []
    credits: list[dict[str, Any]] = []
    for txn_id, _, entry in rows:
        txn = await links.txn(txn_id)
        line = {
            "txn_id": txn_id,
            "kind": "" if txn is None else txn.kind.value,
            "amount": money(abs(entry.amount_minor), entry.currency),
            "payment_id": None if txn is None else await links.payment_of(txn),
        }
        (debits if entry.amount_minor > 0 else credits).append(line)
    return {
        "account": account,
        "type": account_type(account).value,
        "debits": debits,
        "credits": credits,
        "entries": count,
    }


async def money_page(store: Store, tails: LedgerTails) -> dict[str, Any]:
    trial = await store.trial_balance()
    sums: dict[str, int] = defaultdict(int)
    balances = []
    for (account, currency), total in sorted(trial.items()):
        sums[currency] += total
        balances.append(
            {
                "account": account,
                "currency": currency,
                "debit": money(total, currency) if total > 0 else "",
                "credit": money(-total, currency) if total < 0 else "",
            }
        )
    links = _Links(store)
    accounts = sorted({account for account, _ in trial})
    wallets = [
        {
            "merchant_id": b.merchant_id,
            "available": money(b.available_minor, b.currency),
            "reserved": money(b.reserved_minor, b.currency),
            "currency": b.currency,
            "payable": b.available_minor > 0,  # the Money page offers a payout
        }
        for b in sorted(await store.all_balances(), key=lambda b: (b.merchant_id, b.currency))
    ]
    refunds = [r for p in await recent_payments(store) for r in p["refunds"]]
    return {
        "wallets": wallets,
        "nonce": secrets.token_hex(8),  # the Money page's payout forms' one-time key
        "t_accounts": [await _t_account(store, a, links, tails) for a in accounts],
        "trial": balances,
        "sums": [
            {"currency": c, "sum": money(v, c), "zero": v == 0} for c, v in sorted(sums.items())
        ],
        "balanced": all(v == 0 for v in sums.values()),
        "refunds": refunds,
        "optional": await optional_sections(store),
    }


def _cells(record: Any) -> dict[str, str]:
    if attrs.has(type(record)):
        return {k: str(v) for k, v in attrs.asdict(record, recurse=False).items()}
    if isinstance(record, dict):
        return {str(k): str(v) for k, v in record.items()}
    return {"value": str(record)}


#: The reconciliation item's fields the Money page shows, in order.
RECON_ITEM_COLUMNS = ("reference", "klass", "reason", "action", "expected", "found", "status")


async def optional_sections(store: Store) -> list[dict[str, Any]]:
    """Payouts, disputes and reconciliation items, as the store has them (the oldest first)."""
    payouts: list[Any] = []
    for merchant_id in sorted({b.merchant_id for b in await store.all_balances()}):
        payouts += await store.list_payouts(merchant_id, OPTIONAL_ROWS_MAX)
        if len(payouts) >= OPTIONAL_ROWS_MAX:
            break
    # Both shipped stores keep reconciliation runs (engine/store/port.py ReconciledStore).
    recon = cast(ReconciledStore, store)
    sections: list[tuple[str, list[Any]]] = [
        ("Payouts", payouts[:OPTIONAL_ROWS_MAX]),
        ("Disputes", await store.list_disputes(OPTIONAL_ROWS_MAX)),
        ("Reconciliation items", await recon.list_recon_items(OPTIONAL_ROWS_MAX)),
    ]
    found = []
    for title, records in sections:
        rows = [_cells(r) for r in records]
        columns = list(rows[0]) if rows else []
        if title == "Reconciliation items":  # the readable ones (ids, times and seq are long)
            columns = [c for c in RECON_ITEM_COLUMNS if c in columns]
        found.append({"title": title, "columns": columns, "rows": rows})
    return found


async def inside_page(store: Store, engine: Engine | None) -> dict[str, Any]:
    outbox = [
        {"subscriber": s, "pending": await store.count_pending_deliveries(s)} for s in SUBSCRIBERS
    ]
    letters = [
        {
            "id": f"{d.subscriber}:{d.message.message_id}",
            "topic": d.message.topic,
            "key": d.message.key,
            "attempts": d.attempts,
            "last_error": d.last_error,
        }
        for d in await store.list_dead_letters(DEAD_LETTERS_LISTED_MAX)
    ]
    stats = None if engine is None else engine.system.statistics()
    return {
        "payments": await recent_payments(store),
        "outbox": outbox,
        "dead_letters": letters,
        "actors": None
        if stats is None
        else {
            "live": stats.live_actors,
            "live_by_kind": stats.live_by_kind,
            "spawned": stats.spawned,
            "passivated": stats.passivated,
            "restarts": stats.restarts,
            "handled": stats.messages_handled,
            "store_retries": stats.store_retries,
        },
    }
