"""Dead letters (admin): list them, and put one back for its subscriber to try again.

Replay is naturally idempotent (a second replay finds nothing dead and says so), so it needs no
Idempotency-Key: the answer is 200 `replayed: true` the first time, 404 afterwards.
"""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_querystring, document_response, tag

from web.auth import guarded
from web.problems import NOT_FOUND, ApiProblem, Problem
from web.responses import json_response, page_limit
from web.runtime import current
from web.wire import DeadLetterListOut, PageQuery, ReplayOut, dead_letter_out

bp = Blueprint("deadletters", __name__)


@bp.get("/v1/dead-letters")
@tag(["operations"])
@document_querystring(PageQuery)
@document_response(DeadLetterListOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@guarded("admin")
async def list_dead_letters() -> Response:
    runtime = current()
    letters = await runtime.store.list_dead_letters(page_limit(runtime.settings))
    return json_response(DeadLetterListOut(data=[dead_letter_out(d) for d in letters]))


@bp.post("/v1/dead-letters/<letter_id>/replay")
@tag(["operations"])
@document_response(ReplayOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 404)
@guarded("admin")
async def replay_dead_letter(letter_id: str) -> Response:
    """`letter_id` is `<subscriber>:<message_id>` as listed."""
    runtime = current()
    subscriber, sep, message_id = letter_id.rpartition(":")
    replayed = False
    if sep and subscriber and message_id:
        async with runtime.store.unit_of_work() as uow:
            replayed = await uow.replay_dead_letter(subscriber, message_id, runtime.clock.now_ms())
    if not replayed:
        raise ApiProblem(NOT_FOUND, f"no dead letter {letter_id}")
    runtime.engine.ctx.doorbell.ring()
    return json_response(ReplayOut(id=letter_id, replayed=True))
