"""The oracle: the invariants that prove exactly-once, checked during and after every run.

It compares three independent records of the truth: the fake PSP's books (what was really
captured, under which idempotency key), the engine's committed state (payments, orders, the
ledger, the wallets, the outbox) and what the simulated clients were told. Each check returns
`Violation`s naming the invariant, the objects and the amounts, so a report can say exactly
what broke; the runner adds the replay command.

Invariants (names are stable: tests and reports refer to them):

- `at_most_one_capture_per_order`: every capture at the PSP carries an order id of its own
  checkout as idempotency key (the key is what makes a retry harmless), so no order is captured
  twice.
- `captured_orders_match_psp`: an order is SUCCESS exactly when the PSP captured it.
- `every_authorized_order_terminal`: once faults stop, every payment and order is terminal and
  every captured order is booked (liveness).
- `ledger_transactions_balanced`: every ledger transaction sums to zero per currency.
- `wallet_equals_ledger`: every wallet equals its ledger accounts, at every commit.
- `psp_captured_equals_ledger`: the PSP's captured total (net of refunds) equals psp_clearing
  plus what settlement files settled, per currency, and each captured order is booked once.
- `no_negative_balance`: no wallet below zero.
- `idempotent_replies`: the same checkout sent again gets the same payment.
- `messages_consumed_or_dead_lettered`: after quiescence no outbox delivery is pending.
- `forged_webhooks_rejected`: a webhook with a bad signature never reaches the engine.
- `no_server_errors`: no client request raises in the engine (a 500); an outage's
  StoreUnavailable is a 503 and allowed.
- `actors_never_crash`: the supervisor never restarts an actor (expected failures are values;
  a crash is a broken invariant even when the restart hides it).

The flow invariants (commission recomputed, state changes announced, a payment's status agrees
with its orders, authorized sessions honoured, orders fail only on the PSP's word, charged buyers
completed, merchants notified, webhook effects committed) are in simulator/oracle_flows.py.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping

import attrs

from engine.gateway import CaptureStatus
from engine.ledger import (
    MERCHANT_PAYABLE,
    MERCHANT_RESERVED,
    PSP_CLEARING,
    Transaction,
    TransactionKind,
    imbalance,
)
from engine.records import Balance, Dispute, Payment, PaymentOrder, Refund
from engine.states import OrderStatus, is_terminal
from simulator.fake_psp import FakePsp
from simulator.oracle_disputes import DISPUTE_INVARIANTS, check_disputes_final
from simulator.oracle_flows import FLOW_INVARIANTS, check_flows_final
from simulator.oracle_payouts import PAYOUT_INVARIANTS
from simulator.oracle_refunds import REFUND_INVARIANTS, check_refunds_final

INVARIANTS = (
    "at_most_one_capture_per_order",
    "captured_orders_match_psp",
    "every_authorized_order_terminal",
    "ledger_transactions_balanced",
    "wallet_equals_ledger",
    "psp_captured_equals_ledger",
    "no_negative_balance",
    "idempotent_replies",
    "messages_consumed_or_dead_lettered",
    "forged_webhooks_rejected",
    *FLOW_INVARIANTS,
    *REFUND_INVARIANTS,
    *DISPUTE_INVARIANTS,
    *PAYOUT_INVARIANTS,
)

#: The most offending objects one violation lists (the rest are counted).
OBJECTS_LISTED_MAX = 5


@attrs.frozen
class Violation:
    invariant: str
    detail: str
    objects: tuple[str, ...] = ()

    def __str__(self) -> str:
        listed = f" [{', '.join(self.objects)}]" if self.objects else ""
        return f"{self.invariant}: {self.detail}{listed}"


@attrs.frozen
class Snapshot:
    """The engine's committed state, as the oracle needs it."""

    payments: Mapping[str, Payment]
    orders: Mapping[str, PaymentOrder]
    #: Every ledger transaction, when the store can list them (memory); else empty.
    txns: tuple[Transaction, ...]
    trial: Mapping[tuple[str, str], int]
    balances: tuple[Balance, ...]
    pending_deliveries: int
    dead_letters: int
    #: Every refund, when the store can list them (memory); else empty (not checked).
    refunds: Mapping[str, Refund] = attrs.Factory(dict)
    #: Every dispute (simulator/oracle_disputes.py).
    disputes: Mapping[str, Dispute] = attrs.Factory(dict)


