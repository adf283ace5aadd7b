"""Forwarding a request to the process that owns its partition (several processes, issue 14).

Why forward and not drive here: only the owner of an entity's partition may drive it (one
process at a time, engine/leases.py). A PSP webhook lands on whichever process the load balancer
picks, and the PSP redelivers to the same address, so a process that refused it would refuse
every redelivery: it hands the signed request, byte for byte, to the owner (whose URL is in the
lease table) and answers with the owner's answer. API requests that ask an entity to act (a
refund, a payout, a payout schedule: web/forward_api.py) are forwarded the same way. Once only:
a forwarded request that finds no owner either (the partition just moved) is answered 503 and
the sender sends it again later. Whether to forward is a pure decision (`decide`), tested alone.
"""

from __future__ import annotations

import enum

import httpx
from quart import Response, request

from web.runtime import Runtime

#: The header that marks a forwarded request (never forwarded again).
FORWARDED_HEADER = "Payengine-Forwarded"
#: The headers of the original request the owner needs (the signature covers the body).
FORWARDED_HEADERS = ("Stripe-Signature", "Content-Type", "Authorization", "Idempotency-Key")
#: The headers of the owner's answer handed back with it (besides its Content-Type).
ANSWER_HEADERS = ("Location", "Retry-After", "Idempotent-Replayed")
#: The longest wait for the owner's answer (its own engine deadline is shorter); past it, 503.
FORWARD_TIMEOUT_S = 10.0


class Decision(enum.Enum):
    FORWARD = "forward"
    SINGLE_PROCESS = "single_process"  # no leases: nobody to forward to
    ALREADY_FORWARDED = "already_forwarded"  # one hop at most
    NO_OWNER = "no_owner"  # the partition is free or its owner's lease lapsed
    OWNER_IS_ME = "owner_is_me"  # the table says us but we refused: it is moving


def decide(leased: bool, forwarded_by: str | None, owner_url: str | None, my_url: str) -> Decision:
    """Whether a request this process refused (`NotOwner`) goes to `owner_url`."""
    if not leased:
        return Decision.SINGLE_PROCESS
    if forwarded_by:
        return Decision.ALREADY_FORWARDED
    if owner_url is None:
        return Decision.NO_OWNER
    if owner_url == my_url:
        return Decision.OWNER_IS_ME
    return Decision.FORWARD


async def forward_to_owner(runtime: Runtime, partition: int, body: bytes) -> Response | None:
    """The owner's answer to this request; None when it cannot be forwarded (no owner, a
    forwarded request already, the owner did not answer)."""
    leases = runtime.engine.leases
    forwarded_by = request.headers.get(FORWARDED_HEADER)
    url = None
    if leases is not None and not forwarded_by:
        url = await leases.manager.leases.owner_url(partition)
    my_url = "" if leases is None else leases.manager.url
    decision = decide(leases is not None, forwarded_by, url, my_url)
    if decision is not Decision.FORWARD:
        runtime.metrics.inc("requests_not_forwarded_total", reason=decision.value)
        return None
    assert leases is not None and url is not None
    headers = {h: v for h in FORWARDED_HEADERS if (v := request.headers.get(h)) is not None}
    headers[FORWARDED_HEADER] = leases.me
    try:
        async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S) as http:
            answer = await http.request(
                request.method, url + request.full_path.rstrip("?"), content=body, headers=headers
            )
    except httpx.HTTPError:
        runtime.metrics.inc("requests_not_forwarded_total", reason="owner_unreachable")
        return None
    runtime.metrics.inc("requests_forwarded_total", status=str(answer.status_code))
    response = Response(
        answer.content,
        status=answer.status_code,
        content_type=answer.headers.get("content-type", "application/json"),
    )
    for name in ANSWER_HEADERS:
        if (value := answer.headers.get(name)) is not None:
            response.headers[name] = value
    return response
