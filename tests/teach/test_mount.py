"""One port, several apps: the dispatcher routes by path (a prefix stripped, claimed paths
kept, the rest to the last mount), runs each app's lifespan, and restarts one app with a
fresh instance while answering its requests 503."""

from __future__ import annotations

from typing import Any

import trio

from teach.mount import Dispatcher, Mount


class Recorder:
    """An ASGI app that answers with its name and the path it saw, and logs its lifespan."""

    made = 0

    def __init__(self, name: str, log: list[str]) -> None:
        Recorder.made += 1
        self.name = f"{name}{Recorder.made}"
        self.log = log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                step = event["type"].removeprefix("lifespan.")
                self.log.append(f"{self.name} {step}")
                await send({"type": f"lifespan.{step}.complete"})
                if step == "shutdown":
                    return
        body = f"{self.name} {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def _get(app: Any, path: str) -> tuple[int, str]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "raw_path": path.encode()}, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]).decode()


async def test_routes_by_path_and_restarts_one_app() -> None:
    log: list[str] = []
    Recorder.made = 0
    dispatcher = Dispatcher(
        [
            Mount("psp", lambda: Recorder("psp", log), prefix="/psp"),
            Mount("api", lambda: Recorder("api", log), claims=("/v1", "/docs")),
            Mount("pages", lambda: Recorder("pages", log)),
        ]
    )
    to_lifespan, lifespan_receive = trio.open_memory_channel[dict[str, Any]](1)
    lifespan_send, from_lifespan = trio.open_memory_channel[dict[str, Any]](1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            dispatcher, {"type": "lifespan"}, lifespan_receive.receive, lifespan_send.send
        )
        await to_lifespan.send({"type": "lifespan.startup"})
        assert (await from_lifespan.receive())["type"] == "lifespan.startup.complete"
        assert log == ["psp1 startup", "api2 startup", "pages3 startup"]

        assert await _get(dispatcher, "/psp/pay/cs_1") == (200, "psp1 /pay/cs_1")
        assert await _get(dispatcher, "/v1/payments") == (200, "api2 /v1/payments")
        assert await _get(dispatcher, "/docs") == (200, "api2 /docs")
        assert await _get(dispatcher, "/v1x") == (200, "pages3 /v1x")  # a claim is a segment
        assert await _get(dispatcher, "/pspx") == (200, "pages3 /pspx")
        assert await _get(dispatcher, "/") == (200, "pages3 /")

        await dispatcher.restart("api")
        assert log[-2:] == ["api2 shutdown", "api4 startup"]
        assert await _get(dispatcher, "/v1/payments") == (200, "api4 /v1/payments")

        dispatcher.mount("api").running = False  # as between stop and start of a restart
        status, body = await _get(dispatcher, "/v1/payments")
        assert status == 503 and "restarting" in body
        dispatcher.mount("api").running = True

        await to_lifespan.send({"type": "lifespan.shutdown"})
        assert (await from_lifespan.receive())["type"] == "lifespan.shutdown.complete"
    assert log[-3:] == ["pages3 shutdown", "api4 shutdown", "psp1 shutdown"]
