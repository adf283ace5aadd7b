"""The actor runtime: keyed trio tasks with bounded mailboxes, supervised and passivated.

Why actors: each aggregate (a checkout, an order, a merchant's wallet) is owned by one task that
handles one message at a time, so its state changes need no locks, and its unit of work per
message is the natural transaction boundary.

Guarantees:
- `tell` enqueues and waits for mailbox space (backpressure: a full mailbox slows the sender,
  it never grows); `ask` also waits for the reply, within a deadline.
- Actors are spawned on demand by (kind, key). An actor idle for `actor_idle_timeout_s`, or
  one that says it is `finished` once its mailbox is empty, passivates: it leaves the
  registry, handles anything already in its mailbox, and exits, so memory is bounded by work
  in flight, not by history. State lives in the store; a new incarnation reloads it in
  `on_start`.
- A handler that raises (a broken invariant; expected failures are reply values) crashes the
  incarnation: the supervisor reloads the actor's state and goes on with the next message, up
  to `restarts_per_window_max` restarts per `restart_window_s`. Beyond that the actor is
  stopped and the crash loop is recorded, logged at error level and reported by
  `statistics()` and `health()`: it surfaces, it is never silent. The next message for that
  key starts a fresh incarnation.
- Outages are weather, not death. A reload (`on_start`, at spawn, after a crash or a lost
  race) that finds the store unavailable (`StoreUnavailable`) waits and tries again, with
  backoff (`store_retry_delay_s_base` doubling to `store_retry_delay_s_max`), for as long as the
  store is down. A handler that finds it unavailable has committed nothing: its asker hears
  `StoreUnavailable` at once (the API answers 503), and the actor waits, reloads and handles the
  same message again, so a `tell` is not lost to an outage. Neither counts as a crash, so an
  outage never stops an actor for crash-looping. Any other error of a reload is a crash under
  the restart policy: it never escapes into the engine's nursery.
- `trio.Cancelled` is never caught: shutting the system down cancels every actor.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import attrs
import trio

from actors.reply_slot import ReplySlot
from engine.errors import StoreUnavailable, VersionConflict
from engine.leases import Fenced
from engine.limits import EngineConfig, store_retry_delay_s

log = logging.getLogger("payengine.actors")

#: How often a handler that lost an optimistic race is re-run after reloading its state.
CONFLICT_RETRIES_MAX = 5
#: How many crash-loop reports `statistics()` keeps (oldest dropped first).
CRASH_LOOPS_KEPT_MAX = 100


class Actor(Protocol):
    """What the runtime needs from an actor. Handlers return a reply value.

    An actor may also have a `finished` attribute: when it is true and the mailbox is empty,
    the actor passivates at once instead of waiting out its idle timeout (its aggregate is
    final and nothing more is expected; a late message spawns a new incarnation as usual).
    """

    async def on_start(self) -> None:
        """(Re)load state from the store; called at spawn and after every crash."""
        ...

    async def receive(self, message: Any) -> Any: ...


ActorFactory = Callable[[Hashable], Actor]


class ActorCrashed(Exception):
    """The actor's handler raised while handling your message; it was restarted."""


class ActorStopped(Exception):
    """The actor hit its crash-loop limit and was stopped; retry later."""


class AskTimeout(Exception):
    """No reply within the ask deadline. The message may still be handled."""


@attrs.define
class _Envelope:
    message: Any
    reply_to: ReplySlot | None


@attrs.define(eq=False)
class _Cell:
    kind: str
    key: Hashable
    send: trio.MemorySendChannel[_Envelope]
    receive: trio.MemoryReceiveChannel[_Envelope]
    handled: int = 0
    passivated: bool = False


@attrs.frozen
class CrashLoop:
    kind: str
    key: str
    restarts: int
    last_error: str


@attrs.frozen
class Statistics:
    live_actors: int
    live_by_kind: dict[str, int]
    peak_actors: int
    mailbox_depth_total: int
    mailbox_depth_max: int
    spawned: int
    #: Incarnations started per kind (first start, or again after passivation or a stop);
    #: each one reloads its state from the store in `on_start`.
    spawned_by_kind: dict[str, int]
    passivated: int
    restarts: int
    messages_handled: int
    crash_loops: tuple[CrashLoop, ...]
    #: Reloads and messages that found the store unavailable and were retried after a wait.
    store_retries: int = 0
    #: Actors waiting right now for the store to answer again.
    store_waiting: int = 0


