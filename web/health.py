"""/healthz (the process answers), /readyz (it can serve: database reachable, migrations
applied, engine running, no actor in a crash loop), /metrics (Prometheus text)."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, hide, tag

from web.responses import json_response
from web.runtime import current
from web.wire import HealthOut

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@tag(["operations"])
@document_response(HealthOut, 200)
async def healthz() -> Response:
    return json_response(HealthOut(status="ok"))


@bp.get("/readyz")
@tag(["operations"])
@document_response(HealthOut, 200)
@document_response(HealthOut, 503)
async def readyz() -> Response:
    runtime = current()
    problems = [] if runtime.ready else ["shutting down"]
    problems += await runtime.store.readiness()
    problems += runtime.engine.health()
    if problems:
        return json_response(HealthOut(status="unavailable", problems=problems), 503)
    return json_response(HealthOut(status="ok"))


@bp.get("/metrics")
@hide
async def metrics() -> Response:
    runtime = current()
    runtime.metrics.set("engine_ready", 1.0 if runtime.ready else 0.0)
    return Response(
        runtime.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8"
    )
