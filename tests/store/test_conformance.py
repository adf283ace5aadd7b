"""One conformance suite for every store: a behaviour that differs between them is a bug.

Covers atomicity (a failed unit of work leaves nothing behind), every unique key, optimistic
versions, the append-only ledger, balanced-transaction rejection, wallet = ledger, and
concurrent units of work on one wallet (no lost update). The outbox, PSP event dedup and
idempotency records are in test_conformance_messages.py; API keys and webhook endpoints in
test_conformance_api.py.
"""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.lowlevel

from engine.errors import (
    DuplicateKey,
    NegativeBalance,
    NotFound,
    UnbalancedTransaction,
    VersionConflict,
)
from engine.ledger import (
    Entry,
    Transaction,
    TransactionKind,
    merchant_payable,
    payout_reserve_entries,
)
from engine.money import Money, split_bps
from engine.states import OrderStatus, PaymentStatus
from engine.store.port import Store
from tests.factories import capture_txn, message, next_id, payment_with_orders, psp_event


class Boom(Exception):
    pass


# --- payments and orders ---------------------------------------------------------------------


async def test_payment_with_orders_round_trips(store: Store) -> None:
    payment, orders = payment_with_orders([1000, 2550, 1])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
        assert await uow.get_payment(payment.payment_id) == payment  # reads see own writes
    assert await store.get_payment(payment.payment_id) == payment
    assert await store.get_orders(payment.payment_id) == sorted(orders, key=lambda o: o.order_id)
    assert await store.get_order(orders[0].order_id) == orders[0]


async def test_failed_unit_of_work_leaves_nothing_behind(store: Store) -> None:
    payment, orders = payment_with_orders([500, 700])
    txn = capture_txn("seller-0", 500)
    with pytest.raises(Boom):
        async with store.unit_of_work() as uow:
            await uow.insert_payment(payment, orders)
            await uow.post_transaction(txn)
            await uow.append_outbox(message())
            await uow.record_psp_event(psp_event("evt_atomic"))
            raise Boom
    assert await store.get_payment(payment.payment_id) is None
    assert await store.get_orders(payment.payment_id) == []
    assert await store.get_transaction(txn.txn_id) is None
    assert await store.trial_balance() == {}
    assert await store.all_balances() == []
    # The event id is free again: nothing of the failed unit was kept.
    async with store.unit_of_work() as uow:
        await uow.record_psp_event(psp_event("evt_atomic"))


async def test_cancelled_unit_of_work_is_rolled_back(store: Store) -> None:
    payment, orders = payment_with_orders([900])
    with trio.CancelScope() as scope:
        async with store.unit_of_work() as uow:
            await uow.insert_payment(payment, orders)
            scope.cancel()
            await trio.sleep(1)
    assert scope.cancelled_caught
    assert await store.get_payment(payment.payment_id) is None


async def test_checkout_id_is_unique(store: Store) -> None:
    first, first_orders = payment_with_orders([100], checkout_id="chk-same")
    second, second_orders = payment_with_orders([100], checkout_id="chk-same")
    async with store.unit_of_work() as uow:
        await uow.insert_payment(first, first_orders)
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.insert_payment(second, second_orders)
    assert caught.value.key == "payments.checkout_id"
    assert await store.get_payment(second.payment_id) is None


async def test_concurrent_same_checkout_creates_one_payment(store: Store) -> None:
    outcomes: list[str] = []

    async def create() -> None:
        payment, orders = payment_with_orders([100, 200], checkout_id="chk-race")
        try:
            async with store.unit_of_work() as uow:
                await uow.insert_payment(payment, orders)
            outcomes.append("created")
        except DuplicateKey as exc:
            assert exc.key == "payments.checkout_id"
            outcomes.append("duplicate")

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(create)
    assert sorted(outcomes) == ["created"] + ["duplicate"] * 4


async def test_payment_and_order_ids_are_unique(store: Store) -> None:
    payment, orders = payment_with_orders([100])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
    other = attrs.evolve(payment, checkout_id=next_id("chk"))
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.insert_payment(other, orders)
    assert caught.value.key == "payments.payment_id"
    payment2, orders2 = payment_with_orders([100])
    clash = [attrs.evolve(orders2[0], order_id=orders[0].order_id)]
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.insert_payment(payment2, clash)
    assert caught.value.key == "payment_orders.order_id"


