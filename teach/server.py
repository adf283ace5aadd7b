"""`serve_demo`: payengine's API, the fake PSP and the teaching pages on one port.

The engine reaches the PSP over real HTTP (the Stripe adapter, web/http_gateway.py, pointed at
`<base>/psp`), and the PSP posts signed webhooks to `<base>/v1/psp/webhooks`, exactly as
`payengine serve` wires them on two ports; here one dispatcher (teach/mount.py) serves all
three apps, so a browser talks to one host. The timeline hears the actors (the actor system's
observer), the PSP calls (a recording gateway), the webhooks (the PSP sender's plan, which is
also where the chaos panel acts) and the outbox (a recording notifier).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import attrs
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve as hypercorn_serve

from actors.engine import Engine
from engine.limits import EngineConfig
from engine.ports import Clock
from engine.store.port import Store
from psp.app import PSP_EXTENSION, PspFace, PspFaceSettings, create_psp_app
from psp.faults import PspFaultPlan
from simulator.fake_psp import FakePsp
from teach.chaos import Chaos
from teach.mount import App, Dispatcher, Mount
from teach.pages import Demo, create_pages_app
from teach.recording import RecordingGateway, recording_notifier
from teach.settlement import Settlements
from teach.timeline import Timeline
from teach.traffic import run_traffic
from web.http_gateway import open_http_gateway
from web.http_payout_gateway import open_http_payout_gateway
from web.notifier import webhook_notifier
from web.runtime import EXTENSION, Runtime, Wiring
from web.settings import WebSettings

#: The paths the API keeps (everything else but /psp is a page).
API_PATHS = ("/v1", "/docs", "/redocs", "/openapi.json", "/healthz", "/readyz", "/metrics")
PSP_PREFIX = "/psp"
#: A demo stops fast: open event streams end at once, other requests get this long.
DEMO_GRACEFUL_TIMEOUT_S = 3.0


@attrs.frozen
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    #: Background purchases per second (0: none).
    traffic_per_s: float = 0.0
    #: A scenario's PSP faults by name (psp/faults.py), drawn for every call and webhook.
    fault_plan: PspFaultPlan | None = None
    reports_dir: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@attrs.define(eq=False)
class DemoServer:
    """The three apps behind one dispatcher, and what the pages reach."""

    dispatcher: Dispatcher
    demo: Demo

    def runtime(self) -> Runtime | None:
        mount = self.dispatcher.mount("api")
        if mount.app is None or not mount.running:
            return None
        runtime: Runtime | None = getattr(mount.app, "extensions", {}).get(EXTENSION)
        return runtime

    def engine(self) -> Engine | None:
        runtime = self.runtime()
        return None if runtime is None else runtime.engine

    def psp(self) -> FakePsp | None:
        mount = self.dispatcher.mount("psp")
        face: PspFace | None = getattr(mount.app, "extensions", {}).get(PSP_EXTENSION)
        return None if face is None else face.psp


@asynccontextmanager
async def _opened(store: Store) -> AsyncIterator[Store]:
    yield store


def build(
    store: Store,
    engine_config: EngineConfig,
    options: DemoOptions,
    run_scenario: Callable[[str], Any] | None = None,
) -> DemoServer:
    base_url = options.base_url
    psp_url = base_url + PSP_PREFIX
    secret = "whsec_" + secrets.token_urlsafe(24)
    timeline = Timeline()
    chaos = Chaos(timeline, options.fault_plan)

    @asynccontextmanager
    async def gateway(clock: Clock) -> AsyncIterator[RecordingGateway]:
        async with open_http_gateway(psp_url) as inner:
            yield RecordingGateway(inner, timeline)

    def make_api() -> Any:
        from web.app import create_app

        wiring = Wiring(
            open_store=lambda: _opened(store),
            open_gateway=gateway,
            engine_config=engine_config,
            make_notifier=lambda s, c: recording_notifier(webhook_notifier(s, c), timeline),
            open_payout_gateway=lambda clock: open_http_payout_gateway(psp_url),
        )
        return create_app(
            wiring, WebSettings(psp_webhook_secrets=(secret,), public_base_url=base_url)
        )

    def make_psp() -> Any:
        return create_psp_app(
            PspFaceSettings(
                psp_url,
                f"{base_url}/v1/psp/webhooks",
                (secret,),
                configure=chaos.configure,
                webhook_plan=chaos.webhook_plan,
            )
        )

    def watch(app: Any) -> None:
        runtime: Runtime | None = app.extensions.get(EXTENSION)
        if runtime is not None:
            runtime.engine.system.observer = timeline.actor_handled

    dispatcher = Dispatcher(
        [
            Mount("psp", make_psp, prefix=PSP_PREFIX),
            Mount("api", make_api, claims=API_PATHS, on_started=watch),
            Mount("pages", lambda: cast(App, create_pages_app(server.demo))),
        ]
    )
    demo = Demo(
        store=store,
        engine=lambda: server.engine(),
        timeline=timeline,
        chaos=chaos,
        base_url=base_url,
        reports_dir=options.reports_dir,
        run_scenario=run_scenario,
    )
    server = DemoServer(dispatcher, demo)

    async def restart() -> None:
        await dispatcher.restart("api")

    chaos.restart_engine = restart
    chaos.settle = Settlements(timeline, server.psp, server.runtime).tonight
    return server


async def serve_demo(
    server: DemoServer,
    options: DemoOptions,
    *,
    stop: trio.Event,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `stop` is set; reports the base URL once every app has started."""
    config = HyperConfig()
    config.bind = [f"{options.host}:{options.port}"]
    config.graceful_timeout = DEMO_GRACEFUL_TIMEOUT_S
    config.accesslog = None

    async def trigger() -> None:
        await stop.wait()
        server.demo.timeline.closing.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: hypercorn_serve(
                server.dispatcher,  # type: ignore[arg-type]
                config,
                shutdown_trigger=trigger,
                task_status=task_status,
            )
        )
        task_status.started(options.base_url)
        async with trio.open_nursery() as traffic:
            if options.traffic_per_s > 0:
                traffic.start_soon(run_traffic, server, options.traffic_per_s)
            await stop.wait()
            traffic.cancel_scope.cancel()
