"""The lease manager (actors/lease_manager.py) on the memory lease table, in virtual time:
fair shares, shedding by lapse, takeover of a dead process's partitions at the next epoch, and
a paused process that trusts nothing it last renewed once its lease may have lapsed."""

from __future__ import annotations

import trio
import trio.testing

from actors.lease_manager import LeaseManager
from engine.leases import LeaseLimits, fair_share, partition_of
from engine.store.memory_leases import MemoryLeases

LIMITS = LeaseLimits()


class TrioClock:
    def monotonic(self) -> float:
        return trio.current_time()

    def now_ms(self) -> int:
        return int(trio.current_time() * 1000)


def manager(table: MemoryLeases, me: str, gained: list[frozenset[int]]) -> LeaseManager:
    async def on_gained(partitions: frozenset[int]) -> None:
        gained.append(partitions)

    return LeaseManager(table, me, f"http://{me}", LIMITS, on_gained)


def test_partition_of_is_stable_and_spread() -> None:
    assert partition_of("pay_01ABC") == partition_of("pay_01ABC")
    assert partition_of("pay_01ABC") == 19  # not Python's salted hash: the same everywhere
    spread = {partition_of(f"pay_{n}") for n in range(2000)}
    assert spread == set(range(64))
    assert [fair_share(64, m) for m in (0, 1, 2, 3, 64, 100)] == [64, 64, 32, 22, 1, 1]


async def test_two_processes_share_and_a_dead_ones_partitions_are_taken_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = MemoryLeases(TrioClock())
    gained_a: list[frozenset[int]] = []
    gained_b: list[frozenset[int]] = []
    a, b = manager(table, "inc_a", gained_a), manager(table, "inc_b", gained_b)
    await table.ensure_partitions(64)
    await a.tick()
    assert len(a.held()) == 64 and gained_a == [frozenset(range(64))]
    await b.tick()  # joins: nothing free yet
    assert b.held() == frozenset()
    await a.tick()  # two members: a stops driving its surplus and lets it lapse
    assert a.held() == frozenset(range(32))
    assert a.fence(40) is None and a.fence(3) is not None
    for _ in range(8):  # 4 s: past the surplus's lease
        await trio.sleep(LIMITS.renew_s)
        await a.tick()
        await b.tick()
    assert b.held() == frozenset(range(32, 64))
    assert {r.epoch for r in await table.table() if r.partition >= 32} == {2}
    fence = b.fence(40)
    assert fence is not None and (fence.owner, fence.epoch) == ("inc_b", 2)
    # a dies (no more renewals): after its lease lapses, b takes everything at the next epoch.
    for _ in range(10):
        await trio.sleep(LIMITS.renew_s)
        await b.tick()
    assert b.held() == frozenset(range(64))
    rows = await table.table()
    assert {r.epoch for r in rows if r.partition < 32} == {2}
    assert gained_b[-1] == frozenset(range(32))


async def test_a_paused_process_trusts_nothing_after_its_lease_may_have_lapsed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = MemoryLeases(TrioClock())
    a = manager(table, "inc_a", [])
    await table.ensure_partitions(64)
    await a.tick()
    assert a.fence(7) is not None
    await trio.sleep(LIMITS.ttl_s - LIMITS.safety_s)  # paused: no renewal
    assert a.fence(7) is None and a.held() == frozenset()
    b = manager(table, "inc_b", [])
    await trio.sleep(LIMITS.safety_s)
    await b.tick()  # takes over what lapsed
    await a.tick()  # resumes: renews nothing of what b took
    assert a.held() == frozenset()
    assert b.held() == frozenset(range(64))


async def test_a_renewal_after_a_local_lapse_recovers_what_it_keeps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Messages were refused while the leases had lapsed locally (a slow renewal): what the
    next renewal keeps is recovered like a partition gained, so no refused tell is lost."""
    table = MemoryLeases(TrioClock())
    gained: list[frozenset[int]] = []
    a = manager(table, "inc_a", gained)
    await table.ensure_partitions(64)
    await a.tick()
    await trio.sleep(LIMITS.renew_s)
    await a.tick()  # on time: nothing to recover
    assert gained == [frozenset(range(64))] and a.lapses == 0
    await trio.sleep(LIMITS.ttl_s - LIMITS.safety_s + 0.1)  # late, but before anyone took over
    assert a.fence(5) is None
    await a.tick()
    assert gained[-1] == frozenset(range(64)) and len(gained) == 2 and a.lapses == 1
    assert a.fence(5) is not None
