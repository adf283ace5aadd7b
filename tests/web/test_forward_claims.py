"""The Idempotency-Key of a request forwarded to its owner (issue 14, web/forward_api.py).

The receiving process claims the key before it asks the engine; when the engine refuses as not
the owner, the claim must be released BEFORE the request is forwarded, or the owner would find
the non-owner's claim and answer 409 in flight. In process (memory store): the forwarder sees
no claim, the owner's answer is what the client gets, and the owner can claim the key; when
nobody can be forwarded to, the answer is the 503 + Retry-After of before, and nothing is kept.
"""

from __future__ import annotations

from typing import Any

import pytest
from quart import Response

from tests.web.conftest import Api
from web import forward_api
from web.forward_api import OwnedElsewhere, forwarding
from web.idempotency import fingerprint, run_idempotent

SCOPE, KEY = "scope-1", "key-1"
BODY = b'{"order_id": "ord_1"}'
PRINT = fingerprint("POST", "/v1/refunds", BODY)


async def _refused() -> Response:
    raise OwnedElsewhere(7)


async def _created() -> Response:
    return Response(b'{"id": "re_1"}', status=201, content_type="application/json")


async def test_the_claim_is_released_before_forwarding(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = api.runtime
    seen: list[Any] = []

    async def owner(_runtime: Any, partition: int, body: bytes) -> Response:
        async with runtime.store.unit_of_work() as uow:
            seen.append(await uow.get_idempotency(SCOPE, KEY))
        assert (partition, body) == (7, BODY)
        # The owner runs the same request with the same key: it claims it, and stores its answer.
        return await run_idempotent(runtime, SCOPE, KEY, PRINT, _created)

    monkeypatch.setattr(forward_api, "forward_to_owner", owner)
    app: Any = api.client.app
    async with app.test_request_context("/v1/refunds", method="POST"):
        answer = await forwarding(
            runtime, BODY, lambda: run_idempotent(runtime, SCOPE, KEY, PRINT, _refused)
        )
    assert seen == [None], "the non-owner's claim was still there when it forwarded"
    assert answer.status_code == 201
    replay = await run_idempotent(runtime, SCOPE, KEY, PRINT, _refused)  # at either process
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.get_data() == b'{"id": "re_1"}'


async def test_unforwardable_is_503_and_keeps_nothing(api: Api) -> None:
    runtime = api.runtime  # one process (no leases): nobody to forward to
    app: Any = api.client.app
    async with app.test_request_context("/v1/refunds", method="POST"):
        with pytest.raises(OwnedElsewhere) as refused:
            await forwarding(
                runtime, BODY, lambda: run_idempotent(runtime, SCOPE, KEY, PRINT, _refused)
            )
    assert refused.value.kind.status == 503
    assert refused.value.headers == {"Retry-After": "1"}
    async with runtime.store.unit_of_work() as uow:
        assert await uow.get_idempotency(SCOPE, KEY) is None
