"""API requests that ask an entity another process owns to act, forwarded to it (issue 14).

A refund, a payout or a payout schedule is driven by the actor of its family (the order's
payment, `merchant:<id>`), and only the owner of that family's partition may drive it. The
engine refuses the ask at once on any other process (`NotOwner`, before anything is written);
web/creation.py raises that as `OwnedElsewhere`, and this wrapper hands the request to the owner
(web/forward.py: same method, path, query, body, Authorization, Idempotency-Key, Content-Type;
one hop; a bounded wait) and answers with the owner's answer. No owner, or no answer: the
503 + Retry-After the client retries, as before forwarding existed.

Idempotency: the receiving process claims the Idempotency-Key before it asks the engine (the
order of web/idempotency.py). `OwnedElsewhere` is raised inside the claimed handler, so the
claim is released (shielded, awaited) before the exception reaches this wrapper, which is
outside `run_idempotent`: the owner claims the key itself, runs the request once and stores its
answer in the shared idempotency table, so a replay at either process gets that answer. The
non-owner stores nothing for a forwarded request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import Response

from web.forward import forward_to_owner
from web.problems import UNAVAILABLE, ApiProblem
from web.runtime import Runtime


class OwnedElsewhere(ApiProblem):
    """The engine refused: another process drives this entity. Unforwarded, it is the 503 +
    Retry-After a client retries (behind a load balancer the retry may land on the owner)."""

    def __init__(self, partition: int) -> None:
        super().__init__(
            UNAVAILABLE,
            "another engine process drives this entity now; send the request again",
            headers={"Retry-After": "1"},
        )
        self.partition = partition


async def forwarding(
    runtime: Runtime, body: bytes, handler: Callable[[], Awaitable[Response]]
) -> Response:
    """`handler`'s answer, or the owner's when the engine refused here as not the owner."""
    try:
        return await handler()
    except OwnedElsewhere as exc:
        answer = await forward_to_owner(runtime, exc.partition, body)
        if answer is None:
            raise
        return answer
