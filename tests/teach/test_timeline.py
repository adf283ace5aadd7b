"""The timeline keeps the latest events (bounded) and streams them as server-sent events: the
backlog first, then each new event as it happens, until the server closes."""

from __future__ import annotations

import json

import attrs
import trio

from teach.timeline import EVENTS_KEPT_MAX, Timeline


@attrs.frozen
class ExecuteOrder:
    order_id: str
    payment_id: str


async def test_stream_sends_the_backlog_then_live_events_until_closing() -> None:
    timeline = Timeline()
    timeline.add("psp", "PSP", "capture → captured", "ord_1")
    got: list[dict[str, object]] = []

    async def read() -> None:
        async for chunk in timeline.stream():
            text = chunk.decode()
            if text.startswith("id: "):
                got.append(json.loads(text.split("data: ", 1)[1]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.sleep(0.1)
        timeline.actor_handled("order", "ord_1", ExecuteOrder("ord_1", "pay_9"), "SUCCESS")
        await trio.sleep(0.1)
        timeline.closing.set()
    assert [e["what"] for e in got] == ["capture → captured", "ExecuteOrder → SUCCESS"]
    assert got[1]["who"] == "order:ord_1" and got[1]["payment_id"] == "pay_9"
    assert [e["seq"] for e in got] == [1, 2]


async def test_a_reconnect_gets_only_what_it_missed_and_memory_is_bounded() -> None:
    timeline = Timeline()
    for n in range(EVENTS_KEPT_MAX + 10):
        timeline.add("actor", "a", f"m{n}")
    assert len(timeline.events) == EVENTS_KEPT_MAX
    timeline.closing.set()
    last = EVENTS_KEPT_MAX + 8
    chunks = [c async for c in timeline.stream(last_seq=last)]
    assert [c.split(b"\n")[0] for c in chunks] == [b"id: %d" % (last + 1), b"id: %d" % (last + 2)]


async def test_an_event_added_while_the_stream_waits_at_a_yield_is_sent_at_once() -> None:
    """The browser reads slower than events come: one added while the generator is suspended
    at its `yield` must not wait for the next event (or the keep-alive) to go out."""
    timeline = Timeline()
    timeline.add("psp", "PSP", "first")
    stream = timeline.stream()
    assert b"first" in await stream.__anext__()
    timeline.add("psp", "PSP", "second")  # the generator is suspended at its yield
    with trio.fail_after(2):
        assert b"second" in await stream.__anext__()
    timeline.add("psp", "PSP", "third")
    with trio.fail_after(2):
        assert b"third" in await stream.__anext__()
    timeline.closing.set()
    await stream.aclose()  # type: ignore[attr-defined]
