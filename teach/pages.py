"""The teaching pages: Shop, the live order status, Inside, Money, the chaos panel, the tour and
the scenario reports. Server-rendered (Jinja templates in teach/templates), with small
progressive JavaScript (teach/static/teach.js): every page works without it, and with it the
order status, the timeline and the panels update live. Every asset is served from here; the
Content-Security-Policy allows no other host.

The pages act through the engine's service (actors/service.py) and read committed state from
the store, as the API does; they are for learning and demos, so they need no API key, and
`payengine demo` binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
from quart import Response, abort, redirect, render_template, request
from quart_trio import QuartTrio

from actors.engine import Engine
from actors.service import CreateCheckout, OrderLine, PaymentView, Rejection
from engine.errors import InvalidInput
from engine.records import Refund
from engine.store.port import Store
from scenarios import shipped
from teach import views
from teach.chaos import FAULT_NAMES, FAULTS, Chaos
from teach.machines import svg
from teach.timeline import Timeline
from teach.tour import STEPS

CURRENCY = "EUR"
BUYER_ID = "buyer-browser"

#: (item id, seller, title, price in minor units): three sellers, one cart.
CATALOGUE = (
    ("mug", "ceramics-studio", "Stoneware mug", 1_800),
    ("bowl", "ceramics-studio", "Ramen bowl", 2_700),
    ("towel", "linen-works", "Linen tea towel", 1_250),
    ("apron", "linen-works", "Linen apron", 3_400),
    ("sencha", "tea-house", "Sencha, 100 g", 990),
    ("matcha", "tea-house", "Matcha, 30 g", 1_490),
)
ITEMS = {item_id: (seller, title, price) for item_id, seller, title, price in CATALOGUE}

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


#: The longest id a page accepts in its path (ours are far shorter).
PATH_ID_CHARS_MAX = 100


def _id_ok(value: object) -> bool:
    """Ids in paths are short printable ASCII: anything else names nothing (and never reaches
    the database, which refuses some characters outright)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= PATH_ID_CHARS_MAX
        and value.isascii()
        and value.isprintable()
    )


@attrs.define(eq=False)
class Demo:
    """What the pages reach: the store, the engine of the moment (None while it restarts),
    the timeline, the chaos panel, where the demo is served and the reports it wrote."""

    store: Store
    engine: Callable[[], Engine | None]
    timeline: Timeline
    chaos: Chaos
    base_url: str
    reports_dir: Path | None = None
    ledger_tails: views.LedgerTails = attrs.Factory(views.LedgerTails)
    #: Starts `payengine scenario run NAME --html` for the Reports page; None hides the form.
    run_scenario: Callable[[str], Awaitable[Path]] | None = None


