"""Refunds at the fake PSP: idempotent on the key, partial up to what was captured, refused
with a reason otherwise, pending then settled like Stripe's, the same faults as captures,
signed `refund.*` webhooks, and refund rows in the daily settlement file."""

from __future__ import annotations

from collections import Counter

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from actors.clock import TrioClock
from engine.gateway import (
    CaptureStatus,
    Gateway,
    GatewayUnavailable,
    IdempotencyKeyReused,
    PspEventKind,
    PspRefundStatus,
    RefundRefusal,
)
from engine.money import Money
from engine.reconciliation import LineKind, parse, write_stripe
from simulator.fake_psp import FakePsp
from simulator.psp_reports import DAY_MS, psp_lines
from simulator.psp_wire_events import parse_event
from simulator.signing import verify_webhook
from web.psp_wire import decode_event, encode_event

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
USD_100 = Money(10_000, "USD")


def usd(minor: int) -> Money:
    return Money(minor, "USD")


async def _captured(psp: FakePsp, key: str = "ord_1", amount: Money = USD_100) -> str:
    """A captured order at the PSP; returns its capture id."""
    registration = await psp.register_checkout(f"pay_{key}", amount, None)
    psp.buyer_pays(registration.session_id)
    result = await psp.capture(key, registration.session_id, amount)
    assert result.status is CaptureStatus.CAPTURED and result.capture_id is not None
    return result.capture_id


def _refund_events(psp: FakePsp) -> list[tuple[str, PspEventKind]]:
    return [
        (e.reference, e.kind)
        for e in psp.emitted
        if e.kind in (PspEventKind.REFUND_SUCCEEDED, PspEventKind.REFUND_FAILED)
    ]


async def test_the_same_key_twice_is_one_refund(autojump_clock: MockClock) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    gateway: Gateway = psp
    capture_id = await _captured(psp)
    first = await gateway.refund("rf_1", capture_id, usd(3000))
    again = await gateway.refund("rf_1", capture_id, usd(3000))
    assert first == again and first.status is PspRefundStatus.SUCCEEDED
    assert first.refund_id is not None and first.refund_id.startswith("re_")
    assert len(psp.refunds) == 1 and psp.refund_calls["rf_1"] == 2
    assert psp.refunded_total() == {"USD": 3000}
    assert _refund_events(psp) == [("rf_1", PspEventKind.REFUND_SUCCEEDED)]
    assert await gateway.query_refund("rf_1") == first
    assert (await gateway.query_refund("rf_2")).status is PspRefundStatus.NOT_FOUND


async def test_a_key_reused_with_another_amount_or_capture_is_a_caller_bug(
    autojump_clock: MockClock,
) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    other_capture = await _captured(psp, "ord_2")
    first = await psp.refund("rf_1", capture_id, usd(3000))
    with pytest.raises(IdempotencyKeyReused, match="rf_1"):
        await psp.refund("rf_1", capture_id, usd(2000))
    with pytest.raises(IdempotencyKeyReused):
        await psp.refund("rf_1", other_capture, usd(3000))
    with pytest.raises(IdempotencyKeyReused):
        await psp.refund("rf_1", capture_id, Money(3000, "EUR"))
    assert await psp.query_refund("rf_1") == first
    assert psp.refunded_total() == {"USD": 3000} and len(psp.refunds) == 1


async def test_partial_refunds_add_up_to_the_capture_and_no_further(
    autojump_clock: MockClock,
) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    assert (await psp.refund("rf_1", capture_id, usd(3000))).status is PspRefundStatus.SUCCEEDED
    too_much = await psp.refund("rf_2", capture_id, usd(7001))
    assert too_much.status is PspRefundStatus.FAILED and too_much.refund_id is None
    assert too_much.reason == RefundRefusal.EXCEEDS_CAPTURED
    rest = await psp.refund("rf_3", capture_id, usd(7000))
    assert rest.status is PspRefundStatus.SUCCEEDED
    one_more = await psp.refund("rf_4", capture_id, usd(1))
    assert one_more.reason == RefundRefusal.EXCEEDS_CAPTURED
    # A refusal is kept under its key: the same answer again, and by query.
    assert await psp.refund("rf_2", capture_id, usd(7001)) == too_much
    assert await psp.query_refund("rf_2") == too_much
    assert psp.refunded_total() == {"USD": 10_000}
    assert psp.captures_by_id[capture_id].refunded_minor == 10_000
    assert _refund_events(psp) == [
        ("rf_1", PspEventKind.REFUND_SUCCEEDED),
        ("rf_3", PspEventKind.REFUND_SUCCEEDED),
    ]