def violation(invariant: str, detail: str, objects: Iterable[str] = ()) -> Violation:
    """A violation listing at most OBJECTS_LISTED_MAX of its objects (the rest counted)."""
    listed = list(objects)
    more = len(listed) - OBJECTS_LISTED_MAX
    shown = listed[:OBJECTS_LISTED_MAX] + ([f"... {more} more"] if more > 0 else [])
    return Violation(invariant, detail, tuple(shown))


# --- the books: checkable at any committed instant ------------------------------------------------
def check_books(
    trial: Mapping[tuple[str, str], int],
    balances: Iterable[Balance],
    txns: Iterable[Transaction] = (),
    *,
    trial_is_complete: bool = True,
) -> list[Violation]:
    """Balanced transactions, wallet = ledger, no negative balance.

    With `trial_is_complete=False` (the rows one commit touched) the trial balance is not
    summed per currency, since a part of a balanced ledger need not balance.
    """
    found: list[Violation] = []
    unbalanced = [f"{t.txn_id} ({t.kind} {t.reference}) off {imbalance(t.entries)}" for t in txns]
    unbalanced = [u for u in unbalanced if not u.endswith("off {}")]
    per_currency: Counter[str] = Counter()
    for (_, currency), total in trial.items():
        per_currency[currency] += total
    if trial_is_complete:
        unbalanced += [
            f"trial balance {c} off by {n} minor units" for c, n in per_currency.items() if n
        ]
    if unbalanced:
        found.append(
            violation(
                "ledger_transactions_balanced", "debits differ from credits", sorted(unbalanced)
            )
        )
    mismatched: list[str] = []
    negative: list[str] = []
    seen: set[tuple[str, str]] = set()
    for b in balances:
        seen.add((b.merchant_id, b.currency))
        ledger_available = -trial.get((f"{MERCHANT_PAYABLE}:{b.merchant_id}", b.currency), 0)
        ledger_reserved = -trial.get((f"{MERCHANT_RESERVED}:{b.merchant_id}", b.currency), 0)
        if (b.available_minor, b.reserved_minor) != (ledger_available, ledger_reserved):
            mismatched.append(
                f"{b.merchant_id} {b.currency}: wallet {b.available_minor}/{b.reserved_minor}"
                f" ledger {ledger_available}/{ledger_reserved} minor units"
            )
        if b.available_minor < 0 or b.reserved_minor < 0:
            negative.append(f"{b.merchant_id} {b.currency}: {b.available_minor}")
    for (account, currency), total in trial.items():
        base, _, merchant = account.partition(":")
        if (
            base in (MERCHANT_PAYABLE, MERCHANT_RESERVED)
            and total
            and (merchant, currency) not in seen
        ):
            mismatched.append(f"{merchant} {currency}: no wallet, ledger {-total} minor units")
    if mismatched:
        found.append(
            violation(
                "wallet_equals_ledger", "a wallet differs from its ledger", sorted(mismatched)
            )
        )
    if negative:
        found.append(violation("no_negative_balance", "a wallet is below zero", sorted(negative)))
    return found


