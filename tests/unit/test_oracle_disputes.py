"""Each dispute invariant (simulator/oracle_disputes.py) reports what it is about on crafted
books, and holds on right ones."""

from __future__ import annotations

import attrs
from trio.testing import MockClock

from actors.clock import TrioClock
from engine.ledger import (
    Transaction,
    TransactionKind,
    capture_entries,
    chargeback_entries,
    chargeback_recovery_entries,
)
from engine.money import Money
from engine.records import Dispute, OutboxMessage, PaymentOrder
from engine.states import DisputeStatus, OrderStatus
from simulator.fake_psp import FakePsp
from simulator.oracle_disputes import check_dispute_announcements, check_disputes_final
from simulator.oracle_refunds import money_conserved
from tests.simulation.test_fake_psp_refunds import EPOCH_MS, _captured

RATE_BPS = 1000


def _message(topic: str, key: str) -> OutboxMessage:
    return OutboxMessage(f"msg_{topic}_{key}", topic, key, {}, 0)


def test_announcements_count_created_and_closed() -> None:
    dispute = Dispute("dp_1", "ord_1", "cap_1", "USD", 100, DisputeStatus.LOST, 0, 0)
    # Inserted and closed in one unit: both messages, once each.
    right = [_message("dispute.created", "dp_1"), _message("dispute.lost", "dp_1")]
    assert check_dispute_announcements({"dp_1": dispute}, ["dp_1"], right) == []
    assert check_dispute_announcements({"dp_1": dispute}, ["dp_1"], right[:1]) != []
    assert check_dispute_announcements({"dp_1": dispute}, [], right) != []  # not created here
    opened = attrs.evolve(dispute, status=DisputeStatus.OPEN)
    assert check_dispute_announcements({"dp_1": opened}, ["dp_1"], right[:1]) == []


def _txn(n: int, kind: TransactionKind, reference: str, entries: object) -> Transaction:
    return Transaction(f"txn_{n}", kind, reference, tuple(entries), 0)  # type: ignore[arg-type]


def _trial(txns: list[Transaction]) -> dict[tuple[str, str], int]:
    trial: dict[tuple[str, str], int] = {}
    for txn in txns:
        for e in txn.entries:
            trial[(e.account, e.currency)] = trial.get((e.account, e.currency), 0) + e.amount_minor
    return trial


async def test_a_lost_dispute_booked_right_holds_and_each_fault_is_named(
    autojump_clock: MockClock,
) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    held = psp.dispute_book.open(capture_id)
    assert held is not None
    psp.dispute_book.close(held.dispute_id, won=False)
    amount = Money(10_000, "USD")
    order = PaymentOrder(
        "ord_1", "pay_1", "s1", "USD", 10_000, OrderStatus.SUCCESS, 0, 0,
        psp_capture_id=capture_id,
    )  # fmt: skip
    dispute = Dispute(held.dispute_id, "ord_1", capture_id, "USD", 10_000, DisputeStatus.LOST, 0, 0)
    txns = [
        _txn(1, TransactionKind.CAPTURE, "ord_1", capture_entries("s1", amount, RATE_BPS)[0]),
        _txn(2, TransactionKind.CHARGEBACK, dispute.dispute_id, chargeback_entries(amount)),
        _txn(
            3,
            TransactionKind.CHARGEBACK_RECOVERY,
            dispute.dispute_id,
            chargeback_recovery_entries("s1", amount, RATE_BPS, 9_000),
        ),
    ]

    def broken(disputes: dict[str, Dispute], booked: list[Transaction]) -> set[str]:
        found = check_disputes_final(
            psp, disputes, {"ord_1": order}, booked, _trial(booked), RATE_BPS
        )
        return {invariant for invariant, _, _ in found}

    right = {dispute.dispute_id: dispute}
    assert broken(right, txns) == set()
    # Still OPEN in the engine: not as the PSP says, and its recovery is one too many.
    still_open = {dispute.dispute_id: attrs.evolve(dispute, status=DisputeStatus.OPEN)}
    assert "every_dispute_as_psp_says" in broken(still_open, txns)
    # The engine never heard of it: a recovery names no dispute, the chargeback is unexplained.
    assert {"every_dispute_as_psp_says", "one_chargeback_per_dispute"} <= broken({}, txns)
    # Recovered twice under another reference: money is taken from the seller again (it sits in
    # `chargebacks` then, so no money is created: the sums alone would not see it).
    again = [*txns, attrs.evolve(txns[2], txn_id="txn_4", reference=f"{dispute.dispute_id}/2")]
    assert {"one_chargeback_per_dispute", "chargebacks_net_open_disputes"} <= broken(right, again)
    # The commission kept: the seller pays all of it.
    kept = chargeback_recovery_entries("s1", amount, 0, 10_000)
    assert "dispute_recovery_follows_policy" in broken(
        right, [*txns[:2], attrs.evolve(txns[2], entries=kept)]
    )
    # A chargeback never posted for a dispute the PSP lost: money created.
    lost_chargeback = [txns[0], txns[2]]
    found = money_conserved(psp, _trial(lost_chargeback), {})
    assert [invariant for invariant, _, _ in found] == ["money_conserved"]
    assert money_conserved(psp, _trial(txns), {}) == []
