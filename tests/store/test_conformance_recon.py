"""Reconciliation runs and items (migration 0008) behave the same in every store: a file hash
is kept once (a re-upload returns the earlier run and writes nothing), items page by id and
filter by run, class and status, and only an open item is resolved (once)."""

from __future__ import annotations

import attrs
import trio

from engine.money import Money
from engine.reconciliation.line import Format, LineKind, Settlement, SettlementLine, totals_of
from engine.reconciliation.match import Capture, ItemClass, LedgerFacts, match
from engine.reconciliation.run import ItemStatus, ReconItem, ReconRun, RunStatus, build_run
from engine.states import OrderStatus
from engine.store.port import Store


def _line(n: int, ref: str, minor: int, fee: int = 0) -> SettlementLine:
    gross = Money(minor, "USD")
    return SettlementLine(
        source=Format.STRIPE,
        line_number=n,
        kind=LineKind.CAPTURE,
        reference=ref,
        psp_reference=f"txn_{n}",
        order_reference=ref,
        gross=gross,
        fee=Money(fee, "USD"),
        net=gross - Money(fee, "USD"),
        batch="po_1",
        booked_at_ms=1_000,
        value_at_ms=None,
    )


def _run(data: bytes) -> tuple[ReconRun, tuple[ReconItem, ...]]:
    lines = (_line(2, "ord_a", 1000), _line(3, "ord_b", 999), _line(4, "ord_x", 5))
    settlement = Settlement(Format.STRIPE, lines, totals_of(lines), "po_1")
    facts = LedgerFacts(
        captures={
            "ord_a": Capture("ord_a", Money(1000, "USD"), OrderStatus.SUCCESS),
            "ord_b": Capture("ord_b", Money(1000, "USD"), OrderStatus.SUCCESS),
            "ord_c": Capture("ord_c", Money(700, "USD"), OrderStatus.EXECUTING),
        },
        expected=("ord_a", "ord_b", "ord_z"),
    )
    return build_run(data, settlement, match(settlement, facts), 5_000)


async def test_a_run_is_kept_with_its_items_and_read_back(store: Store) -> None:
    run, items = _run(b"file one")
    assert await store.record_recon_run(run, items) == run
    assert await store.get_recon_run(run.run_id) == run
    assert await store.get_recon_run_by_hash(run.file_hash) == run
    assert run.batches == {"po_1": ("USD", 1000 + 999 + 5)}
    assert await store.get_recon_run_by_batch("po_1") == run
    assert await store.get_recon_run_by_batch("po_2") is None
    assert run.status is RunStatus.NEEDS_REVIEW
    assert run.counts == {"matched": 1, "auto_fixed": 0, "manual_review": 1, "investigate": 2}
    assert run.money["manual_review"] == {"USD": 999}
    got = await store.list_recon_items(100, run_id=run.run_id)
    assert got == list(items)
    assert [(i.klass, i.reference) for i in got] == [
        (ItemClass.MANUAL_REVIEW, "ord_b"),
        (ItemClass.INVESTIGATE, "ord_x"),
        (ItemClass.INVESTIGATE, "ord_z"),
    ]
    assert all(i.status is ItemStatus.OPEN for i in got)
    assert await store.get_recon_item(items[0].item_id) == items[0]
    assert await store.get_recon_run("recon_nope") is None
    assert await store.get_recon_item("recon_nope_000000") is None


async def test_a_reupload_returns_the_earlier_run_and_writes_nothing(store: Store) -> None:
    run, items = _run(b"same bytes")
    await store.record_recon_run(run, items)
    later, _ = _run(b"same bytes")
    again = await store.record_recon_run(attrs.evolve(later, created_at_ms=99_999), ())
    assert again == run
    assert len(await store.list_recon_items(100, run_id=run.run_id)) == len(items)


async def test_concurrent_uploads_of_one_file_keep_one_run(store: Store) -> None:
    run, items = _run(b"raced")
    results: list[ReconRun] = []

    async def upload() -> None:
        results.append(await store.record_recon_run(run, items))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(upload)
    assert results == [run] * 4
    assert len(await store.list_recon_items(100, run_id=run.run_id)) == len(items)


async def test_items_filter_by_class_and_status_and_page_by_id(store: Store) -> None:
    first, first_items = _run(b"one")
    second, second_items = _run(b"two")
    await store.record_recon_run(first, first_items)
    await store.record_recon_run(second, second_items)
    review = await store.list_recon_items(100, klass="manual_review")
    assert [i.run_id for i in review] == sorted([first.run_id, second.run_id])
    everything = await store.list_recon_items(100)
    assert len(everything) == 6
    page = await store.list_recon_items(2)
    rest = await store.list_recon_items(100, page[-1].item_id)
    assert page + rest == everything
    assert [i.item_id for i in everything] == sorted(i.item_id for i in everything)
    named = await store.list_recon_items(100, reference="ord_x")
    assert [(i.run_id, i.reference) for i in named] == sorted(
        [(first.run_id, "ord_x"), (second.run_id, "ord_x")]
    )


async def test_an_open_item_is_resolved_once(store: Store) -> None:
    run, items = _run(b"to resolve")
    await store.record_recon_run(run, items)
    target = items[1]
    resolved = await store.resolve_recon_item(target.item_id, "a test charge, ignored", 7_000)
    assert resolved is not None
    assert resolved.status is ItemStatus.RESOLVED
    assert (resolved.resolution_note, resolved.resolved_at_ms) == ("a test charge, ignored", 7_000)
    again = await store.resolve_recon_item(target.item_id, "another note", 8_000)
    assert again == resolved
    assert await store.resolve_recon_item("recon_nope_000000", "x", 1) is None
    still_open = await store.list_recon_items(100, status="open")
    assert target.item_id not in {i.item_id for i in still_open}
    assert len(still_open) == len(items) - 1


async def test_a_matched_payout_line_is_kept_resolved_as_its_only_trace(store: Store) -> None:
    from engine.reconciliation.match import Action, PayoutFact
    from engine.states import PayoutStatus

    line = attrs.evolve(
        _line(2, "pout_1", -900),
        source=Format.CAMT053,
        kind=LineKind.PAYOUT,
        order_reference=None,
        batch=None,
    )
    settlement = Settlement(Format.CAMT053, (line,), totals_of((line,)), None)
    facts = LedgerFacts(
        captures={},
        payouts={"pout_1": PayoutFact("pout_1", Money(900, "USD"), PayoutStatus.PAID)},
    )
    run, items = build_run(b"statement", settlement, match(settlement, facts), 5_000)
    assert run.status is RunStatus.CLEAN and run.counts["matched"] == 1
    (kept,) = items
    assert (kept.klass, kept.action, kept.status) == (
        ItemClass.MATCHED,
        Action.KEEP_MATCH,
        ItemStatus.RESOLVED,
    )
    assert await store.record_recon_run(run, items) == run
    assert await store.list_recon_items(100, reference="pout_1") == [kept]
