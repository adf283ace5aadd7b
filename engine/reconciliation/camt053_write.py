"""Writing ISO 20022 camt.053 bank statements: what the fake bank sends.

Why apart from the reader (camt053.py): the reader trusts nothing and the writer trusts its
lines but refuses a statement whose facts disagree with them, so it never writes a file its own
reader would refuse. Versions 001.02 to 001.08 differ only where the reader reads both shapes
(`Sts` as text or `Sts/Cd`, `TtlNetNtryAmt` or `TtlNetNtry/Amt`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from xml.etree import ElementTree

from engine.errors import InvalidInput
from engine.money import Money, format_amount
from engine.reconciliation.camt053 import (
    CLOSING_CODE,
    ENTRY_OF_KIND,
    NAMESPACE_PREFIX,
    SUPPORTED_VERSIONS,
)
from engine.reconciliation.line import SettlementLine, StatementFacts
from engine.reconciliation.text import BOM

_DAY_MS = 86_400_000
#: An account written as <IBAN>; any other id goes in <Othr><Id>.
IBAN_RE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_UNIX = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def write_camt053(
    statement: StatementFacts,
    lines: Sequence[SettlementLine],
    *,
    version: str = "001.08",
    message_id: str | None = None,
    newline: str = "\n",
    bom: bool = False,
) -> bytes:
    """A camt.053 statement of `lines` on `statement`'s account (what the fake bank sends).

    Refuses (InvalidInput) a statement whose facts disagree with its lines: the closing balance
    must be the opening plus the entries, and every line a fee-less deposit or payout in the
    account's currency. A line's reference is written as its transaction's EndToEndId.
    """
    if version not in SUPPORTED_VERSIONS:
        raise InvalidInput(f"camt.053 version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
    if newline not in ("\n", "\r\n"):
        raise InvalidInput(f"newline must be '\\n' or '\\r\\n', got {newline!r}")
    net = sum(line.net.minor for line in lines)
    if statement.opening.minor + net != statement.closing.minor:
        raise InvalidInput("the closing balance is not the opening balance plus the entries")
    if statement.entries_count != len(lines):
        raise InvalidInput(f"entries_count {statement.entries_count} but {len(lines)} lines")
    if not (statement.currency == statement.opening.currency == statement.closing.currency):
        raise InvalidInput("the statement's balances are not in its currency")
    bank_ids = [line.psp_reference for line in lines if line.psp_reference is not None]
    if len(set(bank_ids)) != len(bank_ids):
        raise InvalidInput("two entries share one bank reference (AcctSvcrRef)")
    if any(line.reference == "NOTPROVIDED" for line in lines):
        raise InvalidInput("'NOTPROVIDED' is camt.053's word for no EndToEndId, not a reference")
    new_style = version >= "001.03"
    created_ms = statement.created_at_ms if statement.created_at_ms is not None else 0
    document = ElementTree.Element("Document", {"xmlns": NAMESPACE_PREFIX + version})
    body = _sub(document, "BkToCstmrStmt")
    header = _sub(body, "GrpHdr")
    _sub(header, "MsgId", message_id or statement.statement_id)
    _sub(header, "CreDtTm", _format_datetime(created_ms))
    stmt = _sub(body, "Stmt")
    _sub(stmt, "Id", statement.statement_id)
    if statement.created_at_ms is not None:
        _sub(stmt, "CreDtTm", _format_datetime(statement.created_at_ms))
    account = _sub(stmt, "Acct")
    identification = _sub(account, "Id")
    if IBAN_RE.match(statement.account):
        _sub(identification, "IBAN", statement.account)
    else:
        _sub(_sub(identification, "Othr"), "Id", statement.account)
    _sub(account, "Ccy", statement.currency)
    for code, amount in (("OPBD", statement.opening), (CLOSING_CODE, statement.closing)):
        balance = _sub(stmt, "Bal")
        _sub(_sub(_sub(balance, "Tp"), "CdOrPrtry"), "Cd", code)
        _amount_elements(balance, amount)
        _sub(_sub(balance, "Dt"), "Dt", _format_date(created_ms))
    summary = _sub(_sub(stmt, "TxsSummry"), "TtlNtries")
    _sub(summary, "NbOfNtries", str(len(lines)))
    _sub(
        summary,
        "Sum",
        format_amount(sum(abs(line.net.minor) for line in lines), statement.currency),
    )
    net_parent = _sub(summary, "TtlNetNtry") if new_style else summary
    _sub(
        net_parent,
        "Amt" if new_style else "TtlNetNtryAmt",
        format_amount(abs(net), statement.currency),
    )
    _sub(net_parent, "CdtDbtInd", "DBIT" if net < 0 else "CRDT")
    for line in lines:
        _entry_element(stmt, line, statement.currency, version)
    ElementTree.indent(document)
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + ElementTree.tostring(document, encoding="unicode")
        + "\n"
    )
    return (BOM if bom else b"") + text.replace("\n", newline).encode("utf-8")


def _entry_element(
    stmt: ElementTree.Element, line: SettlementLine, currency: str, version: str
) -> None:
    key = ENTRY_OF_KIND.get(line.kind)
    if key is None:
        raise InvalidInput(f"a bank statement has no entry of kind {line.kind}")
    indicator, reversal = key
    if line.currency != currency:
        raise InvalidInput(f"a {line.currency} line on a {currency} statement")
    if not line.fee.is_zero() or line.order_reference is not None or line.batch is not None:
        raise InvalidInput("a bank statement entry has no fee, order reference or batch")
    if (line.net.minor < 0) != (indicator == "DBIT") and not line.net.is_zero():
        raise InvalidInput(f"a {line.kind} of {line.net} has the wrong sign")
    if line.net.is_zero() and indicator == "DBIT":
        raise InvalidInput(f"a zero {line.kind} cannot be written (it would read back as a credit)")
    entry = _sub(stmt, "Ntry")
    amount = _sub(entry, "Amt", format_amount(abs(line.net.minor), currency))
    amount.set("Ccy", currency)
    _sub(entry, "CdtDbtInd", indicator)
    if reversal:
        _sub(entry, "RvslInd", "true")
    status = _sub(entry, "Sts")
    if version >= "001.08":
        _sub(status, "Cd", "BOOK")
    else:
        status.text = "BOOK"
    _date_element(_sub(entry, "BookgDt"), line.booked_at_ms)
    if line.value_at_ms is not None:
        _date_element(_sub(entry, "ValDt"), line.value_at_ms)
    if line.psp_reference is not None:
        _sub(entry, "AcctSvcrRef", line.psp_reference)
    code = _sub(_sub(entry, "BkTxCd"), "Domn")
    _sub(code, "Cd", "PMNT")
    family = _sub(code, "Fmly")
    _sub(family, "Cd", "RCDT" if indicator == "CRDT" else "ICDT")
    _sub(family, "SubFmlyCd", "ESCT")
    details = _sub(_sub(entry, "NtryDtls"), "TxDtls")
    _sub(_sub(details, "Refs"), "EndToEndId", line.reference)


def _amount_elements(parent: ElementTree.Element, amount: Money) -> None:
    element = _sub(parent, "Amt", format_amount(abs(amount.minor), amount.currency))
    element.set("Ccy", amount.currency)
    _sub(parent, "CdtDbtInd", "DBIT" if amount.minor < 0 else "CRDT")


def _date_element(parent: ElementTree.Element, ms: int) -> None:
    if ms % _DAY_MS == 0:
        _sub(parent, "Dt", _format_date(ms))
    else:
        _sub(parent, "DtTm", _format_datetime(ms))


def _format_date(ms: int) -> str:
    return (_UNIX + dt.timedelta(milliseconds=ms)).strftime("%Y-%m-%d")


def _format_datetime(ms: int) -> str:
    moment = _UNIX + dt.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _sub(parent: ElementTree.Element, tag: str, text: str | None = None) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, tag)
    element.text = text
    return element
