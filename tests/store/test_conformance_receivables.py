"""A seller's debt (`UnitOfWork.receivable_minor`, engine/receivables.py) reads the same in
every store: the receivable account's committed sum per currency plus what the unit itself
posted, including a negative sum, and nothing from a unit that rolled back.
"""

from __future__ import annotations

import pytest

from engine.ledger import (
    REFUNDS_CLEARING,
    Entry,
    Transaction,
    TransactionKind,
    merchant_payable,
    merchant_receivable,
)
from engine.money import Money
from engine.receivables import settle_debt_entries
from engine.store.port import Store
from tests.factories import next_id


class Boom(Exception):
    pass


def _debt(merchant_id: str, amount_minor: int, currency: str = "USD") -> Transaction:
    amount = Money(amount_minor, currency)
    return Transaction(
        next_id("txn"),
        TransactionKind.REFUND,
        next_id("re"),
        (
            Entry.debit(merchant_receivable(merchant_id), amount),
            Entry.credit(REFUNDS_CLEARING, amount),
        ),
        1_000,
    )


async def test_receivable_is_the_accounts_sum_seen_by_the_unit(store: Store) -> None:
    async with store.unit_of_work() as uow:
        assert await uow.receivable_minor("m1", "USD") == 0
        await uow.post_transaction(_debt("m1", 700))
        await uow.post_transaction(_debt("m1", 300))
        await uow.post_transaction(_debt("m1", 50, "EUR"))
        await uow.post_transaction(_debt("m2", 9))
        assert await uow.receivable_minor("m1", "USD") == 1_000  # its own writes
    async with store.unit_of_work() as uow:
        assert await uow.receivable_minor("m1", "USD") == 1_000
        assert await uow.receivable_minor("m1", "EUR") == 50
        assert await uow.receivable_minor("m2", "USD") == 9
        assert await uow.receivable_minor("m3", "USD") == 0


async def test_a_rolled_back_debt_is_not_owed(store: Store) -> None:
    with pytest.raises(Boom):
        async with store.unit_of_work() as uow:
            await uow.post_transaction(_debt("m1", 700))
            raise Boom
    async with store.unit_of_work() as uow:
        assert await uow.receivable_minor("m1", "USD") == 0


async def test_a_released_share_reads_negative_and_settling_nets_it(store: Store) -> None:
    # A debt collected from the wallet, then its refund reversed: the seller is owed 400.
    async with store.unit_of_work() as uow:
        capture = Money(400, "USD")
        await uow.post_transaction(
            Transaction(
                next_id("txn"),
                TransactionKind.ADJUSTMENT,
                next_id("adj"),
                (
                    Entry.debit(REFUNDS_CLEARING, capture),
                    Entry.credit(merchant_payable("m1"), capture),
                ),
                1_000,
            )
        )
        await uow.post_transaction(_debt("m1", 400))
        kind, entries = settle_debt_entries("m1", "USD", 400, 400) or (None, ())
        assert kind is TransactionKind.RECEIVABLE_COLLECTED
        await uow.post_transaction(Transaction(next_id("txn"), kind, next_id("d"), entries, 1))
        await uow.post_transaction(_reversal("m1", 400))
        assert await uow.receivable_minor("m1", "USD") == -400
        assert (await uow.get_balance("m1", "USD")).available_minor == 0
        kind, entries = settle_debt_entries("m1", "USD", -400, 0) or (None, ())
        assert kind is TransactionKind.RECEIVABLE_RELEASED
        await uow.post_transaction(Transaction(next_id("txn"), kind, next_id("d"), entries, 2))
    async with store.unit_of_work() as uow:
        assert await uow.receivable_minor("m1", "USD") == 0
        assert (await uow.get_balance("m1", "USD")).available_minor == 400


def _reversal(merchant_id: str, amount_minor: int) -> Transaction:
    amount = Money(amount_minor, "USD")
    return Transaction(
        next_id("txn"),
        TransactionKind.REFUND_REVERSED,
        next_id("re"),
        (
            Entry.debit(REFUNDS_CLEARING, amount),
            Entry.credit(merchant_receivable(merchant_id), amount),
        ),
        1_000,
    )
