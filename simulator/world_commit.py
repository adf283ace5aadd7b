"""The oracle at each commit of the simulated store: what one unit of work wrote, checked
before anything else can run (simulator/store.py calls `SimWorld._on_commit`).

The books the commit touched (balanced, wallet = ledger), the commission of its captures, its
announcements (one outbox message per announced state change, in the same unit), a payment's
status against its orders, disputes announced, payouts' reserves; and it tells the refund and
dispute traffic which orders were captured just now. Kept apart from simulator/world.py, the
world's spine, so each module says one thing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.store.memory import MemoryUnitOfWork
from simulator.oracle import Violation, check_books
from simulator.oracle import violation as oracle_violation
from simulator.oracle_disputes import check_dispute_announcements
from simulator.oracle_flows import (
    Change,
    CommitView,
    check_announcements,
    check_commission,
    check_payment_orders,
)
from simulator.oracle_wallet import check_commit as check_wallet_commit
from simulator.store import Before
from simulator.world_payouts import check_commit as check_payouts_at_commit
from simulator.world_refunds import captured_now

if TYPE_CHECKING:
    from simulator.world import SimWorld


def check_commit(world: SimWorld, uow: MemoryUnitOfWork, before: Before) -> list[Violation]:
    """Every violation the commit of `uow` shows (empty: it holds)."""
    found = _flows(world, uow, before)
    found += check_payouts_at_commit(world.payouts, uow)
    if uow._txns:
        wallet = check_wallet_commit(world.store._t, uow._txns, world.config.commission_bps)
        found += [oracle_violation(*f) for f in wallet]
    if uow._txns or uow._deltas:
        trial, balances = world.store.touched_books(uow)
        found += check_books(trial, balances, uow._txns, trial_is_complete=False)
    return found


def _flows(world: SimWorld, uow: MemoryUnitOfWork, before: Before) -> list[Violation]:
    if world.refunds.on:
        for order_id, order in uow._orders.items():
            if order.booked and captured_now(before[1][order_id], order):
                world.refunds.order_captured(order)
    if world.disputes.on:
        for order_id, order in uow._orders.items():
            if order.booked and captured_now(before[1][order_id], order):
                world.disputes.order_captured(order)
    if uow._disputes.rows:
        inserted = [k for k, base in uow._disputes.base.items() if base is None]
        bad = check_dispute_announcements(uow._disputes.rows, inserted, uow._outbox)
        if bad:
            return [oracle_violation("dispute_announced", "a dispute change unannounced", bad)]
    if not (uow._payments or uow._orders or uow._outbox or uow._txns or uow._psp_events):
        return []
    found: list[Violation] = []
    store = world.store
    orders = store.committed_orders()
    if uow._txns:
        bad = check_commission(uow._txns, orders, world.config.commission_bps)
        if bad:
            found.append(
                oracle_violation(
                    "commission_recomputed", "a capture's commission is not the rate's", bad
                )
            )
    statuses_before, orders_before, refunds_before = before
    view = CommitView(
        payments=[Change(statuses_before[k], p) for k, p in uow._payments.items()],
        orders=[Change(orders_before[k], o) for k, o in uow._orders.items()],
        outbox=uow._outbox,
        txns=uow._txns,
        refunds=[Change(refunds_before[k], r) for k, r in uow._refunds.rows.items()],
        events=uow._psp_events,
        committed_payments=store.committed_payments(),
        committed_orders=orders,
    )
    bad = check_announcements(view)
    if bad:
        found.append(
            oracle_violation(
                "state_changes_announced",
                "a state change and its outbox message are not one for one in a commit",
                bad,
            )
        )
    payment_ids = set(uow._payments) | {o.payment_id for o in uow._orders.values()}
    payments = store.committed_payments()
    wrong = []
    for payment_id in sorted(payment_ids):
        payment = payments.get(payment_id)
        if payment is not None:
            problem = check_payment_orders(payment, store.committed_orders_of(payment_id))
            if problem:
                wrong.append(problem)
    if wrong:
        found.append(
            oracle_violation(
                "payment_status_agrees_with_orders",
                "a payment's status contradicts its orders",
                wrong,
            )
        )
    return found