async def test_updates_are_optimistic(store: Store) -> None:
    payment, orders = payment_with_orders([100])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
    async with store.unit_of_work() as uow:
        moved = await uow.update_payment(
            attrs.evolve(payment, status=PaymentStatus.AWAITING_PAYMENT, updated_at_ms=2_000)
        )
        assert moved.version == payment.version + 1
    stale = attrs.evolve(payment, status=PaymentStatus.REJECTED_BY_RISK)
    with pytest.raises(VersionConflict):
        async with store.unit_of_work() as uow:
            await uow.update_payment(stale)
    stored = await store.get_payment(payment.payment_id)
    assert stored is not None and stored.status is PaymentStatus.AWAITING_PAYMENT
    order = orders[0]
    async with store.unit_of_work() as uow:
        executing = await uow.update_order(attrs.evolve(order, status=OrderStatus.EXECUTING))
        # a second update in the same unit continues from the version it returned
        await uow.update_order(attrs.evolve(executing, attempts=1))
    with pytest.raises(VersionConflict):
        async with store.unit_of_work() as uow:
            await uow.update_order(attrs.evolve(order, status=OrderStatus.FAILED))
    stored_order = await store.get_order(order.order_id)
    assert stored_order is not None
    assert (stored_order.status, stored_order.attempts, stored_order.version) == (
        OrderStatus.EXECUTING,
        1,
        2,
    )


async def test_update_of_missing_row_is_not_found(store: Store) -> None:
    payment, orders = payment_with_orders([100])
    with pytest.raises(NotFound):
        async with store.unit_of_work() as uow:
            await uow.update_payment(payment)
    with pytest.raises(NotFound):
        async with store.unit_of_work() as uow:
            await uow.update_order(orders[0])


async def test_concurrent_updates_of_one_order_let_exactly_one_win(store: Store) -> None:
    payment, orders = payment_with_orders([100])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
    wins: list[int] = []
    conflicts: list[int] = []

    async def bump(n: int) -> None:
        try:
            async with store.unit_of_work() as uow:
                current = await uow.get_order(orders[0].order_id)
                assert current is not None
                await trio.lowlevel.checkpoint()
                await uow.update_order(attrs.evolve(current, attempts=n))
            wins.append(n)
        except VersionConflict:
            conflicts.append(n)

    async with trio.open_nursery() as nursery:
        for n in range(1, 5):
            nursery.start_soon(bump, n)
    stored = await store.get_order(orders[0].order_id)
    assert stored is not None
    assert len(wins) + len(conflicts) == 4 and wins
    assert stored.version == len(wins)


async def test_unfinished_lists_drive_recovery(store: Store) -> None:
    payment, orders = payment_with_orders([100, 200])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
    assert [p.payment_id for p in await store.list_unfinished_payments(10)] == [payment.payment_id]
    assert {o.order_id for o in await store.list_unfinished_orders(10)} == {
        o.order_id for o in orders
    }
    async with store.unit_of_work() as uow:
        for order in orders:
            await uow.update_order(
                attrs.evolve(order, status=OrderStatus.FAILED, failure_reason="declined")
            )
        await uow.update_payment(attrs.evolve(payment, status=PaymentStatus.REJECTED_BY_RISK))
    assert await store.list_unfinished_payments(10) == []
    assert await store.list_unfinished_orders(10) == []


async def test_succeeded_but_unbooked_order_is_unfinished(store: Store) -> None:
    payment, orders = payment_with_orders([100])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
    async with store.unit_of_work() as uow:
        done = await uow.update_order(attrs.evolve(orders[0], status=OrderStatus.SUCCESS))
    assert [o.order_id for o in await store.list_unfinished_orders(10)] == [orders[0].order_id]
    async with store.unit_of_work() as uow:
        await uow.update_order(attrs.evolve(done, ledger_booked=True, wallet_booked=True))
    assert await store.list_unfinished_orders(10) == []


async def test_list_payments_pages_newest_first(store: Store) -> None:
    created = []
    for _ in range(5):
        payment, orders = payment_with_orders([100])
        async with store.unit_of_work() as uow:
            await uow.insert_payment(payment, orders)
        created.append(payment.payment_id)
    first = await store.list_payments(2)
    assert [p.payment_id for p in first] == created[::-1][:2]
    second = await store.list_payments(2, starting_after=first[-1].payment_id)
    assert [p.payment_id for p in second] == created[::-1][2:4]


