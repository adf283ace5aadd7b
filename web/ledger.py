"""Read-only operator views (admin keys): ledger transactions, account entries, the trial
balance, and merchant balances (also readable by the merchant's own key)."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_querystring, document_response, tag

from engine.errors import InvalidInput
from engine.ledger import account_type
from web.auth import guarded
from web.problems import NOT_FOUND, VALIDATION_FAILED, ApiProblem, FieldError, Problem
from web.responses import cursor, json_response, page_limit
from web.runtime import current
from web.wire import EntriesQuery, check_merchant_id
from web.wire_ledger import (
    AccountEntriesOut,
    BalanceOut,
    TransactionOut,
    TrialBalanceOut,
    account_entry_out,
    balance_out,
    parse_entry_id,
    transaction_out,
    trial_balance_out,
)

bp = Blueprint("ledger", __name__)


@bp.get("/v1/merchants/<merchant_id>/balance")
@tag(["balances"])
@document_response(BalanceOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 422)
@guarded("admin", "merchant")
async def merchant_balance(merchant_id: str) -> Response:
    """Available and reserved per currency; a merchant key reads only its own."""
    check_merchant_id(merchant_id)
    balances = await current().store.list_balances(merchant_id)
    return json_response(balance_out(merchant_id, balances))


@bp.get("/v1/ledger/transactions/<txn_id>")
@tag(["ledger"])
@document_response(TransactionOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 404)
@guarded("admin")
async def ledger_transaction(txn_id: str) -> Response:
    txn = await current().store.get_transaction(txn_id)
    if txn is None:
        raise ApiProblem(NOT_FOUND, f"no ledger transaction {txn_id}")
    return json_response(transaction_out(txn))


@bp.get("/v1/ledger/accounts/<account>/entries")
@tag(["ledger"])
@document_querystring(EntriesQuery)
@document_response(AccountEntriesOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@document_response(Problem, 422)
@guarded("admin")
async def account_entries(account: str) -> Response:
    """Entries of one account, oldest transaction first; page with `starting_after`."""
    runtime = current()
    try:
        account_type(account)
    except (InvalidInput, ValueError) as exc:
        raise ApiProblem(VALIDATION_FAILED, str(exc), [FieldError("/account", str(exc))]) from None
    limit = page_limit(runtime.settings)
    after = None
    text = cursor()
    if text is not None:
        after = parse_entry_id(text)
        if after is None:
            detail = "starting_after must be an entry id (<transaction_id>:<entry_no>)"
            raise ApiProblem(VALIDATION_FAILED, detail, [FieldError("/starting_after", detail)])
    rows = await runtime.store.list_entries(account, limit + 1, after)
    return json_response(
        AccountEntriesOut(
            account=account,
            data=[account_entry_out(*row) for row in rows[:limit]],
            has_more=len(rows) > limit,
        )
    )


@bp.get("/v1/ledger/trial-balance")
@tag(["ledger"])
@document_response(TrialBalanceOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 403)
@guarded("admin")
async def trial_balance() -> Response:
    """Every (account, currency) sum; the books balance when each currency totals zero."""
    return json_response(trial_balance_out(await current().store.trial_balance()))