def check_psp_keys(psp: FakePsp, orders: Mapping[str, PaymentOrder]) -> list[Violation]:
    """Every PSP capture is keyed by an order id of the checkout it captures."""
    bad_by_key: list[tuple[str, str]] = []
    sessions = psp.sessions
    for key, capture in psp.captures.items():  # every virtual minute: sort only what is bad
        session = sessions.get(capture.session_id)
        order = orders.get(key)
        if order is None or session is None or order.payment_id != session.nonce:
            bad_by_key.append(
                (
                    key,
                    f"capture {capture.capture_id} of {capture.amount} ({capture.status}) on "
                    f"session {capture.session_id} has key {key}, not an order id of that checkout",
                )
            )
    if not bad_by_key:
        return []
    bad = [text for _, text in sorted(bad_by_key)]
    return [
        violation(
            "at_most_one_capture_per_order",
            f"{len(bad)} capture(s) not keyed by their order id: a retry captures again",
            bad,
        )
    ]


# --- after quiescence -------------------------------------------------------------------------
def psp_clearing_plus_settled(snap: Snapshot) -> dict[str, int]:
    """Per currency, psp_clearing's balance plus what reconciliation settled out of it (its
    settlement and fee postings: simulator/oracle_recon.py checks those line by line)."""
    total: Counter[str] = Counter(
        {c: v for (a, c), v in snap.trial.items() if a == PSP_CLEARING and v}
    )
    for txn in snap.txns:
        if txn.kind is TransactionKind.SETTLEMENT or (
            txn.kind is TransactionKind.ADJUSTMENT and txn.reference.startswith("fee:")
        ):
            for entry in txn.entries:
                if entry.account == PSP_CLEARING:
                    total[entry.currency] -= entry.amount_minor
    return {c: v for c, v in total.items() if v}


