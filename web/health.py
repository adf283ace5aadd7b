"""/healthz (liveness: the engine is there; 503 only when it is gone and the process must be
restarted), /readyz (readiness: database reachable, migrations applied, engine running, no
actor in a crash loop; 503 during a database outage and ready again once the database
answers), /metrics (Prometheus text)."""

from __future__ import annotations

from quart import Blueprint, Response, current_app
from quart_schema import document_response, hide, tag

from web.liveness import LIVENESS_EXTENSION, Liveness
from web.responses import json_response
from web.runtime import current
from web.wire import HealthOut

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@tag(["operations"])
@document_response(HealthOut, 200)
@document_response(HealthOut, 503)
async def healthz() -> Response:
    """Liveness: 503 only when the engine is gone (the process exits soon after; restart it).
    A database outage is not a liveness failure: /readyz reports it."""
    liveness: Liveness = current_app.extensions[LIVENESS_EXTENSION]
    if liveness.reason is not None:
        return json_response(HealthOut(status="gone", problems=[liveness.reason]), 503)
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
