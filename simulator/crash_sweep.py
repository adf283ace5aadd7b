"""The crash sweep: crash at every commit boundary of sampled flows, deterministically.

Why: a random crash lands where the engine spends its time (PSP calls, sleeps), almost never in
the instant between two commits of one message, which is where a unit of work split in two
loses an effect (an event recorded before its effect, a state change whose message is written
afterwards). Measured before this sweep: such bugs showed at 1 of 34 and 4 of 36 crash points of
a flow, and random crash timing never hit them in 44 runs.

How: a flow is one checkout (its payment, its orders, their PSP events and messages). When a
flow's first unit of work is seen, the flow is swept with probability `crash_sweep_p` (the
`sweep` stream of the seed) and given the next crash point in turn: point `2k` crashes the
engine just before the flow's unit `k` commits (the unit is lost), point `2k + 1` just after it
commits (whatever the actor would do next is lost: the reply, the doorbell, the PSP call).
Each swept flow crashes once, at its point, whatever incarnation it is in; the points cycle
through `POINTS`, so a run with many swept flows covers each boundary of a flow's first
`UNITS_SWEPT_MAX` units several times, across the flows' different paths (webhook orders,
faults). A flow shorter than its point is not crashed (counted as `missed`).

The sweep sees units of work through the simulator's store hooks (simulator/store.py
`before_commit`, `after_commit`) and crashes through the world's `crash_now`, which cancels the
current incarnation exactly as a random crash does; everything else (restart delay, recovery,
the oracle) is the same as for any run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import attrs
import trio

from engine.store.memory import MemoryUnitOfWork
from simulator.determinism import stream

#: The units of work of a flow whose boundaries are swept (a fault-free 3-order checkout takes
#: about 8; retries and webhooks add more), and so the crash points cycled through.
UNITS_SWEPT_MAX = 12
POINTS = 2 * UNITS_SWEPT_MAX
#: The most flows tracked at once (flows are forgotten once crashed or when the table is full:
#: the sweep then samples no new flow, it never grows without bound).
FLOWS_TRACKED_MAX = 100_000


@attrs.define
class _Flow:
    point: int
    units: int = 0
    done: bool = False


class CrashSweep:
    def __init__(
        self,
        seed: int,
        share: float,
        order_payment: Callable[[str], str | None],
        crash_now: Callable[[], None],
        fault: Callable[..., None],
    ) -> None:
        assert 0.0 < share <= 1.0
        self._rng = stream(seed, "sweep")
        self._share = share
        self._order_payment = order_payment
        self._crash_now = crash_now
        self._fault = fault
        self._flows: dict[str, _Flow | None] = {}  # None: seen, not swept
        self._next_point = 0
        self._after: MemoryUnitOfWork | None = None
        #: Crashes fired, by point label (`before:3`, `after:3`): the report's coverage.
        self.fired: Counter[str] = Counter()
        self.flows_swept = 0

    def flow_of(self, uow: MemoryUnitOfWork) -> str | None:
        """The checkout (payment id) a unit of work belongs to, or None (acks, keys...)."""
        for payment_id in uow._payments:
            return payment_id
        for order in uow._orders.values():
            return order.payment_id
        for event in uow._psp_events:
            reference = str(event.payload.get("reference", ""))
            return self._order_payment(reference) or reference or None
        for message in uow._outbox:
            return self._order_payment(message.key) or message.key
        return None

    def _flow(self, flow_id: str) -> _Flow | None:
        if flow_id in self._flows:
            return self._flows[flow_id]
        if len(self._flows) >= FLOWS_TRACKED_MAX:
            return None
        flow: _Flow | None = None
        if self._rng.random() < self._share:
            flow = _Flow(self._next_point % POINTS)
            self._next_point += 1
            self.flows_swept += 1
        self._flows[flow_id] = flow
        return flow

    async def before_commit(self, uow: MemoryUnitOfWork) -> None:
        flow_id = self.flow_of(uow)
        if flow_id is None:
            return
        flow = self._flow(flow_id)
        if flow is None or flow.done:
            return
        unit = flow.units
        flow.units += 1
        if flow.point == 2 * unit:
            flow.done = True
            self._fire("before", unit, flow_id)
            await trio.lowlevel.checkpoint()  # cancelled: the unit never commits
        elif flow.point == 2 * unit + 1:
            flow.done = True
            self._after = uow

    async def after_commit(self, uow: MemoryUnitOfWork) -> None:
        if self._after is uow:
            self._after = None
            unit = (self._flows_point(uow) - 1) // 2
            self._fire("after", unit, self.flow_of(uow) or "")
            await trio.lowlevel.checkpoint()  # cancelled: nothing after the commit runs

    def _flows_point(self, uow: MemoryUnitOfWork) -> int:
        flow_id = self.flow_of(uow)
        flow = self._flows.get(flow_id) if flow_id else None
        return flow.point if flow is not None else 1

    def _fire(self, side: str, unit: int, flow_id: str) -> None:
        label = f"{side}:{unit}"
        self.fired[label] += 1
        self._fault(f"crash_sweep_{side}", unit, flow_id)
        self._crash_now()

    def report(self) -> dict[str, object]:
        return {
            "flows_swept": self.flows_swept,
            "crashes": sum(self.fired.values()),
            "points_covered": len(self.fired),
            "points": POINTS,
            "missed": self.flows_swept - sum(self.fired.values()),
        }
