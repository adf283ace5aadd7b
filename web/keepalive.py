"""Keep-alive connections must never hang: ASGI middleware that finishes a response only once
the request's body has arrived, and shields the server's `send` from the app's cancellation.

The hang (issue 13; the upstream report is docs/upstream-hypercorn-recycle.md): when the app
answers before the request's body has arrived (a GET with a body, a 405, an early error, the
body in a second TCP segment), Hypercorn finds the client still sending when the response ends
and closes the connection, from inside the app's last `send()` (`H11Protocol._maybe_recycle` ->
`Closed` -> `TCPServer._close`). That same call first tells the app `http.disconnect`, on which
quart-trio cancels the request's nursery, and the cancellation lands on the `send_eof`
checkpoint of the close: the socket is neither closed nor recycled, the body and the next
request are read into an h11 connection nobody drives, and the client waits forever (6-16 % of
tries with `requests`). Hypercorn also counts that connection as busy, so a graceful shutdown
waited its whole `graceful_timeout` for it (the 10-12 s SIGTERM).

`keep_alive_safe(app)` fixes both sides for any ASGI app (the API and the fake PSP's face):

- the response's last body message waits (at most `BODY_WAIT_TIMEOUT_S`) until the request's
  body has been received (quart reads it in a task of its own, whether or not the handler
  wants it), so the client is done sending when the response ends and Hypercorn recycles the
  connection for the next request instead of closing it;
- each `send` runs shielded from the app's cancellation (at most `SERVER_SEND_TIMEOUT_S`), so
  Hypercorn's bookkeeping inside it completes; when the body never came (too slow, too large),
  the connection is closed cleanly instead of left hanging.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

#: How long a finished response waits for the rest of the request's body before it is sent
#: anyway (Hypercorn then closes the connection rather than read the remainder).
BODY_WAIT_TIMEOUT_S = 5.0
#: How long one message to the server may take while shielded from the app's cancellation.
#: Hypercorn writes to the socket shielded itself; this bounds the rest (locks, bookkeeping).
SERVER_SEND_TIMEOUT_S = 10.0

Asgi = Callable[[Any, Any, Any], Awaitable[None]]


def keep_alive_safe(app: Asgi) -> Asgi:
    """ASGI middleware for HTTP requests; see the module docstring for why."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        body_received = trio.Event()

        async def watched_receive() -> Any:
            message = await receive()
            kind = message.get("type")
            if kind == "http.disconnect" or (
                kind == "http.request" and not message.get("more_body", False)
            ):
                body_received.set()
            return message

        async def shielded_send(message: Any) -> None:
            last = message.get("type") == "http.response.body" and not message.get(
                "more_body", False
            )
            with trio.CancelScope(shield=True):
                if last:
                    with trio.move_on_after(BODY_WAIT_TIMEOUT_S):
                        await body_received.wait()
                with trio.move_on_after(SERVER_SEND_TIMEOUT_S):
                    await send(message)

        await app(scope, watched_receive, shielded_send)

    return wrapped
