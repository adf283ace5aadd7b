"""One conformance suite for every store: a behaviour that differs between them is a bug.

Covers atomicity (a failed unit of work leaves nothing behind), every unique key, optimistic
versions, the append-only ledger, balanced-transaction rejection, wallet = ledger, concurrent
units of work on one wallet (no lost update), the outbox fan-out with retry and dead letters,
PSP event dedup and idempotency records.
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
from engine.records import IdempotencyRecord
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
    assert {e.currency for _, e in entries} == {"JPY", "BHD"}


# --- outbox ---------------------------------------------------------------------------------


async def test_outbox_fans_out_to_each_subscriber_independently(store: Store) -> None:
    await store.register_subscriber("booking", ["order.succeeded"])
    await store.register_subscriber("analytics", ["order.succeeded", "payment.completed"])
    m1, m2 = message("order.succeeded", "o1"), message("payment.completed", "p1")
    async with store.unit_of_work() as uow:
        await uow.append_outbox(m1)
        await uow.append_outbox(m2)
    booking = await store.fetch_due_deliveries("booking", 10_000, 10)
    analytics = await store.fetch_due_deliveries("analytics", 10_000, 10)
    assert [d.message.message_id for d in booking] == [m1.message_id]
    assert [d.message.message_id for d in analytics] == [m1.message_id, m2.message_id]
    assert booking[0].message == m1
    async with store.unit_of_work() as uow:
        await uow.ack_delivery("booking", m1.message_id)
    assert await store.fetch_due_deliveries("booking", 10_000, 10) == []
    assert len(await store.fetch_due_deliveries("analytics", 10_000, 10)) == 2
    assert await store.count_pending_deliveries() == 2


async def test_outbox_retry_then_dead_letter_then_replay(store: Store) -> None:
    await store.register_subscriber("notify", ["order.succeeded"])
    m = message()
    async with store.unit_of_work() as uow:
        await uow.append_outbox(m)
    async with store.unit_of_work() as uow:
        await uow.retry_delivery("notify", m.message_id, 9_000, "connection refused")
    assert await store.fetch_due_deliveries("notify", 8_999, 10) == []
    assert await store.next_delivery_due_ms("notify") == 9_000
    [due] = await store.fetch_due_deliveries("notify", 9_000, 10)
    assert (due.attempts, due.last_error) == (1, "connection refused")
    async with store.unit_of_work() as uow:
        await uow.dead_letter_delivery("notify", m.message_id, "HTTP 500", 9_500)
    assert await store.fetch_due_deliveries("notify", 99_999, 10) == []
    [dead] = await store.list_dead_letters(10)
    assert (dead.subscriber, dead.message, dead.attempts, dead.last_error) == (
        "notify",
        m,
        2,
        "HTTP 500",
    )
    async with store.unit_of_work() as uow:
        assert await uow.replay_dead_letter("notify", m.message_id, 10_000)
        assert not await uow.replay_dead_letter("notify", "msg-unknown", 10_000)
    assert await store.list_dead_letters(10) == []
    [again] = await store.fetch_due_deliveries("notify", 10_000, 10)
    assert again.attempts == 0


async def test_outbox_message_id_is_unique(store: Store) -> None:
    m = message()
    async with store.unit_of_work() as uow:
        await uow.append_outbox(m)
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.append_outbox(m)
    assert caught.value.key == "outbox.message_id"


# --- inbound dedup and idempotency ---------------------------------------------------------------


async def test_psp_event_id_is_unique(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.record_psp_event(psp_event("evt_1"))
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.record_psp_event(psp_event("evt_1"))
    assert caught.value.key == "psp_events.event_id"


async def test_idempotency_claim_complete_and_release(store: Store) -> None:
    record = IdempotencyRecord("key_storefront", "idem-1", "sha256:abc", created_at_ms=1_000)
    async with store.unit_of_work() as uow:
        await uow.begin_idempotent(record)
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.begin_idempotent(record)
    assert caught.value.key == "idempotency.scope_key"
    async with store.unit_of_work() as uow:
        await uow.complete_idempotent(
            "key_storefront", "idem-1", 201, b'{"id":"pay_1"}', {"content-type": "json"}
        )
    async with store.unit_of_work() as uow:
        stored = await uow.get_idempotency("key_storefront", "idem-1")
    assert stored is not None and stored.completed
    assert (stored.response_status, stored.response_body) == (201, b'{"id":"pay_1"}')
    assert stored.response_headers == {"content-type": "json"}
    # Another scope may use the same key.
    async with store.unit_of_work() as uow:
        await uow.begin_idempotent(attrs.evolve(record, scope="key_other"))
        await uow.release_idempotent("key_other", "idem-1")
    async with store.unit_of_work() as uow:
        assert await uow.get_idempotency("key_other", "idem-1") is None
    assert await store.purge_idempotency(before_ms=1_001) == 1
    async with store.unit_of_work() as uow:
        assert await uow.get_idempotency("key_storefront", "idem-1") is None


async def test_concurrent_idempotency_claims_let_one_in(store: Store) -> None:
    won: list[int] = []

    async def claim(i: int) -> None:
        try:
            async with store.unit_of_work() as uow:
                await uow.begin_idempotent(
                    IdempotencyRecord("scope", "k", f"fp{i}", created_at_ms=1)
                )
            won.append(i)
        except DuplicateKey:
            pass

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(claim, i)
    assert len(won) == 1


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