async def test_refunds_of_what_was_never_captured_are_refused(
    autojump_clock: MockClock,
) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    registration = await psp.register_checkout("pay_2", USD_100, None)
    psp.buyer_pays(registration.session_id)
    psp.script("capture", "decline")
    declined = await psp.capture("ord_2", registration.session_id, USD_100)
    assert declined.status is CaptureStatus.DECLINED and declined.capture_id is not None
    cases = {
        "rf_unknown": ("cap_nope", usd(100), RefundRefusal.CAPTURE_NOT_FOUND),
        "rf_declined": (declined.capture_id, usd(100), RefundRefusal.CAPTURE_NOT_CAPTURED),
        "rf_currency": (capture_id, Money(100, "EUR"), RefundRefusal.CURRENCY_MISMATCH),
        "rf_zero": (capture_id, usd(0), RefundRefusal.AMOUNT_NOT_POSITIVE),
        "rf_negative": (capture_id, usd(-100), RefundRefusal.AMOUNT_NOT_POSITIVE),
    }
    for key, (capture, amount, refusal) in cases.items():
        result = await psp.refund(key, capture, amount)
        assert (result.status, result.refund_id, result.reason) == (
            PspRefundStatus.FAILED,
            None,
            refusal.value,
        ), key
    assert psp.refunded_total() == {} and _refund_events(psp) == []
    assert psp.captures_by_id[capture_id].refunded_minor == 0


async def test_a_refund_whose_answer_was_lost_is_one_refund_on_retry(
    autojump_clock: MockClock,
) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    psp.script("refund", "timeout_after")
    with pytest.raises(GatewayUnavailable):
        await psp.refund("rf_1", capture_id, usd(4000))
    found = await psp.query_refund("rf_1")
    assert found.status is PspRefundStatus.SUCCEEDED
    retried = await psp.refund("rf_1", capture_id, usd(4000))
    assert retried == found and retried.refund_id == psp.refunds["rf_1"].refund_id
    assert len(psp.refunds) == 1 and psp.refund_calls["rf_1"] == 2
    assert psp.refunded_total() == {"USD": 4000}
    assert _refund_events(psp) == [("rf_1", PspEventKind.REFUND_SUCCEEDED)]


async def test_unavailable_hang_and_failed_attempt_do_not_refund(
    autojump_clock: MockClock,
) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    psp.script("refund", "unavailable", "hang", "failed_attempt")
    for _ in range(3):
        with pytest.raises(GatewayUnavailable):
            await psp.refund("rf_1", capture_id, usd(4000))
    assert psp.refunds == {} and psp.refund_calls["rf_1"] == 3
    assert (await psp.query_refund("rf_1")).status is PspRefundStatus.NOT_FOUND
    assert (await psp.refund("rf_1", capture_id, usd(4000))).status is PspRefundStatus.SUCCEEDED


async def test_status_queries_have_the_same_faults(autojump_clock: MockClock) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    refunded = await psp.refund("rf_1", capture_id, usd(500))
    psp.script("query_refund", "unavailable", "timeout_after", "hang")
    start_s = trio.current_time()
    for _ in range(3):
        with pytest.raises(GatewayUnavailable):
            await psp.query_refund("rf_1")
    assert trio.current_time() - start_s >= psp.hang_s  # the hang waited (virtual time)
    assert await psp.query_refund("rf_1") == refunded
    assert psp.calls["query_refund"] == 4


async def test_latency_applies_to_refunds(autojump_clock: MockClock) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    asked: list[str] = []

    def latency(operation: str) -> float:
        asked.append(operation)
        return 2.5

    psp.latency = latency
    start_s = trio.current_time()
    await psp.refund("rf_1", capture_id, usd(500))
    await psp.query_refund("rf_1")
    assert asked == ["refund", "query_refund"]
    assert trio.current_time() - start_s == pytest.approx(5.0)


