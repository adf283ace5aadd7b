"""When a world is quiet: every buyer done, every webhook delivered, every payment, order,
refund, dispute and payout final. The liveness phase waits for it; when it does not come, the
violation names what was still moving, so a failed run says where to look. And whether the
engine's actors stayed up: an actor crashes only on a broken invariant."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from simulator.oracle import Violation

if TYPE_CHECKING:
    from actors.engine import Engine
    from simulator.world import SimWorld as World


async def wait_quiet(world: World, poll_s: float) -> None:
    """Return once nothing is moving (polled every `poll_s` virtual seconds)."""
    while True:
        await trio.sleep(poll_s)
        if not world._unquiet():
            return


def unquiet(world: World) -> list[str]:
    """What keeps the world from being quiet, one phrase each (empty: quiet)."""
    why: list[str] = []
    if world.buyers.active:
        why.append(f"{world.buyers.active} buyer(s) active")
    if world.webhooks.in_flight:
        why.append(f"{world.webhooks.in_flight} webhook(s) in flight")
    if world.inc is None:
        why.append("the engine is down")
    unfinished = world.store.unfinished()
    if unfinished:
        why.append(f"{unfinished} unfinished payment(s)/order(s)")
    tables = getattr(world.store, "_t", None)  # None on the postgres tier (it counts rows)
    snap_pending = sum(len(p) for p in tables.pending.values()) if tables is not None else 0
    if snap_pending:
        why.append(f"{snap_pending} snapshot write(s) pending")
    queued = world.psp.webhook_receive.statistics().current_buffer_used
    if queued:
        why.append(f"{queued} PSP webhook(s) queued")
    if world.refunds.on and not world.refunds.quiet():
        why.append("refunds not quiet")
    if world.disputes.on and not world.disputes.quiet():
        why.append("disputes not quiet")
    if not world.payouts.quiet():
        why.append("payouts not quiet")
    return why


def actor_crashes(engine: Engine) -> Violation | None:
    """An actor crashes only on a broken invariant (expected failures are values): the
    supervisor restarting one, or stopping a crash loop, is a bug the run must report even
    when the restart hid it."""
    stats = engine.system.statistics()
    if not (stats.restarts or stats.crash_loops):
        return None
    loops = [f"crash loop {c.kind} {c.key}: {c.last_error}" for c in stats.crash_loops]
    return Violation(
        "actors_never_crash",
        f"{stats.restarts} actor restart(s), {len(stats.crash_loops)} crash loop(s)",
        tuple(loops[:5]),
    )