def check_final(
    snap: Snapshot,
    psp: FakePsp,
    *,
    idempotency_breaks: Iterable[str],
    forged_accepted: int,
    notified: Collection[tuple[str, str]] | None = None,
    register_attempts_max: int | None = None,
    commission_bps: int = 1000,
    paid_out: Mapping[str, int] | None = None,
) -> list[Violation]:
    """Every invariant over the final state; empty when the run proved exactly-once.

    `notified`: the (topic, key) of every message the merchants' notifier received, when the
    world recorded them (simulator/oracle_flows.py `merchants_notified`).
    """
    found = check_psp_keys(psp, snap.orders)
    found += check_books(snap.trial, snap.balances, snap.txns)

    captured_keys = {k for k, c in psp.captures.items() if c.status is CaptureStatus.CAPTURED}
    mismatch = []
    for order_id in sorted(snap.orders):
        order = snap.orders[order_id]
        was_captured = order_id in captured_keys
        if was_captured != (order.status is OrderStatus.SUCCESS):
            mismatch.append(
                f"order {order_id} {order.amount} is {order.status} but the PSP "
                + ("captured it" if was_captured else "never captured it")
            )
        elif was_captured and order.psp_capture_id != psp.captures[order_id].capture_id:
            # Refunds and reconciliation find the capture by this id.
            mismatch.append(
                f"order {order_id} records capture {order.psp_capture_id}, the PSP's is "
                f"{psp.captures[order_id].capture_id}"
            )
    if mismatch:
        found.append(
            violation("captured_orders_match_psp", "order state contradicts the PSP", mismatch)
        )

    unfinished = [
        f"payment {p.payment_id} {p.status}"
        for p in snap.payments.values()
        if not is_terminal(p.status)
    ]
    unfinished += [
        f"order {o.order_id} {o.status}{'' if o.booked else ' unbooked'}"
        for o in snap.orders.values()
        if not is_terminal(o.status) or (o.status is OrderStatus.SUCCESS and not o.booked)
    ]
    if unfinished:
        found.append(
            violation(
                "every_authorized_order_terminal",
                f"{len(unfinished)} payment(s)/order(s) not terminal after faults stopped",
                sorted(unfinished),
            )
        )

    # What the PSP captured less what it paid back for refunds and what its disputes keep
    # withdrawn (zero-free Counters) is what psp_clearing holds plus what settlement files
    # settled out of it (issue 12).
    psp_total = (
        psp.captured_total() - psp.refund_book.total() - psp.dispute_book.withdrawn_total()
    )
    ledger_total = psp_clearing_plus_settled(snap)
    money: list[str] = []
    for currency in sorted(set(psp_total) | set(ledger_total)):
        if psp_total.get(currency, 0) != ledger_total.get(currency, 0):
            money.append(
                f"{currency}: PSP captured {psp_total.get(currency, 0)}, ledger psp_clearing "
                f"{ledger_total.get(currency, 0)} minor units"
            )
    if snap.txns:
        # A capture transaction names its order in the description ("capture of order X");
        # its reference is the order id too, unless a planted bug changed it, so count by
        # description to see a second booking whatever reference it used.
        bookings: Counter[str] = Counter()
        for txn in snap.txns:
            if txn.kind is TransactionKind.CAPTURE:
                bookings[txn.description.rpartition(" ")[2]] += 1
        for order_id in sorted(snap.orders):
            order = snap.orders[order_id]
            expected = 1 if order.status is OrderStatus.SUCCESS else 0
            if bookings[order_id] != expected:
                money.append(f"order {order_id} {order.amount} booked {bookings[order_id]} times")
    if money:
        found.append(
            violation("psp_captured_equals_ledger", "the PSP and the ledger disagree", money)
        )

    breaks = sorted(idempotency_breaks)
    if breaks:
        found.append(
            violation("idempotent_replies", "a repeated checkout got a different answer", breaks)
        )
    if snap.pending_deliveries:
        found.append(
            violation(
                "messages_consumed_or_dead_lettered",
                f"{snap.pending_deliveries} outbox deliveries still pending after quiescence",
            )
        )
    if snap.dead_letters:
        # The simulation's subscribers (a recording notifier, analytics) accept every message:
        # a dead letter here is a handler that failed, i.e. a bug.
        found.append(
            violation(
                "messages_consumed_or_dead_lettered",
                f"{snap.dead_letters} dead letter(s); every subscriber here accepts every message",
            )
        )
    if forged_accepted:
        found.append(
            violation(
                "forged_webhooks_rejected",
                f"{forged_accepted} webhook(s) with a forged signature were accepted",
            )
        )
    for invariant, detail, objects in check_flows_final(
        snap.payments, snap.orders, psp, notified, register_attempts_max=register_attempts_max
    ):
        found.append(violation(invariant, detail, objects))
    if snap.refunds or psp.refunds:
        for invariant, detail, objects in check_refunds_final(
            psp, snap.refunds, snap.orders, snap.txns, snap.trial, paid_out
        ):
            found.append(violation(invariant, detail, objects))
    if snap.disputes or psp.disputes:  # issue 11, the chargeback part
        for invariant, detail, objects in check_disputes_final(
            psp, snap.disputes, snap.orders, snap.txns, snap.trial, commission_bps
        ):
            found.append(violation(invariant, detail, objects))
    return found


def summarize(snap: Snapshot, psp: FakePsp) -> dict[str, object]:
    """Counts and money per currency for the report (no judgement)."""
    payments: Counter[str] = Counter(p.status.value for p in snap.payments.values())
    orders: Counter[str] = Counter(o.status.value for o in snap.orders.values())
    booked: defaultdict[str, int] = defaultdict(int)
    revenue: defaultdict[str, int] = defaultdict(int)
    for (account, currency), total in snap.trial.items():
        if account.startswith(MERCHANT_PAYABLE + ":"):
            booked[currency] -= total
        elif account == "platform_revenue":
            revenue[currency] -= total
    captured = psp.captured_total()
    currencies = sorted(set(captured) | set(booked))
    return {
        "payments": dict(sorted(payments.items())),
        "orders": dict(sorted(orders.items())),
        "psp_captures": sum(c.status is CaptureStatus.CAPTURED for c in psp.captures.values()),
        "money_minor": {
            c: {
                "captured": captured.get(c, 0),
                "sellers": booked.get(c, 0),
                "commission": revenue.get(c, 0),
            }
            for c in currencies
        },
        "dead_letters": snap.dead_letters,
    }