class ActorSystem:
    """Registry, spawner and supervisor of keyed actors. Create with `open_actor_system`."""

    def __init__(self, nursery: trio.Nursery, config: EngineConfig) -> None:
        self._nursery = nursery
        self._config = config
        self._factories: dict[str, ActorFactory] = {}
        self._cells: dict[tuple[str, Hashable], _Cell] = {}
        self._peak = 0
        self._spawned = 0
        self._spawned_by_kind: dict[str, int] = {}
        self._passivated = 0
        self._restarts = 0
        self._handled = 0
        self._store_retries = 0
        self._store_waiting = 0
        self._crash_loops: deque[CrashLoop] = deque(maxlen=CRASH_LOOPS_KEPT_MAX)
        self._capacity = trio.Semaphore(config.actors_max)
        #: Actors waiting for a message, by when they started waiting (oldest first), for
        #: `_passivate_idle`; the task is started with the first actor.
        self._idle_since: OrderedDict[_Cell, float] = OrderedDict()
        self._idle_added = trio.Event()
        self._passivating = False
        #: Told (kind, key, message, reply) after each message an actor handled; for the
        #: teaching pages' timeline (teach/). Must not block or raise.
        self.observer: Callable[[str, Hashable, Any, Any], None] | None = None

    def register(self, kind: str, factory: ActorFactory) -> None:
        assert kind not in self._factories, f"actor kind {kind!r} registered twice"
        self._factories[kind] = factory

    # --- messaging ---------------------------------------------------------------------------
    async def tell(self, kind: str, key: Hashable, message: Any) -> None:
        """Enqueue `message` for the actor (spawning it if needed); waits for mailbox space."""
        await self._deliver(kind, key, _Envelope(message, None))

    def tell_nowait(self, kind: str, key: Hashable, message: Any) -> bool:
        """Enqueue without waiting; False when the mailbox is full or the actor cannot spawn."""
        cell = self._cells.get((kind, key))
        if cell is None:
            return False
        try:
            cell.send.send_nowait(_Envelope(message, None))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def ask(
        self, kind: str, key: Hashable, message: Any, timeout_s: float | None = None
    ) -> Any:
        """Send `message` and wait for the reply; raises AskTimeout after the deadline."""
        timeout_s = self._config.ask_timeout_s if timeout_s is None else timeout_s
        slot = ReplySlot()
        try:
            with trio.move_on_after(timeout_s):
                await self._deliver(kind, key, _Envelope(message, slot))
                await slot.wait()
        finally:
            if not slot.done:  # timed out or cancelled: nobody will read the reply
                slot.abandoned = True
        if not slot.done:
            raise AskTimeout(f"{kind} {key!r} did not reply within {timeout_s} s")
        if not slot.ok:
            raise slot.value
        return slot.value

    async def _deliver(self, kind: str, key: Hashable, envelope: _Envelope) -> None:
        while True:
            cell = self._cells.get((kind, key))
            if cell is None:
                cell = await self._spawn(kind, key)
            try:
                # Room in the mailbox: enqueue without a task switch (most sends); full: wait.
                try:
                    cell.send.send_nowait(envelope)
                except trio.WouldBlock:
                    await cell.send.send(envelope)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The actor passivated or stopped between lookup and send: spawn a new one.
                await trio.lowlevel.checkpoint()

    async def _spawn(self, kind: str, key: Hashable) -> _Cell:
        factory = self._factories.get(kind)
        assert factory is not None, f"no actor kind {kind!r}"
        try:  # bounded: waits while actors_max are alive (a spawn with room needs no switch)
            self._capacity.acquire_nowait()
        except trio.WouldBlock:
            await self._capacity.acquire()
        existing = self._cells.get((kind, key))
        if existing is not None:  # another sender spawned it while we waited
            self._capacity.release()
            return existing
        send, receive = trio.open_memory_channel[_Envelope](self._config.mailbox_capacity_max)
        cell = _Cell(kind, key, send, receive)
        self._cells[(kind, key)] = cell
        self._spawned += 1
        self._spawned_by_kind[kind] = self._spawned_by_kind.get(kind, 0) + 1
        self._peak = max(self._peak, len(self._cells))
        if not self._passivating:
            self._passivating = True
            self._nursery.start_soon(self._passivate_idle, name="actors:passivate_idle")
        self._nursery.start_soon(self._run, cell, factory(key), name=f"actor:{kind}:{key}")
        return cell

    # --- one actor's life --------------------------------------------------------------------
    async def _run(self, cell: _Cell, actor: Actor) -> None:
        crashes: deque[float] = deque()
        try:
            if not await self._start(cell, actor, crashes):
                return
            while True:
                try:
                    try:  # a queued message needs no waiting
                        envelope = cell.receive.receive_nowait()
                    except trio.WouldBlock:
                        if getattr(actor, "finished", False) is True:
                            # Nothing more is expected: passivate now, not when idle.
                            self._passivate(cell)
                            continue
                        self._idle_since[cell] = trio.current_time()
                        if len(self._idle_since) == 1:
                            self._idle_added.set()
                        try:
                            envelope = await cell.receive.receive()
                        finally:
                            self._idle_since.pop(cell, None)
                except trio.EndOfChannel:
                    return  # passivated, and every message queued before was handled
                if not await self._handle(cell, actor, envelope, crashes):
                    return
        finally:
            self._idle_since.pop(cell, None)
            self._forget(cell)
            cell.receive.close()
            self._capacity.release()

    def _passivate(self, cell: _Cell) -> None:
        """Leave the registry first, so new messages spawn a new incarnation, then close the
        mailbox: the actor handles whatever is already queued (also a message that arrived as
        it was passivated: nothing is dropped), then its receive ends and it exits."""
        if cell.passivated:
            return
        cell.passivated = True
        self._forget(cell)
        cell.send.close()
        self._passivated += 1

    async def _passivate_idle(self) -> None:
        """Passivate every actor that has waited `actor_idle_timeout_s` for a message.

        One task for all actors instead of an idle deadline per actor (a cancel scope per
        incarnation, its deadline moved around every wait): waiting actors are kept in the
        order they started waiting, so only the oldest needs looking at.
        """
        idle_s = self._config.actor_idle_timeout_s
        while True:
            now = trio.current_time()
            while self._idle_since:
                cell, since = next(iter(self._idle_since.items()))
                if since + idle_s > now:
                    break
                del self._idle_since[cell]
                self._passivate(cell)
            if self._idle_since:
                await trio.sleep_until(next(iter(self._idle_since.values())) + idle_s)
            else:
                self._idle_added = trio.Event()
                await self._idle_added.wait()
        raise AssertionError("ActorSystem._passivate_idle never returns")

    def _forget(self, cell: _Cell) -> None:
        if self._cells.get((cell.kind, cell.key)) is cell:
            del self._cells[(cell.kind, cell.key)]

    async def _start(self, cell: _Cell, actor: Actor, crashes: deque[float]) -> bool:
        """(Re)load the actor's state; False when it must stop (crash loop).

        An unavailable store is waited out (see the module docstring); any other error is a
        crash, and the reload is tried again under the restart policy.
        """
        while True:
            try:
                await self._start_when_store_answers(cell, actor)
                return True
            except Exception as exc:  # a crash: trio.Cancelled is a BaseException, never caught
                if not self._crashed(cell, crashes, exc):
                    return False

    async def _start_when_store_answers(self, cell: _Cell, actor: Actor) -> None:
        attempt = 0
        while True:
            try:
                await actor.on_start()
                return
            except StoreUnavailable as exc:
                attempt += 1
                await self._wait_for_store(cell, attempt, exc)

    async def _wait_for_store(self, cell: _Cell, attempt: int, exc: StoreUnavailable) -> None:
        self._store_retries += 1
        delay_s = store_retry_delay_s(self._config, attempt)
        if attempt == 1:
            log.warning("actor %s %r waits for the store: %s", cell.kind, cell.key, exc)
        self._store_waiting += 1
        try:
            await trio.sleep(delay_s)
        finally:
            self._store_waiting -= 1

    def _crashed(self, cell: _Cell, crashes: deque[float], exc: Exception) -> bool:
        """Count a crash against the restart policy; False when the actor must stop."""
        now = trio.current_time()
        crashes.append(now)
        while crashes and crashes[0] < now - self._config.restart_window_s:
            crashes.popleft()
        if len(crashes) > self._config.restarts_per_window_max:
            loop = CrashLoop(cell.kind, str(cell.key), len(crashes), repr(exc))
            self._crash_loops.append(loop)
            log.error("actor crash loop, stopped: %s", loop, exc_info=exc)
            self._fail_queued(cell)
            return False
        self._restarts += 1
        log.warning("actor %s %r crashed, restarting: %r", cell.kind, cell.key, exc)
        return True

    async def _handle(
        self, cell: _Cell, actor: Actor, envelope: _Envelope, crashes: deque[float]
    ) -> bool:
        """Handle one message; False when the actor must stop (crash loop)."""
        outage_attempt = 0
        while True:
            try:
                try:  # the first try inline: one coroutine less per message on the common path
                    reply = await actor.receive(envelope.message)
                except VersionConflict:
                    await actor.on_start()  # someone else wrote the row: reload and re-decide
                    reply = await self._with_conflict_retries(actor, envelope.message)
                break
            except StoreUnavailable as exc:
                # Nothing was committed (a commit that lost its connection is as after a
                # crash): tell the asker now, wait, reload and handle the same message again.
                self._reply(envelope, False, exc)
                outage_attempt += 1
                await self._wait_for_store(cell, outage_attempt, exc)
                if not await self._start(cell, actor, crashes):
                    return False
            except Fenced as exc:
                # Another process drives this entity (engine/leases.py): nothing was written;
                # the asker hears why, and the state is reloaded. Not a crash.
                self._reply(envelope, False, exc)
                return await self._start(cell, actor, crashes)
            except Exception as exc:  # a crash: trio.Cancelled is a BaseException, never caught
                self._reply(envelope, False, ActorCrashed(f"{cell.kind} {cell.key!r}: {exc!r}"))
                if not self._crashed(cell, crashes, exc):
                    return False
                return await self._start(cell, actor, crashes)
        cell.handled += 1
        self._handled += 1
        if self.observer is not None:
            self.observer(cell.kind, cell.key, envelope.message, reply)
        self._reply(envelope, True, reply)
        return True

    async def _with_conflict_retries(self, actor: Actor, message: Any) -> Any:
        for _ in range(CONFLICT_RETRIES_MAX - 1):  # the first try was `_handle`'s
            try:
                return await actor.receive(message)
            except VersionConflict:
                await actor.on_start()  # someone else wrote the row: reload and re-decide
        return await actor.receive(message)

    def _fail_queued(self, cell: _Cell) -> None:
        self._forget(cell)
        while True:
            try:
                envelope = cell.receive.receive_nowait()
            except trio.WouldBlock:
                return
            self._reply(envelope, False, ActorStopped(f"{cell.kind} {cell.key!r} crash-looped"))

    @staticmethod
    def _reply(envelope: _Envelope, ok: bool, value: Any) -> None:
        slot = envelope.reply_to
        # If the asker gave up (deadline), the reply has nobody to go to.
        if slot is None or slot.abandoned or slot.done:
            return
        slot.set(ok, value)

    # --- introspection ---------------------------------------------------------------------
    def is_live(self, kind: str, key: Hashable) -> bool:
        return (kind, key) in self._cells

    def statistics(self) -> Statistics:
        by_kind: dict[str, int] = {}
        depth_total = depth_max = 0
        for (kind, _), cell in self._cells.items():
            by_kind[kind] = by_kind.get(kind, 0) + 1
            depth = cell.send.statistics().current_buffer_used
            depth_total += depth
            depth_max = max(depth_max, depth)
        return Statistics(
            live_actors=len(self._cells),
            live_by_kind=by_kind,
            peak_actors=self._peak,
            mailbox_depth_total=depth_total,
            mailbox_depth_max=depth_max,
            spawned=self._spawned,
            spawned_by_kind=dict(self._spawned_by_kind),
            passivated=self._passivated,
            restarts=self._restarts,
            messages_handled=self._handled,
            crash_loops=tuple(self._crash_loops),
            store_retries=self._store_retries,
            store_waiting=self._store_waiting,
        )

    def health(self) -> list[str]:
        """Problems an operator must see; empty when healthy."""
        return [f"crash loop: {c.kind} {c.key}: {c.last_error}" for c in self._crash_loops]