def create_pages_app(demo: Demo) -> QuartTrio:
    app = QuartTrio(__name__, template_folder="templates", static_folder="static")

    @app.before_request
    async def same_origin() -> None:
        """A POST from another site's page (a forged form) is refused: the pages need no key,
        so the browser's Origin is what tells the demo's own forms apart."""
        origin = request.headers.get("Origin")
        if request.method == "POST" and origin and urlsplit(origin).netloc != request.host:
            abort(403)
        for value in request.view_args.values() if request.view_args else ():
            if not _id_ok(value):
                abort(404)

    @app.after_request
    async def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    def engine() -> Engine:
        found = demo.engine()
        if found is None:
            abort(503)
        return found

    # --- Shop ----------------------------------------------------------------------------------
    @app.get("/")
    async def shop() -> str:
        sellers: dict[str, list[dict[str, Any]]] = {}
        for item_id, seller, title, price in CATALOGUE:
            sellers.setdefault(seller, []).append(
                {"id": item_id, "title": title, "price": views.money(price, CURRENCY)}
            )
        return await render_template("shop.html", page="shop", sellers=sellers, error=None)

    @app.post("/shop/checkout")
    async def checkout() -> Any:
        form = await request.form
        chosen = [i for i in form.getlist("item") if i in ITEMS]
        if not chosen:
            return await _error("Pick at least one item.", 422)
        per_seller: dict[str, int] = {}
        for item_id in chosen:
            seller, _, price = ITEMS[item_id]
            per_seller[seller] = per_seller.get(seller, 0) + price
        checkout_id = "shop-" + secrets.token_hex(8)
        command = CreateCheckout(
            checkout_id=checkout_id,
            buyer_id=BUYER_ID,
            currency=CURRENCY,
            orders=tuple(OrderLine(s, a) for s, a in sorted(per_seller.items())),
            return_url=f"{demo.base_url}/shop/return/{checkout_id}",
        )
        try:
            view = await engine().service.create_checkout(command)
        except InvalidInput as exc:
            return await _error(str(exc), 422)
        if not isinstance(view, PaymentView):
            return await _error(f"The checkout was refused: {view.detail}", 409)
        if view.payment.hosted_url is None:
            return redirect(f"/orders/{view.payment.payment_id}", 303)
        return redirect(view.payment.hosted_url, 303)

    @app.get("/shop/return/<checkout_id>")
    async def returned(checkout_id: str) -> Any:
        async with demo.store.unit_of_work() as uow:
            found = await uow.get_payment_by_checkout(checkout_id)
        if found is None:
            abort(404)
        return redirect(f"/orders/{found.payment_id}?via=redirect", 303)

    async def _error(message: str, status: int) -> tuple[str, int]:
        return await render_template("error.html", page="", message=message), status

    # --- the order status ----------------------------------------------------------------------
    @app.get("/orders/<payment_id>")
    async def order_page(payment_id: str) -> str:
        found = await views.payment(demo.store, payment_id)
        if found is None:
            abort(404)
        via = request.args.get("via") == "redirect"
        return await render_template("order.html", page="shop", p=found, via_redirect=via)

    @app.get("/orders/<payment_id>/live")
    async def order_live(payment_id: str) -> str:
        found = await views.payment(demo.store, payment_id)
        if found is None:
            abort(404)
        return await render_template("order_live.html", p=found)

    @app.post("/orders/<payment_id>/refund")
    async def refund(payment_id: str) -> Any:
        """The seller refunds what is left of one order (the API's POST /v1/refunds)."""
        form = await request.form
        order_id = form.get("order_id", "")
        order = await demo.store.get_order(order_id) if _id_ok(order_id) else None
        if order is None or order.payment_id != payment_id:
            abort(404)
        made = await engine().service.create_refund(
            order.order_id, None, "refunded from the demo's order page"
        )
        if not isinstance(made, Refund):
            return await _error(f"The refund was refused: {made.detail}", 409)
        return redirect(f"/orders/{payment_id}", 303)

    # --- Inside --------------------------------------------------------------------------------
    @app.get("/inside")
    async def inside() -> str:
        data = await views.inside_page(demo.store, demo.engine())
        return await render_template(
            "inside.html",
            page="inside",
            d=data,
            events=list(demo.timeline.events)[-60:][::-1],
            faults=FAULTS,
            armed=demo.chaos.armed,
        )

    @app.get("/inside/live")
    async def inside_live() -> str:
        data = await views.inside_page(demo.store, demo.engine())
        return await render_template("inside_live.html", d=data)

    @app.get("/inside/events")
    async def events() -> Response:
        last = request.headers.get("Last-Event-ID", "")
        stream = demo.timeline.stream(int(last) if last.isdigit() else None)
        response = Response(stream, content_type="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
        response.timeout = None
        return response

    @app.get("/machines")
    async def machines() -> str:
        from engine.states import TRANSITIONS

        drawn = [(m.__name__, svg(m)) for m in TRANSITIONS]
        return await render_template("machines.html", page="inside", drawn=drawn)

    # --- chaos ---------------------------------------------------------------------------------
    @app.post("/chaos/<name>")
    async def chaos(name: str) -> Any:
        if name not in FAULT_NAMES:
            abort(404)
        said = await demo.chaos.press(name)
        if "application/json" in request.headers.get("Accept", ""):
            return {"ok": True, "said": said, "armed": demo.chaos.armed}
        return redirect("/inside", 303)

    # --- Money ---------------------------------------------------------------------------------
    @app.get("/money")
    async def money() -> str:
        data = await views.money_page(demo.store, demo.ledger_tails)
        return await render_template("money.html", page="money", m=data)

    @app.get("/money/live")
    async def money_live() -> str:
        data = await views.money_page(demo.store, demo.ledger_tails)
        return await render_template("money_live.html", m=data)

    @app.post("/money/payout")
    async def payout() -> Any:
        """Pay a seller its whole available balance in one currency (the API's POST
        /v1/payouts): reserved now, sent to the demo's PSP over HTTP, posted on its webhook.
        The form's one-time key makes a double click one payout."""
        form = await request.form
        merchant_id, currency = form.get("merchant_id", ""), form.get("currency", "")
        key = form.get("key", "")
        if not (_id_ok(merchant_id) and _id_ok(key) and _id_ok(currency)):
            return await _error("A payout names a seller, a currency and a key.", 400)
        try:
            made = await engine().payouts.create_payout(
                merchant_id, currency, None, idempotency_key=f"money-page:{key}"
            )
        except InvalidInput as exc:  # an unknown currency, among others
            return await _error(f"The payout was refused: {exc}", 400)
        if isinstance(made, Rejection):
            return await _error(f"The payout was refused: {made.detail}", 409)
        return redirect("/money", 303)

    # --- the tour and the reports --------------------------------------------------------------
    @app.get("/tour")
    async def tour() -> str:
        return await render_template("tour.html", page="tour", steps=STEPS)

    @app.get("/reports")
    async def reports() -> str:
        found = []
        if demo.reports_dir is not None and demo.reports_dir.is_dir():
            found = sorted(p.name for p in demo.reports_dir.glob("*.html"))[::-1]
        return await render_template(
            "reports.html", page="reports", reports=found, can_run=demo.run_scenario is not None
        )

    @app.get("/reports/<name>")
    async def report(name: str) -> Response:
        if demo.reports_dir is None or "/" in name or not name.endswith(".html"):
            abort(404)
        path = demo.reports_dir / name
        if not path.is_file():
            abort(404)
        return Response(path.read_text(), content_type="text/html")

    @app.post("/reports")
    async def run_report() -> Any:
        if demo.run_scenario is None:
            abort(404)
        form = await request.form
        name = form.get("scenario", "")
        if name not in {s.name for s in shipped()}:
            return await _error(f"No shipped scenario is called {name[:40]!r}.", 422)
        try:
            path = await demo.run_scenario(name)
        except ValueError as exc:
            return await _error(str(exc), 422)
        return redirect(f"/reports/{path.name}", 303)

    return app
