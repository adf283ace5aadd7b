"""Forwarding a request to the process that owns its partition (several processes, issue 14).

Why forward and not drive here: only the owner of an entity's partition may drive it (one
process at a time, engine/leases.py). A PSP webhook lands on whichever process the load balancer
picks, and the PSP redelivers to the same address, so a process that refused it would refuse
every redelivery: it hands the signed request, byte for byte, to the owner (whose URL is in the
lease table) and answers with the owner's answer. Once only: a forwarded request that finds no
owner either (the partition just moved) is answered 503 and the PSP redelivers later.
"""

from __future__ import annotations

import httpx
from quart import Response, request

from web.runtime import Runtime

#: The header that marks a forwarded request (never forwarded again).
FORWARDED_HEADER = "Payengine-Forwarded"
#: The headers of the original request the owner needs (the signature covers the body).
FORWARDED_HEADERS = ("Stripe-Signature", "Content-Type", "Authorization", "Idempotency-Key")
FORWARD_TIMEOUT_S = 10.0


async def forward_to_owner(runtime: Runtime, partition: int, body: bytes) -> Response | None:
    """The owner's answer to this request; None when it cannot be forwarded (no owner, a
    forwarded request already, the owner did not answer)."""
    leases = runtime.engine.leases
    if leases is None or request.headers.get(FORWARDED_HEADER):
        return None
    url = await leases.manager.leases.owner_url(partition)
    if url is None or url == leases.manager.url:
        return None
    headers = {h: v for h in FORWARDED_HEADERS if (v := request.headers.get(h)) is not None}
    headers[FORWARDED_HEADER] = leases.me
    try:
        async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S) as http:
            answer = await http.request(
                request.method, url + request.full_path.rstrip("?"), content=body, headers=headers
            )
    except httpx.HTTPError:
        return None
    runtime.metrics.inc("requests_forwarded_total", status=str(answer.status_code))
    return Response(
        answer.content,
        status=answer.status_code,
        content_type=answer.headers.get("content-type", "application/json"),
    )
