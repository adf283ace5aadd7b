"""A scenario's fault plan on the fake PSP (`payengine psp serve --faults`): the same seed draws
the same faults; webhook faults lose, duplicate, delay and forge deliveries, and a forged copy
is one Stripe's own verification refuses."""

from __future__ import annotations

import httpx
import pytest
import stripe
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from actors.clock import TrioClock
from engine.gateway import PspEventKind, PspNotification
from psp.faults import PspFaultPlan
from scenarios import Faults, load_scenario
from simulator.fake_psp import FakePsp
from tests.psp.running import SECRET, running_psp
from tests.psp.test_stripe_library import session_params
from tests.simulation.test_fake_psp_refunds import EPOCH_MS, _captured

EVENT = PspNotification("evt_1", PspEventKind.SESSION_AUTHORIZED, "pay_1", 0)


@given(seed=st.integers(min_value=0, max_value=2**32))
def test_the_same_seed_draws_the_same_faults(seed: int) -> None:
    faults = load_scenario("everything").faults
    a, b = PspFaultPlan.of(faults, seed), PspFaultPlan.of(faults, seed)
    for operation in ("register", "capture", "query", "refund") * 5:
        assert a.choose(operation) == b.choose(operation)
        assert a.latency(operation) == b.latency(operation)
        assert a.deliveries(EVENT) == b.deliveries(EVENT)
    assert a.fired == b.fired


def test_webhook_faults_lose_duplicate_delay_and_forge() -> None:
    lost = PspFaultPlan.of(Faults(webhook_loss_p=1.0), 1)
    assert lost.deliveries(EVENT) == [] and lost.fired == {"webhook_lost": 1}
    noisy = PspFaultPlan.of(
        Faults(
            webhook_duplicate_p=1.0,
            webhook_duplicates_max=2,
            webhook_delay_p=1.0,
            webhook_delay_s_max=5.0,
            webhook_forged_p=1.0,
        ),
        1,
    )
    copies = noisy.deliveries(EVENT)
    genuine = [c for c in copies if not c.forged]
    assert 2 <= len(genuine) <= 3 and len(copies) == len(genuine) + 1
    assert all(0.0 <= c.delay_s <= 5.0 + 2.0 for c in copies)
    assert set(noisy.fired) == {"webhook_duplicated", "webhook_delayed", "webhook_forged"}
    quiet = PspFaultPlan.of(Faults(), 1)
    assert [c.delay_s for c in quiet.deliveries(EVENT)] == [0.0]


async def test_duplicated_and_forged_webhooks_reach_the_endpoint() -> None:
    plan = PspFaultPlan.of(
        Faults(webhook_duplicate_p=1.0, webhook_duplicates_max=1, webhook_forged_p=1.0), 3
    )
    async with running_psp(webhook_plan=plan.deliveries) as psp, httpx.AsyncClient() as http:
        session = await psp.client().v1.checkout.sessions.create_async(session_params())
        await http.post(session.url, data={"card_number": "4242424242424242"})
        delivered = await psp.wait_for_webhooks(3)
    verified, forged = [], 0
    for body, header in delivered:
        try:
            verified.append(stripe.Webhook.construct_event(body, header, SECRET))
        except stripe.SignatureVerificationError:
            forged += 1
    assert forged == 1
    assert [e.type for e in verified] == ["session.authorized"] * 2
    assert verified[0].id == verified[1].id  # one event, twice: the receiver must dedupe


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("happy_path", set()),
        ("psp_timeouts", {"psp_unavailable", "psp_hang", "psp_timeout_after", "psp_decline"}),
        ("duplicate_webhooks", {"webhook_duplicated", "webhook_reordered", "psp_failed_attempt"}),
        ("lost_webhooks", {"webhook_lost", "webhook_delayed", "psp_timeout_after"}),
    ],
)
def test_a_shipped_scenario_fires_its_own_faults(name: str, expected: set[str]) -> None:
    plan = PspFaultPlan.of(load_scenario(name).faults, 1)
    for _ in range(500):
        plan.choose("capture")
        plan.deliveries(EVENT)
    assert set(plan.fired) == expected


async def test_the_card_networks_dispute_captures_and_decide_them(
    autojump_clock: MockClock,
) -> None:
    """`--faults chargebacks`: the plan disputes new captures and closes each dispute, and the
    PSP announces every step; without `dispute_p` it does nothing."""
    psp = FakePsp(TrioClock(EPOCH_MS))
    captures = [await _captured(psp, f"ord_{n}") for n in range(6)]
    plan = PspFaultPlan.of(
        Faults(dispute_p=1.0, dispute_win_p=0.5, dispute_open_s_max=5, dispute_close_s_max=5), 7
    )
    idle = PspFaultPlan.of(Faults(), 7)
    async with trio.open_nursery() as nursery:
        await nursery.start(plan.disputes, psp)
        await nursery.start(idle.disputes, psp)
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert sorted(d.capture_id for d in psp.disputes.values()) == sorted(captures)
    assert all(not d.open for d in psp.disputes.values())
    assert plan.fired["dispute_opened"] == 6
    assert plan.fired.get("dispute_won", 0) + plan.fired.get("dispute_lost", 0) == 6
    assert idle.fired == {}
    closed = [e for e in psp.emitted if e.kind is PspEventKind.DISPUTE_CLOSED]
    assert len(closed) == 6