async def test_a_pending_refund_holds_its_amount_until_it_settles(
    autojump_clock: MockClock,
) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    psp.script("refund", "pending", "pending")
    first = await psp.refund("rf_1", capture_id, usd(6000))
    second = await psp.refund("rf_2", capture_id, usd(4000))
    assert first.status is second.status is PspRefundStatus.PENDING
    assert first.refund_id is not None and second.refund_id is not None
    assert psp.pending_refunds() == ["rf_1", "rf_2"]
    # Both pending hold the whole capture: nothing more can be refunded meanwhile.
    held = await psp.refund("rf_3", capture_id, usd(1))
    assert held.reason == RefundRefusal.EXCEEDS_CAPTURED
    assert _refund_events(psp) == []

    failed = psp.refund_fails("rf_1", "card_closed")
    succeeded = psp.refund_succeeds("rf_2")
    assert failed is not None and succeeded is not None
    assert psp.refund_fails("rf_1") is None and psp.refund_succeeds("rf_2") is None
    assert psp.refund_succeeds("rf_3") is None  # refused: nothing to settle
    assert (await psp.query_refund("rf_1")).reason == "card_closed"
    assert (await psp.query_refund("rf_2")).status is PspRefundStatus.SUCCEEDED
    assert psp.pending_refunds() == [] and psp.refunded_total() == {"USD": 4000}
    # The failed refund's amount is refundable again.
    again = await psp.refund("rf_4", capture_id, usd(6000))
    assert again.status is PspRefundStatus.SUCCEEDED
    assert _refund_events(psp) == [
        ("rf_1", PspEventKind.REFUND_FAILED),
        ("rf_2", PspEventKind.REFUND_SUCCEEDED),
        ("rf_4", PspEventKind.REFUND_SUCCEEDED),
    ]
    assert failed.refund_id == first.refund_id and failed.capture_id == capture_id


async def test_a_declined_refund_fails_at_once_and_says_so(autojump_clock: MockClock) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    psp.script("refund", "decline")
    declined = await psp.refund("rf_1", capture_id, USD_100)
    assert declined.status is PspRefundStatus.FAILED and declined.refund_id is not None
    assert declined.reason == "declined"
    assert _refund_events(psp) == [("rf_1", PspEventKind.REFUND_FAILED)]
    assert (await psp.refund("rf_2", capture_id, USD_100)).status is PspRefundStatus.SUCCEEDED


async def test_refund_webhooks_are_signed_and_round_trip(autojump_clock: MockClock) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    result = await psp.refund("rf_1", capture_id, usd(2500))
    queued = []
    while True:
        try:
            queued.append(psp.webhook_receive.receive_nowait())
        except trio.WouldBlock:
            break
    assert queued == psp.emitted  # every event is also on the webhook channel
    event = queued[-1]
    assert event.kind is PspEventKind.REFUND_SUCCEEDED
    assert (event.reference, event.capture_id, event.refund_id) == (
        "rf_1",
        capture_id,
        result.refund_id,
    )
    now_s = EPOCH_MS // 1000
    body, header = psp.signed(event, now_s)
    assert verify_webhook(psp.webhook_secret, header, body, now_s) == now_s
    back = parse_event(body)
    assert (back.event_id, back.kind, back.reference, back.capture_id, back.refund_id) == (
        event.event_id,
        event.kind,
        event.reference,
        event.capture_id,
        event.refund_id,
    )
    # Capture events keep their bytes: no refund_id key where there is no refund.
    assert b"refund_id" not in psp.signed(queued[1], now_s)[0]
    wired = decode_event(encode_event(event))
    assert (wired.kind, wired.reference, wired.refund_id) == (
        PspEventKind.REFUND_SUCCEEDED,
        "rf_1",
        result.refund_id,
    )


# --- the daily settlement report ---------------------------------------------------------------
async def test_the_daily_report_lists_refunds_and_totals_captures_minus_refunds(
    autojump_clock: MockClock,
) -> None:
    clock = TrioClock(EPOCH_MS)
    psp = FakePsp(clock)
    usd_capture = await _captured(psp, "ord_usd")
    eur_capture = await _captured(psp, "ord_eur", Money(5000, "EUR"))
    await trio.sleep(600.0)
    await psp.refund("rf_sync", usd_capture, usd(3000))
    psp.script("refund", "pending", "pending")
    await psp.refund("rf_next_day", usd_capture, usd(2000))
    await psp.refund("rf_failed", eur_capture, Money(1000, "EUR"))
    await psp.refund("rf_refused", eur_capture, Money(9999, "EUR"))
    psp.refund_fails("rf_failed")
    await trio.sleep(DAY_MS / 1000)  # the pending refund succeeds on day two
    psp.refund_succeeds("rf_next_day")
    await trio.sleep(60.0)

    day1 = parse(write_stripe(psp_lines(psp, EPOCH_MS, EPOCH_MS + DAY_MS, "20260101")))
    day2 = parse(
        write_stripe(psp_lines(psp, EPOCH_MS + DAY_MS, EPOCH_MS + 2 * DAY_MS, "20260102"))
    )
    rows1 = [(r.reference, r.kind, r.gross.minor, r.fee.minor) for r in day1.lines]
    assert rows1 == [
        ("ord_usd", LineKind.CAPTURE, 10_000, 320),  # 2.90% + 0.30
        ("ord_eur", LineKind.CAPTURE, 5000, 170),  # 2.90% + 0.25 (145 + 25)
        ("rf_sync", LineKind.REFUND, -3000, 0),  # refunds cost nothing
    ]
    assert [(r.reference, r.gross.minor, r.fee.minor) for r in day2.lines] == [
        ("rf_next_day", -2000, 0)
    ]
    refund_row = day1.lines[2]
    assert refund_row.psp_reference == f"txn_{psp.refunds['rf_sync'].refund_id}"
    assert refund_row.net.minor == -3000
    assert {line.batch for line in day1.lines} == {"po_20260101_usd", "po_20260101_eur"}
    # Gross over all reports = what the PSP captured minus what it refunded, per currency.
    gross: Counter[str] = Counter()
    for report in (day1, day2):
        for totals in report.totals:
            gross[totals.currency] += totals.gross.minor
    expected = psp.captured_total()
    expected.subtract(psp.refunded_total())
    assert gross == expected == Counter({"USD": 5000, "EUR": 5000})


