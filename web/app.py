"""The app factory: the public API on quart-trio, hosting the engine in its lifespan nursery.

`create_app(wiring, settings)` returns a QuartTrio app. Its lifespan task (started in
quart-trio's `app.nursery` before serving) opens the store, the gateway and the engine
(web/runtime.py) and holds them until the server shuts down; Hypercorn finishes in-flight
requests before the lifespan ends. Every request passes, in order: the refusal of what
PostgreSQL cannot store in its path and query (404/422, web/boundary.py), the body size limit
(413), the card-number guard (400, body never logged), the same refusal in its JSON body (422),
the route's API key and scope check (401/403), the per-key rate limit (429), then the handler,
where creating POSTs add idempotency. Every error leaves as RFC 9457 problem+json, including
Quart's own 404/405/413, an unavailable database (503 with Retry-After: weather, nothing
changed) and any crash (500, logged with the request id, never with the body).
The ASGI app is wrapped by web/keepalive.py, so no answer given before the body arrived can
hang a keep-alive connection.
"""

from __future__ import annotations

import attrs
import structlog
import trio
from quart import Response, g, request
from quart_schema import QuartSchema
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from engine.errors import StoreUnavailable
from web import (
    boundary,
    deadletters,
    disputes,
    health,
    ledger,
    logs,
    merchant_webhooks,
    payments,
    payouts,
    reconciliations,
    refunds,
    webhooks,
)
from web.bodies import raw_body
from web.cardguard import contains_card_number
from web.keepalive import keep_alive_safe
from web.liveness import LIVENESS_EXTENSION, Liveness
from web.metrics import Metrics, standard_metrics
from web.notifier import webhook_notifier
from web.openapi import CompletedOpenAPIProvider
from web.problems import (
    CARD_DATA_REFUSED,
    INTERNAL,
    UNAVAILABLE,
    ApiProblem,
    for_status,
    render,
)
from web.runtime import EXTENSION, Runtime, Wiring, host
from web.settings import WebSettings

log = structlog.get_logger("payengine.web")

#: How long shutdown waits for the engine to close after the server stopped taking requests.
LIFESPAN_SHUTDOWN_TIMEOUT_S = 15.0
#: Retry-After on a 503 for an unavailable database: the engine retries its own work at least
#: this often (engine/limits.py `store_retry_delay_s_max`).
STORE_RETRY_AFTER_S = 2


def create_app(wiring: Wiring, settings: WebSettings | None = None) -> QuartTrio:
    settings = (settings or WebSettings()).check()
    if wiring.make_notifier is None:  # merchants hear about changes by signed webhooks
        wiring = attrs.evolve(wiring, make_notifier=webhook_notifier)
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.body_size_max_bytes
    # `//` in a path is 404 like any other path naming nothing, not a 308 with an HTML body.
    app.url_map.merge_slashes = False
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = LIFESPAN_SHUTDOWN_TIMEOUT_S
    QuartSchema(
        app,
        conversion_preference="msgspec",
        info={"title": "payengine API", "version": "1"},
        security_schemes={"apiKey": {"type": "http", "scheme": "bearer"}},
        security=[{"apiKey": []}],
        openapi_provider_class=CompletedOpenAPIProvider,
    )
    for blueprint in (
        payments.bp,
        refunds.bp,
        reconciliations.bp,  # issue 12
        payouts.bp,
        ledger.bp,
        deadletters.bp,
        webhooks.bp,
        merchant_webhooks.bp,
        health.bp,
    ):
        app.register_blueprint(blueprint)
    app.register_blueprint(disputes.bp)  # issue 11, the chargeback part (web/disputes.py)
    metrics = standard_metrics()
    _lifespan(app, wiring, settings, metrics)
    _hooks(app, metrics)
    app.asgi_app = keep_alive_safe(app.asgi_app)  # type: ignore[method-assign,assignment]
    return app


def _lifespan(app: QuartTrio, wiring: Wiring, settings: WebSettings, metrics: Metrics) -> None:
    stop = trio.Event()
    liveness = Liveness()
    app.extensions[LIVENESS_EXTENSION] = liveness

    @app.before_serving
    async def open_engine() -> None:
        runtime: Runtime = await app.nursery.start(host, wiring, settings, metrics, stop, liveness)
        app.extensions[EXTENSION] = runtime

    @app.after_serving
    async def close_engine() -> None:
        runtime = app.extensions.get(EXTENSION)
        if runtime is not None:
            runtime.ready = False
        stop.set()


def _hooks(app: QuartTrio, metrics: Metrics) -> None:
    @app.before_request
    async def guard() -> None:
        g.started_s = trio.current_time()
        logs.clear()
        request_id = logs.usable_request_id(request.headers.get("X-Request-Id"))
        g.request_id = request_id or app.extensions[EXTENSION].ids.new("evt").removeprefix("evt_")
        logs.bind(request_id=g.request_id)
        boundary.check_path(request.path)
        boundary.check_query(request.args)
        if request.url_rule is not None:
            view = app.view_functions.get(request.url_rule.endpoint)
            boundary.check_query_names(request.args, view)
        if request.method in ("POST", "PUT", "PATCH"):
            body = await raw_body()  # bounded by MAX_CONTENT_LENGTH (413)
            # A settlement file is the PSP's and holds no card numbers, but its 16-digit PSP
            # references (Adyen's) pass the Luhn check as often as not.
            if contains_card_number(body) and request.path != reconciliations.UPLOAD_PATH:
                metrics.inc("card_data_refused_total")
                raise ApiProblem(
                    CARD_DATA_REFUSED,
                    "card numbers must be entered on the PSP's hosted page, never sent here",
                )
            boundary.check_body(body)

    @app.after_request
    async def finish(response: Response) -> Response:
        request_id = getattr(g, "request_id", None)
        if request_id is not None:
            response.headers["X-Request-Id"] = request_id
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        status = str(response.status_code)
        metrics.inc("http_requests_total", method=request.method, route=route, status=status)
        started_s = getattr(g, "started_s", None)
        if started_s is not None:
            elapsed_s = trio.current_time() - started_s
            metrics.observe("http_request_duration_seconds", elapsed_s, route=route)
        log.info("request", method=request.method, route=route, status=response.status_code)
        return response

    @app.errorhandler(ApiProblem)
    async def problem(error: ApiProblem) -> Response:
        return render(error, getattr(g, "request_id", None))

    @app.errorhandler(StoreUnavailable)
    async def store_unavailable(error: StoreUnavailable) -> Response:
        # An outage is weather: nothing was changed, the same request may be sent again.
        metrics.inc("store_unavailable_total")
        log.warning("store_unavailable", error=str(error))
        return render(
            ApiProblem(
                UNAVAILABLE,
                "the database is unavailable; nothing was changed, retry later",
                headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
            ),
            getattr(g, "request_id", None),
        )

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        kind = for_status(error.code or 500)
        detail = error.description or kind.title
        response = render(ApiProblem(kind, detail), getattr(g, "request_id", None))
        valid_methods = getattr(error, "valid_methods", None)
        if error.code == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(Exception)
    async def crash(error: Exception) -> Response:
        log.error("unhandled", error_type=type(error).__name__, exc_info=error)
        return render(
            ApiProblem(INTERNAL, "an internal error; it has been logged with the request id"),
            getattr(g, "request_id", None),
        )
