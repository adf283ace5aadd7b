"""One way to ask the engine to create something (a refund, a payout) from a request.

The engine call runs under the API's engine deadline; what it refuses comes back as a value
(`Rejection`) mapped to its problem type, raised rather than returned so that the request's
idempotency claim is released and nothing is stored; bad input the engine finds is a 422; an
engine that does not answer in time is a 503 with Retry-After; an entity another process owns
is `OwnedElsewhere`, which web/forward_api.py forwards to the owner. The endpoints differ only in
the call, their rejections and how they show what was created.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import trio

from actors.runtime import AskTimeout
from actors.service import Rejection
from engine.errors import InvalidInput
from engine.leases import Fenced, NotOwner
from web.forward_api import OwnedElsewhere
from web.problems import UNAVAILABLE, VALIDATION_FAILED, ApiProblem, ProblemType
from web.runtime import Runtime

T = TypeVar("T")


async def create_through_engine(
    runtime: Runtime,
    call: Callable[[], Awaitable[T | Rejection]],
    rejections: Mapping[str, ProblemType],
) -> T:
    """`call`'s created record, or the problem that says why there is none."""
    try:
        with trio.fail_after(runtime.settings.engine_call_timeout_s):
            result = await call()
    except InvalidInput as exc:
        raise ApiProblem(VALIDATION_FAILED, str(exc)) from None
    except (trio.TooSlowError, AskTimeout):
        raise ApiProblem(
            UNAVAILABLE, "the engine did not answer in time", headers={"Retry-After": "1"}
        ) from None
    except NotOwner as exc:  # several processes: the owner is asked (web/forward_api.py)
        raise OwnedElsewhere(exc.partition) from None
    except Fenced:  # several processes: another one drives it (docs/architecture.md)
        raise ApiProblem(
            UNAVAILABLE,
            "another engine process drives this entity now; send the request again",
            headers={"Retry-After": "1"},
        ) from None
    if isinstance(result, Rejection):
        raise ApiProblem(rejections[result.reason], f"{result.reason}: {result.detail}")
    return result
