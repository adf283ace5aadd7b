"""Several ASGI apps on one port: each mounted at a path prefix, each with its own lifespan.

Why: the demo serves payengine's API, the fake PSP's Stripe face and hosted page, and the
teaching pages on one port, so a newcomer opens one URL and the browser talks to one host. The
PSP is mounted under `/psp`, stripped from the path (its `/v1/refunds` would collide with
ours); the API claims its own paths (`/v1`, `/docs`...) unchanged; the pages take the rest.
Hypercorn sends one lifespan to the dispatcher, which starts every mount's lifespan in turn
(and stops them in reverse), each in a task of the dispatcher's lifespan.

A mount can be restarted while serving (`restart`): its lifespan is shut down and a fresh app
from its factory started. The demo's chaos panel uses it to crash and restart the engine, which
the API app hosts: meanwhile its requests are answered 503.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs
import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: How long one mount may take to start or stop its lifespan.
LIFESPAN_STEP_TIMEOUT_S = 60.0


class LifespanFailed(Exception):
    """A mounted app reported `lifespan.startup.failed` (or `shutdown.failed`)."""


@attrs.define(eq=False)
class Mount:
    """One app: at `prefix` (stripped from the path), or at the paths it `claims` (kept), or
    everything else (neither); `factory` makes a fresh app (at start and at each restart)."""

    name: str
    factory: Callable[[], App]
    prefix: str = ""
    claims: tuple[str, ...] = ()
    #: Told the app once its lifespan has started (each time: a restart makes a new app).
    on_started: Callable[[App], None] | None = None
    app: App | None = None
    _to_app: trio.MemorySendChannel[Message] | None = None
    _from_app: trio.MemoryReceiveChannel[Message] | None = None
    _done: trio.Event | None = None
    running: bool = False

    def matches(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in (self.prefix, *self.claims) if p)

    async def start(self, nursery: trio.Nursery, scope: Scope) -> None:
        self.app = self.factory()
        to_app, app_receive = trio.open_memory_channel[Message](4)
        app_send, from_app = trio.open_memory_channel[Message](4)
        self._to_app, self._from_app, self._done = to_app, from_app, trio.Event()
        app, done = self.app, self._done

        async def lifespan() -> None:
            try:
                await app(dict(scope), app_receive.receive, app_send.send)
            finally:
                done.set()

        nursery.start_soon(lifespan)
        await self._step("startup")
        self.running = True
        if self.on_started is not None:
            self.on_started(app)

    async def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        await self._step("shutdown")
        assert self._done is not None
        with trio.move_on_after(LIFESPAN_STEP_TIMEOUT_S):
            await self._done.wait()

    async def _step(self, step: str) -> None:
        assert self._to_app is not None and self._from_app is not None
        with trio.fail_after(LIFESPAN_STEP_TIMEOUT_S):
            await self._to_app.send({"type": f"lifespan.{step}"})
            answer = await self._from_app.receive()
        if answer["type"] != f"lifespan.{step}.complete":
            raise LifespanFailed(f"{self.name}: {answer.get('message', answer['type'])}")


@attrs.define(eq=False)
class Dispatcher:
    """The ASGI app Hypercorn serves: routes each request to the first mount that matches its
    path, to the last mount (the default) otherwise."""

    mounts: list[Mount]
    _nursery: trio.Nursery | None = None
    _scope: Scope | None = None
    _restarting: trio.Lock = attrs.Factory(trio.Lock)

    def mount(self, name: str) -> Mount:
        return next(m for m in self.mounts if m.name == name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        path = scope.get("path", "/")
        for mount in self.mounts:
            if mount.matches(path):
                break
        else:
            mount = self.mounts[-1]
        if mount.app is None or not mount.running:
            await _unavailable(scope, send)
            return
        if mount.prefix and (path == mount.prefix or path.startswith(mount.prefix + "/")):
            scope = dict(scope)
            scope["path"] = path[len(mount.prefix) :] or "/"
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.startswith(mount.prefix.encode()):
                scope["raw_path"] = raw[len(mount.prefix) :] or b"/"
        await mount.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery, self._scope = nursery, scope
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    try:
                        for mount in self.mounts:
                            await mount.start(nursery, scope)
                    except Exception as exc:
                        await send({"type": "lifespan.startup.failed", "message": str(exc)})
                        raise
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    for mount in reversed(self.mounts):
                        await mount.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    nursery.cancel_scope.cancel()
                    return

    async def restart(self, name: str) -> None:
        """Stop the mount `name` and start a fresh app from its factory."""
        assert self._nursery is not None and self._scope is not None, "not serving"
        async with self._restarting:
            mount = self.mount(name)
            await mount.stop()
            await mount.start(self._nursery, self._scope)


async def _unavailable(scope: Scope, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b'{"title":"restarting","status":503,"detail":"the engine is restarting"}'
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"retry-after", b"1"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