# --- any sequence of refund requests -------------------------------------------------------------
_ACTIONS = ["ok", "ok", "ok", "pending", "decline", "timeout_after", "unavailable", "hang"]
_request = st.tuples(
    st.sampled_from(["rf_a", "rf_b", "rf_c", "rf_d", "rf_e", "rf_f"]),
    st.sampled_from([0, 1, 2]),  # capture 0, capture 1, or one the PSP never made
    # Round amounts make refunds that meet the captured amount exactly likely.
    st.one_of(st.sampled_from([0, 1, 1000, 2500, 4000, 6000, 10_000]), st.integers(-10, 12_000)),
    st.sampled_from(_ACTIONS),
)
_settle = st.tuples(st.sampled_from(["succeed", "fail"]), st.integers(0, 5))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(_request, _settle), max_size=30))
def test_any_refund_sequence_never_refunds_more_than_was_captured(
    steps: list[tuple[object, ...]],
) -> None:
    async def scenario() -> None:
        psp = FakePsp(TrioClock(EPOCH_MS))
        captures = [
            await _captured(psp, "ord_0", usd(10_000)),
            await _captured(psp, "ord_1", usd(2_500)),
            "cap_never",
        ]
        first: dict[str, tuple[str, int]] = {}
        for step in steps:
            if len(step) == 2:
                verb, index = step
                assert isinstance(index, int)
                pending = psp.pending_refunds()
                if pending:
                    key = pending[index % len(pending)]
                    _ = psp.refund_succeeds(key) if verb == "succeed" else psp.refund_fails(key)
                continue
            key, capture_index, minor, action = step
            assert isinstance(key, str) and isinstance(minor, int)
            assert isinstance(capture_index, int) and isinstance(action, str)
            capture_id = captures[capture_index]
            psp.script("refund", action)
            reused = key in first and first[key] != (capture_id, minor)
            try:
                result = await psp.refund(key, capture_id, usd(minor))
            except IdempotencyKeyReused:
                assert reused
                continue
            except GatewayUnavailable:
                assert action in ("timeout_after", "unavailable", "hang")
                if action != "timeout_after":
                    continue
                result = await psp.query_refund(key)
            assert not reused
            first.setdefault(key, (capture_id, minor))
            assert await psp.query_refund(key) == result
        # Each key is at most one refund; what is refunded or held never exceeds the capture.
        assert set(psp.refunds) <= set(first)
        for capture in psp.captures.values():
            own = [r for r in psp.refunds.values() if r.capture_id == capture.capture_id]
            moved = [r for r in own if r.refund_id is not None]
            live = sum(
                r.amount.minor
                for r in moved
                if r.status in (PspRefundStatus.SUCCEEDED, PspRefundStatus.PENDING)
            )
            assert live == capture.refunded_minor <= capture.amount.minor
            assert all(r.amount.minor > 0 for r in moved)
        refund_ids = [r.refund_id for r in psp.refunds.values() if r.refund_id is not None]
        assert len(refund_ids) == len(set(refund_ids))
        assert psp.refunded_total()["USD"] <= psp.captured_total()["USD"]
        # Every refund that settled said so exactly once.
        settled = Counter(
            e.reference
            for e in psp.emitted
            if e.kind in (PspEventKind.REFUND_SUCCEEDED, PspEventKind.REFUND_FAILED)
        )
        for refund in psp.refunds.values():
            said = 1 if refund.refund_id and refund.status is not PspRefundStatus.PENDING else 0
            assert settled[refund.key] == said, refund

    trio.run(scenario, clock=MockClock(autojump_threshold=0))
