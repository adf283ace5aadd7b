"""Payouts end to end over real HTTP (issue 11): `POST /v1/payouts` on our API, the engine
paying through the fake PSP's payouts API, the PSP's signed `payout.*` webhooks back. A paid
payout moves the money reserved -> out, a failed one voids back to available, a returned one
credits back; duplicated and reordered webhooks change nothing twice; a create whose answer
is lost after the PSP accepted it ends in exactly one payout at the PSP."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import trio

from engine.ledger import TransactionKind
from engine.records import Payout
from psp.payout_desk import PayoutEvent, PayoutKnobs
from psp.payout_events import encode_payout_event
from psp.pump import Delivery
from tests.web.payout_world import SECRET, PayoutWorld, lose_payout_events, payout_world
from tests.web.test_e2e_http import FLOW_TIMEOUT_S
from web.signature import sign_header


async def ledger_kinds(world: PayoutWorld, payout_id: str) -> Counter[TransactionKind]:
    """How many transactions of each payout kind reference this payout."""
    kinds: Counter[TransactionKind] = Counter()
    for kind in (
        TransactionKind.PAYOUT_RESERVE,
        TransactionKind.PAYOUT_POST,
        TransactionKind.PAYOUT_VOID,
        TransactionKind.PAYOUT_RETURN,
    ):
        async with world.runtime.store.unit_of_work() as uow:
            if await uow.get_transaction_by_reference(kind, payout_id) is not None:
                kinds[kind] += 1
    return kinds


async def assert_balanced(world: PayoutWorld) -> dict[str, str]:
    trial = await world.get("/v1/ledger/trial-balance")
    assert trial["balanced"], trial
    sums: Counter[str] = Counter()
    for (_, currency), minor in (await world.runtime.store.trial_balance()).items():
        sums[currency] += minor
    assert all(total == 0 for total in sums.values()), sums
    return {line["account"]: line["balance"] for line in trial["lines"]}


async def ends(world: PayoutWorld, payout_id: str, status: str) -> dict[str, object]:
    found: dict[str, object] = await world.wait_for(
        f"/v1/payouts/{payout_id}", lambda p: p["status"] == status
    )
    return found


async def test_a_manual_payout_is_paid_over_http() -> None:
    async with payout_world() as world:
        await world.sell()  # s1 has 27.00 EUR
        payout = await world.pay_out("10.00")
        assert payout["status"] in ("funds_reserved", "submitted", "paid"), payout
        got = await ends(world, payout["id"], "paid")
        assert await world.wallet() == ("17.00", "0.00")
        kinds = await ledger_kinds(world, payout["id"])
        assert kinds == {TransactionKind.PAYOUT_RESERVE: 1, TransactionKind.PAYOUT_POST: 1}
        lines = await assert_balanced(world)
        assert lines["merchant_payable:s1"] == "-17.00"
        # The PSP's own records: one payout, paid, of our id, to the seller.
        [desk_payout] = world.desk.payouts.values()
        assert desk_payout.key == payout["id"] and desk_payout.status == "paid"
        assert desk_payout.amount.minor == 1000 and desk_payout.destination == "merchant:s1"
        assert got["provider_ref"] == desk_payout.payout_id
        assert world.desk.out_total() == {"EUR": 1000}
        # Our payout's webhook was delivered and applied once.
        paid_events = [e for e in world.desk.emitted if e.type == "payout.paid"]
        assert len(paid_events) == 1


async def test_a_failed_payout_voids_back_to_available() -> None:
    async with payout_world() as world:
        await world.sell()
        world.desk.script_fate("failed")
        payout = await world.pay_out("10.00")
        got = await ends(world, payout["id"], "failed")
        assert got["failure_reason"] == "no_account"
        assert await world.wallet() == ("27.00", "0.00")
        kinds = await ledger_kinds(world, payout["id"])
        assert kinds == {TransactionKind.PAYOUT_RESERVE: 1, TransactionKind.PAYOUT_VOID: 1}
        lines = await assert_balanced(world)
        assert lines["merchant_payable:s1"] == "-27.00"
        assert world.desk.out_total() == {}


async def test_a_returned_payout_credits_back() -> None:
    async with payout_world() as world:
        await world.sell()
        world.desk.script_fate("returned")
        payout = await world.pay_out("10.00")
        got = await ends(world, payout["id"], "returned")
        assert got["failure_reason"] == "account_closed"
        assert await world.wallet() == ("27.00", "0.00")
        kinds = await ledger_kinds(world, payout["id"])
        assert kinds == {
            TransactionKind.PAYOUT_RESERVE: 1,
            TransactionKind.PAYOUT_POST: 1,
            TransactionKind.PAYOUT_RETURN: 1,
        }
        await assert_balanced(world)
        [desk_payout] = world.desk.payouts.values()
        assert (desk_payout.status, desk_payout.returned) == ("failed", True)


async def settled(world: PayoutWorld) -> None:
    """Wait until the desk has paid and returned the payout (its two events)."""
    with trio.fail_after(FLOW_TIMEOUT_S):
        while len(world.desk.emitted) < 2:
            await trio.sleep(0.05)


async def post_event(world: PayoutWorld, event: PayoutEvent) -> str:
    body = encode_payout_event(event)
    now_s = world.runtime.clock.now_ms() // 1000
    answer = await world.http.post(
        f"{world.api_url}/v1/psp/webhooks",
        content=body,
        headers={"Stripe-Signature": sign_header([SECRET], now_s, body)},
    )
    assert answer.status_code == 200, answer.text
    outcome: str = answer.json()["outcome"]
    return outcome


async def test_reordered_and_duplicated_webhooks_change_nothing_twice() -> None:
    """The PSP's payout events are lost on the way; we deliver them late, the return before
    the payment, each twice: the payout walks to RETURNED once, every copy after is a no-op."""
    knobs = PayoutKnobs(paid_after_s=0.1, returned_after_s=0.1)
    async with payout_world(knobs, payout_webhook_plan=lose_payout_events) as world:
        await world.sell()
        world.desk.script_fate("returned")
        payout = await world.pay_out("10.00")
        await ends(world, payout["id"], "submitted")
        await settled(world)
        paid, returned = world.desk.emitted
        assert (paid.type, returned.type) == ("payout.paid", "payout.failed")
        assert await post_event(world, returned) == "applied"  # walks PAID, then RETURNED
        before = await assert_balanced(world)
        assert await post_event(world, paid) == "ignored"  # stale: already further on
        assert await post_event(world, returned) == "duplicate"
        assert await post_event(world, paid) == "duplicate"
        assert await assert_balanced(world) == before
        await ends(world, payout["id"], "returned")
        assert await world.wallet() == ("27.00", "0.00")
        kinds = await ledger_kinds(world, payout["id"])
        assert kinds[TransactionKind.PAYOUT_POST] == kinds[TransactionKind.PAYOUT_RETURN] == 1


async def test_a_failed_event_after_paid_is_a_return_as_stripe_sends_it() -> None:
    """Stripe's object does not say `returned`: a `payout.failed` of a payout our books have
    paid is its bank return, not a contradiction."""
    async with payout_world(payout_webhook_plan=lose_payout_events) as world:
        await world.sell()
        world.desk.script_fate("returned")
        payout = await world.pay_out("10.00")
        await ends(world, payout["id"], "submitted")
        await settled(world)
        paid, returned = world.desk.emitted
        assert await post_event(world, paid) == "applied"
        as_stripe = PayoutEvent(
            returned.event_id,
            returned.type,
            {k: v for k, v in returned.payout.items() if k != "returned"},
            returned.occurred_at_ms,
        )
        assert await post_event(world, as_stripe) == "applied"
        await ends(world, payout["id"], "returned")
        assert await world.wallet() == ("27.00", "0.00")


async def test_a_timeout_after_accept_ends_in_exactly_one_provider_payout() -> None:
    async with payout_world() as world:
        await world.sell()
        world.desk.script_call("timeout_after")  # the PSP accepts, the answer is lost (503)
        payout = await world.pay_out("10.00")
        await ends(world, payout["id"], "paid")
        stored = await world.runtime.store.get_payout(payout["id"])
        assert isinstance(stored, Payout) and stored.attempts == 1
        # The PSP's own records: two creates with our key, one payout.
        assert world.desk.creates == {payout["id"]: 2}
        assert [p.key for p in world.desk.payouts.values()] == [payout["id"]]
        assert world.desk.out_total() == {"EUR": 1000}
        assert await world.wallet() == ("17.00", "0.00")
        await assert_balanced(world)


async def test_many_payouts_under_faults_end_as_the_psp_says_once_each() -> None:
    """Failures, returns and lost answers drawn by the desk's knobs; every payout webhook sent
    twice, each copy late by a random delay (so returns overtake payments): every payout ends
    as the PSP's books say, the PSP holds one payout per key, the wallet is what stayed out."""
    rng = random.Random(11)
    knobs = PayoutKnobs(
        paid_after_s=0.05,
        failed_p=0.3,
        returned_p=0.3,
        returned_after_s=0.05,
        timeout_after_p=0.3,
        seed=7,
    )

    def twice_late(event: PayoutEvent) -> Sequence[Delivery]:
        return (Delivery(rng.uniform(0.0, 0.3)), Delivery(rng.uniform(0.0, 0.3)))

    async with payout_world(knobs, payout_webhook_plan=twice_late) as world:
        await world.sell()  # 27.00
        made = [await world.pay_out("1.00", key=f"po-{i}") for i in range(16)]
        word = {"paid": "paid", "failed": "failed"}
        for payout in made:
            await world.wait_for(
                f"/v1/payouts/{payout['id']}",
                lambda p: p["status"] in ("paid", "failed", "returned"),
            )
        with trio.fail_after(FLOW_TIMEOUT_S):  # let the last returns land
            while True:
                desk = {p.key: p for p in world.desk.payouts.values()}
                ours = {p["id"]: await world.get(f"/v1/payouts/{p['id']}") for p in made}
                expected = {
                    key: "returned" if d.returned else word[d.status] for key, d in desk.items()
                }
                if all(d.status != "pending" for d in desk.values()) and expected == {
                    k: o["status"] for k, o in ours.items()
                }:
                    break
                await trio.sleep(0.05)
        assert sorted(desk) == sorted(p["id"] for p in made)  # one PSP payout per payout id
        # The faults fired: some answers were lost (a second create), each fate happened.
        assert max(world.desk.creates.values()) >= 2, world.desk.creates
        assert set(expected.values()) == {"paid", "failed", "returned"}, expected
        assert len(world.desk.payouts) == len(made)
        out = sum(1 for o in ours.values() if o["status"] == "paid")
        assert await world.wallet() == (f"{27 - out}.00", "0.00")
        assert world.desk.out_total() == ({"EUR": 100 * out} if out else {})
        await assert_balanced(world)
