"""The Inside page's timeline: what the actors, the PSP, the outbox and the chaos panel did, in
order, kept in memory (bounded) and pushed to browsers over server-sent events.

Sources (teach/server.py wires them): the actor system's observer (each message an actor
handled and its reply), a gateway wrapper (each call to the PSP and its outcome), the webhook
plan of the PSP's sender (each webhook sent, duplicated or dropped), the merchant notifier
(each outbox message delivered), and the chaos panel itself.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Hashable
from typing import Any

import attrs
import msgspec
import trio

#: Events kept for a browser that connects later (oldest dropped first).
EVENTS_KEPT_MAX = 500
#: A browser that connects is sent at most this many of the latest events first.
BACKLOG_SENT_MAX = 100
#: An idle event stream sends a comment this often, so proxies keep it open.
KEEPALIVE_S = 15.0
#: Message fields shown after the message's name, at most this many characters in all.
DETAIL_CHARS_MAX = 160


class Event(msgspec.Struct, frozen=True):
    seq: int
    at_ms: int
    #: actor | psp | webhook | outbox | chaos | engine | recon
    lane: str
    #: Who did it (an actor as kind:key, "PSP", a subscriber).
    who: str
    what: str
    detail: str = ""
    #: A payment id this event concerns, when known (links and filters in the page).
    payment_id: str | None = None


def _describe(message: Any) -> str:
    """A message's fields in one short line (ids and statuses; nothing secret is in them)."""
    if attrs.has(type(message)):
        parts = []
        for field in attrs.fields(type(message)):
            parts.append(f"{field.name}={_short(getattr(message, field.name))}")
        text = ", ".join(parts)
    else:
        text = repr(message)
    return text if len(text) <= DETAIL_CHARS_MAX else text[: DETAIL_CHARS_MAX - 1] + "…"


def _short(value: Any) -> str:
    """A field's value: a record by its name and status or kind, anything else as text."""
    if not attrs.has(type(value)):
        return str(value)
    for name in ("status", "kind"):
        found = getattr(value, name, None)
        if found is not None:
            return f"{type(value).__name__}({getattr(found, 'value', found)})"
    return type(value).__name__


def _payment_of(message: Any) -> str | None:
    for name in ("payment_id", "reference"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value.startswith("pay"):
            return value
    event = getattr(message, "event", None)
    return None if event is None else _payment_of(event)


@attrs.define(eq=False)
class Timeline:
    events: deque[Event] = attrs.Factory(lambda: deque(maxlen=EVENTS_KEPT_MAX))
    _seq: int = 0
    _changed: trio.Event = attrs.Factory(trio.Event)
    #: Set when the server stops: every open event stream ends.
    closing: trio.Event = attrs.Factory(trio.Event)

    def add(
        self, lane: str, who: str, what: str, detail: str = "", payment_id: str | None = None
    ) -> Event:
        self._seq += 1
        event = Event(self._seq, int(time.time() * 1000), lane, who, what, detail, payment_id)
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()
        return event

    # --- sources -----------------------------------------------------------------------------
    def actor_handled(self, kind: str, key: Hashable, message: Any, reply: Any) -> None:
        """The actor system's observer (actors/runtime.py `ActorSystem.observer`). It runs
        inside the actor's handling, so it must never raise: a message it cannot describe is
        shown by its type alone."""
        try:
            self._actor_handled(kind, key, message, reply)
        except Exception:  # a picture of the engine must never crash it
            self.add("actor", f"{kind}:{key}", type(message).__name__)

    def _actor_handled(self, kind: str, key: Hashable, message: Any, reply: Any) -> None:
        outcome = "" if reply is None else f" → {_short(reply)}"
        key_text = str(key)
        payment_id = key_text if key_text.startswith("pay") else _payment_of(message)
        self.add(
            "actor",
            f"{kind}:{key_text}",
            f"{type(message).__name__}{outcome}",
            _describe(message),
            payment_id,
        )

    def after(self, seq: int) -> list[Event]:
        return [e for e in self.events if e.seq > seq]

    async def stream(self, last_seq: int | None = None) -> AsyncIterator[bytes]:
        """Server-sent events: the latest events (or those after `last_seq`), then each new
        one as it happens, until the server stops."""
        if last_seq is None:
            backlog = list(self.events)[-BACKLOG_SENT_MAX:]
        else:
            backlog = self.after(last_seq)
        for event in backlog:
            yield _sse(event)
        seen = backlog[-1].seq if backlog else (last_seq or self._seq)
        while not self.closing.is_set():
            # Events added while this generator waited at a `yield` are sent first; only then,
            # with no checkpoint between the look and the wait, does it wait for the next one.
            fresh = self.after(seen)
            if fresh:
                for event in fresh:
                    yield _sse(event)
                seen = fresh[-1].seq
                continue
            changed = self._changed
            with trio.move_on_after(KEEPALIVE_S) as waited:
                async with trio.open_nursery() as nursery:

                    async def until(event: trio.Event) -> None:
                        await event.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(until, changed)
                    nursery.start_soon(until, self.closing)
            if waited.cancelled_caught:
                yield b": keep-alive\n\n"


def _sse(event: Event) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (event.seq, msgspec.json.encode(event))