# --- ledger and wallets ------------------------------------------------------------------------


async def test_posting_updates_wallet_in_same_commit(store: Store) -> None:
    txn = capture_txn("seller-a", 10_000)
    async with store.unit_of_work() as uow:
        await uow.post_transaction(txn)
        inside = await uow.get_balance("seller-a", "USD")
        assert inside.available_minor == 9_000
    balance = (await store.list_balances("seller-a"))[0]
    assert (balance.available_minor, balance.reserved_minor) == (9_000, 0)
    trial = await store.trial_balance()
    assert trial[(merchant_payable("seller-a"), "USD")] == -9_000
    assert trial[("platform_revenue", "USD")] == -1_000
    assert trial[("psp_clearing", "USD")] == 10_000
    read_back = await store.get_transaction(txn.txn_id)
    assert read_back == txn
    assert await store.count_transactions() == 1


async def test_ledger_business_key_is_unique(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.post_transaction(capture_txn("seller-a", 100, reference="ord-dup"))
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.post_transaction(capture_txn("seller-a", 100, reference="ord-dup"))
    assert caught.value.key == "ledger_transactions.kind_reference"
    assert (await store.list_balances("seller-a"))[0].available_minor == 90
    async with store.unit_of_work() as uow:
        found = await uow.get_transaction_by_reference("capture", "ord-dup")
        assert found is not None and found.reference == "ord-dup"


async def test_transaction_id_is_unique(store: Store) -> None:
    txn = capture_txn("seller-a", 100)
    async with store.unit_of_work() as uow:
        await uow.post_transaction(txn)
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.post_transaction(attrs.evolve(txn, reference="other"))
    assert caught.value.key == "ledger_transactions.txn_id"


def test_unbalanced_transaction_is_refused_before_any_store() -> None:
    with pytest.raises(UnbalancedTransaction, match="debits must equal credits"):
        Transaction(
            txn_id="txn-x",
            kind=TransactionKind.ADJUSTMENT,
            reference="r",
            entries=(Entry("psp_clearing", 100, "USD"), Entry("bank_cash", -99, "USD")),
            created_at_ms=1,
        )


async def test_store_rejects_unbalanced_transaction_that_skipped_validation(store: Store) -> None:
    good = capture_txn("seller-a", 100)
    # Build a broken record the way a bug would: bypassing the attrs validator.
    broken = object.__new__(Transaction)
    for field in attrs.fields(Transaction):
        object.__setattr__(broken, field.name, getattr(good, field.name))
    object.__setattr__(broken, "entries", good.entries[:1])
    with pytest.raises(UnbalancedTransaction):
        async with store.unit_of_work() as uow:
            await uow.post_transaction(broken)
    assert await store.get_transaction(good.txn_id) is None
    assert await store.trial_balance() == {}


async def test_negative_available_balance_is_refused(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.post_transaction(capture_txn("seller-a", 1_000))  # 900 available
    reserve = Transaction(
        txn_id=next_id("txn"),
        kind=TransactionKind.PAYOUT_RESERVE,
        reference="po-1",
        entries=payout_reserve_entries("seller-a", Money(901, "USD")),
        created_at_ms=5,
    )
    with pytest.raises(NegativeBalance):
        async with store.unit_of_work() as uow:
            await uow.post_transaction(reserve)
    balance = (await store.list_balances("seller-a"))[0]
    assert (balance.available_minor, balance.reserved_minor) == (900, 0)
    ok = attrs.evolve(
        reserve, entries=payout_reserve_entries("seller-a", Money(900, "USD")), reference="po-2"
    )
    async with store.unit_of_work() as uow:
        await uow.post_transaction(ok)
    balance = (await store.list_balances("seller-a"))[0]
    assert (balance.available_minor, balance.reserved_minor) == (0, 900)


async def test_concurrent_postings_to_one_wallet_lose_no_update(store: Store) -> None:
    count = 20

    async def post(i: int) -> None:
        async with store.unit_of_work() as uow:
            await uow.get_balance("hot-seller", "EUR")
            await trio.lowlevel.checkpoint()
            await uow.post_transaction(capture_txn("hot-seller", 1_000 + i, "EUR"))

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(post, i)
    expected = sum(split_bps(Money(1_000 + i, "EUR"), 1000)[1].minor for i in range(count))
    balance = (await store.list_balances("hot-seller"))[0]
    assert balance.available_minor == expected
    trial = await store.trial_balance()
    assert -trial[(merchant_payable("hot-seller"), "EUR")] == expected


async def test_concurrent_reservations_never_overdraw(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.post_transaction(capture_txn("seller-r", 1_000))  # 900 available
    results: list[str] = []

    async def reserve(i: int) -> None:
        txn = Transaction(
            txn_id=next_id("txn"),
            kind=TransactionKind.PAYOUT_RESERVE,
            reference=f"po-{i}",
            entries=payout_reserve_entries("seller-r", Money(400, "USD")),
            created_at_ms=5,
        )
        try:
            async with store.unit_of_work() as uow:
                await uow.post_transaction(txn)
            results.append("ok")
        except NegativeBalance:
            results.append("refused")

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(reserve, i)
    assert sorted(results) == ["ok", "ok", "refused", "refused"]
    balance = (await store.list_balances("seller-r"))[0]
    assert (balance.available_minor, balance.reserved_minor) == (100, 800)


async def test_wallet_equals_ledger_after_mixed_postings(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.post_transaction(capture_txn("m1", 5_000, "JPY"))
        await uow.post_transaction(capture_txn("m1", 1_234, "BHD"))
        await uow.post_transaction(capture_txn("m2", 77, "USD"))
    trial = await store.trial_balance()
    for balance in await store.all_balances():
        account = merchant_payable(balance.merchant_id)
        assert balance.available_minor == -trial.get((account, balance.currency), 0)
    assert sum(v for (_, c), v in trial.items() if c == "JPY") == 0
    entries = await store.list_entries(merchant_payable("m1"), 10)
    assert {e.currency for _, _, e in entries} == {"JPY", "BHD"}


async def test_entry_pages_never_skip_an_entry_inside_a_transaction(store: Store) -> None:
    """A transaction may hold several entries of one account; every page size, followed by
    its cursor, returns each entry exactly once, in (transaction, entry number) order."""
    async with store.unit_of_work() as uow:
        for legs in ((5, 7), (3,), (1, 2, 4)):
            entries = tuple(Entry("psp_clearing", amount, "USD") for amount in legs)
            await uow.post_transaction(
                Transaction(
                    txn_id=next_id("txn"),
                    kind=TransactionKind.ADJUSTMENT,
                    reference=next_id("adj"),
                    entries=(*entries, Entry("platform_revenue", -sum(legs), "USD")),
                    created_at_ms=1,
                )
            )
    everything = await store.list_entries("psp_clearing", 100)
    assert [e.amount_minor for _, _, e in everything] == [5, 7, 3, 1, 2, 4]
    assert [no for _, no, _ in everything] == [0, 1, 0, 0, 1, 2]
    for limit in range(1, len(everything) + 1):
        seen: list[tuple[str, int, Entry]] = []
        after = None
        while page := await store.list_entries("psp_clearing", limit, after):
            assert len(page) <= limit
            seen.extend(page)
            after = (page[-1][0], page[-1][1])
        assert seen == everything, limit


async def test_ledger_is_append_only_through_the_port(store: Store) -> None:
    """No unit of work can change or delete a ledger row: a correction is a new transaction.

    (What PostgreSQL itself refuses to raw SQL is in test_postgres_enforcement.py.)
    """
    uow_methods = {name for name in dir(type(store)) if not name.startswith("_")}
    async with store.unit_of_work() as uow:
        uow_methods |= {name for name in dir(uow) if not name.startswith("_")}
        txn = capture_txn("seller-a", 1_000, reference="ord-append")
        await uow.post_transaction(txn)
    mutators = {m for m in uow_methods if "transaction" in m or "entr" in m or "ledger" in m} - {
        "post_transaction",
        "get_transaction",
        "get_transaction_by_reference",
        "count_transactions",
        "list_entries",
    }
    assert mutators == set()
    with pytest.raises(DuplicateKey):
        async with store.unit_of_work() as uow:
            await uow.post_transaction(capture_txn("seller-a", 5, reference="ord-append"))
    assert await store.get_transaction(txn.txn_id) == txn
