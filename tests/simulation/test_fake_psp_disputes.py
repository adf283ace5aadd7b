"""Disputes at the fake PSP (simulator/psp_disputes.py): what is left of a capture, once,
announced as Stripe announces it; a disputed capture refuses refunds; the events survive the
wire (simulator's and Stripe-shaped) with the dispute's fields; the query answers by id."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from actors.clock import TrioClock
from engine.gateway import (
    GatewayUnavailable,
    PspDisputeStatus,
    PspEventKind,
    PspRefundStatus,
    RefundRefusal,
)
from psp.events import encode_event as stripe_event
from simulator.fake_psp import FakePsp
from simulator.psp_wire_events import parse_event, wire_event
from tests.simulation.test_fake_psp_refunds import EPOCH_MS, _captured, usd
from web.psp_wire import decode_event


def _dispute_kinds(psp: FakePsp) -> list[PspEventKind]:
    return [e.kind for e in psp.emitted if e.kind.value.startswith("charge.dispute")]


async def test_a_dispute_takes_what_is_left_once_and_refunds_stop(
    autojump_clock: MockClock,
) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    assert (await psp.refund("rf_1", capture_id, usd(3000))).status is PspRefundStatus.SUCCEEDED
    dispute = psp.dispute_book.open(capture_id)
    assert dispute is not None and dispute.amount == usd(7000) and dispute.order_key == "ord_1"
    assert psp.dispute_book.open(capture_id) is None  # a capture is disputed once
    assert psp.dispute_book.open("cap_unknown") is None
    assert _dispute_kinds(psp) == [
        PspEventKind.DISPUTE_CREATED,
        PspEventKind.DISPUTE_FUNDS_WITHDRAWN,
    ]
    refused = await psp.refund("rf_2", capture_id, usd(100))
    assert refused.status is PspRefundStatus.FAILED
    assert refused.reason == RefundRefusal.CAPTURE_DISPUTED.value
    assert psp.dispute_book.withdrawn_total() == {"USD": 7000}
    assert (await psp.query_dispute(dispute.dispute_id)).status is PspDisputeStatus.NEEDS_RESPONSE

    assert psp.dispute_book.close(dispute.dispute_id, won=True)
    assert not psp.dispute_book.close(dispute.dispute_id, won=False)  # closed once
    assert _dispute_kinds(psp)[2:] == [
        PspEventKind.DISPUTE_CLOSED,
        PspEventKind.DISPUTE_FUNDS_REINSTATED,
    ]
    assert psp.dispute_book.withdrawn_total() == {}
    said = await psp.query_dispute(dispute.dispute_id)
    assert (said.status, said.amount_minor, said.currency, said.capture_id) == (
        PspDisputeStatus.WON,
        7000,
        "USD",
        capture_id,
    )
    assert (await psp.query_dispute("dp_x")).status is PspDisputeStatus.NOT_FOUND


async def test_a_fully_refunded_capture_is_not_disputed(autojump_clock: MockClock) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    await psp.refund("rf_1", capture_id, usd(10_000))
    assert psp.dispute_book.open(capture_id) is None


async def test_a_lost_dispute_stays_withdrawn_and_its_events_cross_both_wires(
    autojump_clock: MockClock,
) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    dispute = psp.dispute_book.open(capture_id)
    assert dispute is not None
    psp.dispute_book.close(dispute.dispute_id, won=False)
    assert psp.dispute_book.withdrawn_total() == {"USD": 10_000}
    closed = dispute.events[-1]
    assert closed.kind is PspEventKind.DISPUTE_CLOSED and closed.dispute_status == "lost"
    for decoded in (parse_event(wire_event(closed)), decode_event(stripe_event(closed))):
        assert decoded.kind is PspEventKind.DISPUTE_CLOSED
        assert decoded.event_id == closed.event_id and decoded.reference == "ord_1"
        assert (decoded.dispute_id, decoded.amount_minor, decoded.currency) == (
            dispute.dispute_id,
            10_000,
            "USD",
        )
        assert decoded.dispute_status == "lost" and decoded.capture_id == capture_id


async def test_a_dispute_query_takes_the_calls_faults(autojump_clock: MockClock) -> None:
    psp = FakePsp(TrioClock(EPOCH_MS))
    capture_id = await _captured(psp)
    dispute = psp.dispute_book.open(capture_id)
    assert dispute is not None
    psp.script("query_dispute", "unavailable", "timeout_after")
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            await psp.query_dispute(dispute.dispute_id)
    assert (await psp.query_dispute(dispute.dispute_id)).dispute_id == dispute.dispute_id
