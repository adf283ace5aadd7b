"""Reconciliation over HTTP (admin keys): upload a settlement file, read runs, work the items.

    POST /v1/reconciliations[?format=stripe|adyen|camt053][&dry_run=true]   the file as the body
    GET  /v1/reconciliations/{id}
    GET  /v1/reconciliation-items?status=open|resolved|manual_review|investigate|auto_fixed
    POST /v1/reconciliation-items/{id}/resolve                          {"note": "..."}

The upload's body is the file itself, byte for byte (any content type: text/csv,
application/xml, application/octet-stream), so a Stripe or Adyen report or a camt.053
statement goes up exactly as it came down. 201 with a new run; 200 with the earlier run when
the same file (SHA-256) was run before; 200 for a dry run (nothing written). An unusable file
is a 422 problem+json naming the line and column, and writes nothing. The run goes through the
engine's reconciler (actors/reconciler.py): what the file proves is settled once; a capture
we never heard of is handed to its order actor.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_request, document_response, tag

from actors.reconciler import Outcome, Reconciler
from engine.money import Money
from engine.reconciliation import Format, ParseError
from engine.reconciliation.run import RESOLUTION_NOTE_CHARS_MAX, ReconItem, ReconRun
from web.auth import guarded
from web.bodies import decode_as, raw_body
from web.problems import NOT_FOUND, VALIDATION_FAILED, ApiProblem, FieldError, Problem, ProblemType
from web.responses import cursor, json_response, page_limit
from web.runtime import current
from web.wire import Cursor, PageLimit

bp = Blueprint("reconciliations", __name__)

UPLOAD_PATH = "/v1/reconciliations"
RECONCILIATION_FILE_UNUSABLE = ProblemType(
    "reconciliation-file-unusable",
    422,
    "The settlement file cannot be read; nothing of it was taken",
)
_STATUSES = ("open", "resolved")
_CLASSES = ("auto_fixed", "manual_review", "investigate")

guarded_admin = guarded("admin")


class UploadQuery(msgspec.Struct):
    format: Literal["auto", "stripe", "adyen", "camt053"] | None = None
    dry_run: Literal["true", "false"] | None = None


#: PostgreSQL cannot store a NUL (web/boundary.py refuses it), so the schema says so too.
RunId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern="^[^\x00]+$")]


class ItemsQuery(msgspec.Struct):
    status: Literal["open", "resolved", "auto_fixed", "manual_review", "investigate"] | None = None
    run_id: RunId | None = None
    limit: PageLimit | None = None
    starting_after: Cursor | None = None


Note = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=RESOLUTION_NOTE_CHARS_MAX, pattern="^[^\x00]+$"),
]


class ResolveIn(msgspec.Struct, forbid_unknown_fields=True):
    note: Note


class AmountOut(msgspec.Struct):
    amount: str
    currency: str


class ItemOut(msgspec.Struct):
    id: str
    run_id: str
    item_class: str
    reason: str
    action: str
    reference: str
    line: int | None
    expected: AmountOut | None
    found: AmountOut | None
    detail: str
    status: str
    resolution_note: str | None
    created_at_ms: int
    resolved_at_ms: int | None
    object: Literal["reconciliation_item"] = "reconciliation_item"


class RunOut(msgspec.Struct):
    id: str
    file_sha256: str
    format: str
    batch: str | None
    status: str
    lines: int
    counts: dict[str, int]
    money: dict[str, dict[str, str]]
    created_at_ms: int
    #: This upload was a file run before: this is the earlier run, nothing was done.
    repeated: bool = False
    dry_run: bool = False
    items: list[ItemOut] = msgspec.field(default_factory=list)
    object: Literal["reconciliation"] = "reconciliation"


class ItemListOut(msgspec.Struct):
    data: list[ItemOut]
    has_more: bool
    object: Literal["list"] = "list"


def _amount(money: Money | None) -> AmountOut | None:
    return None if money is None else AmountOut(money.to_wire(), money.currency)


def item_out(item: ReconItem) -> ItemOut:
    return ItemOut(
        id=item.item_id,
        run_id=item.run_id,
        item_class=item.klass.value,
        reason=item.reason.value,
        action=item.action.value,
        reference=item.reference,
        line=item.line_number,
        expected=_amount(item.expected),
        found=_amount(item.found),
        detail=item.detail,
        status=item.status.value,
        resolution_note=item.resolution_note,
        created_at_ms=item.created_at_ms,
        resolved_at_ms=item.resolved_at_ms,
    )


def run_out(run: ReconRun, items: list[ReconItem], **flags: Any) -> RunOut:
    return RunOut(
        id=run.run_id,
        file_sha256=run.file_hash,
        format=run.format.value,
        batch=run.batch,
        status=run.status.value,
        lines=run.lines,
        counts=dict(run.counts),
        money={
            klass: {c: Money(m, c).to_wire() for c, m in per.items()}
            for klass, per in run.money.items()
        },
        created_at_ms=run.created_at_ms,
        items=[item_out(i) for i in items],
        **flags,
    )


@bp.post(UPLOAD_PATH)
@tag(["reconciliation"])
@document_querystring(UploadQuery)
@document_response(RunOut, 201)
@document_response(RunOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 413)
@document_response(Problem, 422)
@guarded_admin
async def upload() -> Response:
    """Reconcile the settlement file in the body (a Stripe or Adyen report, a camt.053)."""
    runtime = current()
    fmt_text = request.args.get("format", "auto")
    if fmt_text not in ("auto", "stripe", "adyen", "camt053"):
        detail = "format must be auto, stripe, adyen or camt053"
        raise ApiProblem(VALIDATION_FAILED, detail, [FieldError("/format", detail)])
    dry_text = request.args.get("dry_run", "false")
    if dry_text not in ("true", "false"):
        detail = "dry_run must be true or false"
        raise ApiProblem(VALIDATION_FAILED, detail, [FieldError("/dry_run", detail)])
    data = await raw_body()
    engine = runtime.engine
    reconciler = Reconciler(
        runtime.store,  # type: ignore[arg-type]
        runtime.clock,
        runtime.ids,
        tell=engine.system.tell,
    )
    fmt = None if fmt_text == "auto" else Format(fmt_text)
    try:
        outcome: Outcome = await reconciler.reconcile(data, fmt, dry_run=dry_text == "true")
    except ParseError as exc:
        raise ApiProblem(
            RECONCILIATION_FILE_UNUSABLE,
            str(exc),
            [FieldError(f"/line/{exc.line}/column/{exc.column}", exc.reason)],
        ) from None
    body = run_out(
        outcome.run, list(outcome.stored), repeated=outcome.repeated, dry_run=outcome.dry_run
    )
    created = not outcome.repeated and not outcome.dry_run
    headers = {"Location": f"{UPLOAD_PATH}/{outcome.run.run_id}"} if created else None
    return json_response(body, 201 if created else 200, headers)


@bp.get(f"{UPLOAD_PATH}/<run_id>")
@tag(["reconciliation"])
@document_response(RunOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 404)
@guarded_admin
async def get_run(run_id: str) -> Response:
    store: Any = current().store
    run = await store.get_recon_run(run_id)
    if run is None:
        raise ApiProblem(NOT_FOUND, f"no reconciliation {run_id}")
    items = await store.list_recon_items(1000, run_id=run_id)
    return json_response(run_out(run, items))


@bp.get("/v1/reconciliation-items")
@tag(["reconciliation"])
@document_querystring(ItemsQuery)
@document_response(ItemListOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 422)
@guarded_admin
async def list_items() -> Response:
    """Items oldest first; `status` is open/resolved or a class (manual_review, investigate,
    auto_fixed); page with `starting_after` (the last id seen)."""
    runtime = current()
    store: Any = runtime.store
    status = request.args.get("status")
    if status is not None and status not in (*_STATUSES, *_CLASSES):
        detail = f"status must be one of {', '.join((*_STATUSES, *_CLASSES))}"
        raise ApiProblem(VALIDATION_FAILED, detail, [FieldError("/status", detail)])
    limit = page_limit(runtime.settings)
    items = await store.list_recon_items(
        limit + 1,
        cursor(),
        run_id=request.args.get("run_id"),
        klass=status if status in _CLASSES else None,
        status=status if status in _STATUSES else None,
    )
    return json_response(
        ItemListOut(data=[item_out(i) for i in items[:limit]], has_more=len(items) > limit)
    )


@bp.post("/v1/reconciliation-items/<item_id>/resolve")
@tag(["reconciliation"])
@document_request(ResolveIn)
@document_response(ItemOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 404)
@document_response(Problem, 422)
@guarded_admin
async def resolve(item_id: str) -> Response:
    """A person closes an item with a note; resolving a resolved item changes nothing."""
    runtime = current()
    body = decode_as(await raw_body(), ResolveIn)
    store: Any = runtime.store
    item = await store.resolve_recon_item(item_id, body.note, runtime.clock.now_ms())
    if item is None:
        raise ApiProblem(NOT_FOUND, f"no reconciliation item {item_id}")
    return json_response(item_out(item))
