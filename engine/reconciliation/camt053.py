"""ISO 20022 camt.053 bank statements (BankToCustomerStatement, versions 001.02 to 001.08).

Why: the bank, not the PSP, says what money arrived (the PSP's deposits of its payouts) and
what left (the payouts to sellers). A statement lists booked entries (`Ntry`) between an opening
and a closing balance of one account. Elements are read by local name, whatever the namespace
or prefix, so one reader serves every version; the two shapes that differ between versions are
both read (`Sts` as text up to 001.07 and as `Sts/Cd` in 001.08; `TtlNetNtryAmt` in 001.02 and
`TtlNetNtry/Amt` later).

What the statement asserts about itself is checked: opening balance + entries == closing
balance, and the transaction summary (`TxsSummry`: number of entries, their sum, the net, the
credit and debit subtotals) where it is given; an entry in another currency than its account,
or one whose status is not booked, is refused. Each entry becomes one line: a credit is a
deposit, a debit a payout (a reversal flips it), gross = net, fee zero.
"""

from __future__ import annotations

import datetime as dt
import re

from engine.errors import InvalidInput
from engine.money import Money, format_amount, parse_amount
from engine.reconciliation.limits import LINES_MAX
from engine.reconciliation.line import (
    REFERENCE_LENGTH_MAX,
    Format,
    LineKind,
    Settlement,
    SettlementLine,
    StatementFacts,
    settlement_of,
)
from engine.reconciliation.text import epoch_ms
from engine.reconciliation.xmltree import Node, parse_xml

SUPPORTED_VERSIONS = tuple(f"001.{minor:02d}" for minor in range(2, 9))
NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:camt.053."
_VERSION_RE = re.compile(r"camt\.053\.(\d{3}\.\d{2})$")
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})?$"
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_OPENING_CODES = ("OPBD", "PRCD")
CLOSING_CODE = "CLBD"
#: (credit/debit, reversal) -> kind: what an entry is from the platform's side.
_KINDS = {
    ("CRDT", False): LineKind.DEPOSIT,
    ("DBIT", False): LineKind.PAYOUT,
    ("CRDT", True): LineKind.PAYOUT_REVERSAL,
    ("DBIT", True): LineKind.DEPOSIT_REVERSAL,
}
ENTRY_OF_KIND = {kind: key for key, kind in _KINDS.items()}


def parse_camt053(data: bytes) -> Settlement:
    """Read a camt.053 statement file; raises ParseError locating the first problem."""
    root = parse_xml(data)
    if root.tag != "Document":
        raise root.error("the root element of a camt.053 file is <Document>")
    body = root.get("BkToCstmrStmt")
    match = _VERSION_RE.search(root.namespace)
    statements = body.all("Stmt")
    if not statements:
        raise body.error("lacks <Stmt>")
    lines: list[SettlementLine] = []
    facts: list[StatementFacts] = []
    for statement in statements:
        facts.append(_statement(statement, lines))
    end_line = statements[-1].line
    return settlement_of(
        Format.CAMT053,
        lines,
        end_line=end_line,
        statements=tuple(facts),
        version=match[1] if match else None,
    )


def _statement(statement: Node, lines: list[SettlementLine]) -> StatementFacts:
    statement_id = _reference(statement.get("Id"))
    identification = statement.get("Acct", "Id")
    account_node = identification.find("IBAN") or identification.find("Othr", "Id")
    if account_node is None:
        raise identification.error("lacks <IBAN> or <Othr><Id>")
    account = _reference(account_node)
    created = statement.find("CreDtTm")
    opening, closing, closing_node = _balances(statement)
    currency = opening.currency
    account_currency = statement.find("Acct", "Ccy")
    if account_currency is not None and account_currency.text != currency:
        raise account_currency.error(
            f"the account is in {account_currency.text!r} but its balances are in {currency}"
        )
    seen: dict[str, int] = {}
    entries = statement.all("Ntry")
    sums = _Sums()
    for entry in entries:
        if len(lines) >= LINES_MAX:
            raise entry.error(f"the file has more than {LINES_MAX} entries")
        line = _entry(entry, currency)
        if line.psp_reference is not None:
            if line.psp_reference in seen:
                raise entry.get("AcctSvcrRef").error(
                    f"{line.psp_reference!r} already appeared on line {seen[line.psp_reference]}"
                )
            seen[line.psp_reference] = entry.line
        lines.append(line)
        sums.add(line.net.minor)
    if opening.minor + sums.net != closing.minor:
        raise closing_node.error(
            f"opening balance {opening} + entries {_show(sums.net, currency)} = "
            f"{_show(opening.minor + sums.net, currency)}, but the closing balance is {closing}"
        )
    _check_summary(statement, sums, currency)
    return StatementFacts(
        statement_id=statement_id,
        account=account,
        currency=currency,
        opening=opening,
        closing=closing,
        created_at_ms=None if created is None else _datetime_ms(created),
        entries_count=len(entries),
    )


class _Sums:
    """What a statement's transaction summary may assert, summed from its entries."""

    def __init__(self) -> None:
        self.count = 0
        self.net = 0
        self.credit_count = 0
        self.credit = 0
        self.debit_count = 0
        self.debit = 0

    def add(self, signed_minor: int) -> None:
        self.count += 1
        self.net += signed_minor
        if signed_minor >= 0:
            self.credit_count += 1
            self.credit += signed_minor
        else:
            self.debit_count += 1
            self.debit -= signed_minor


def _show(minor: int, currency: str) -> str:
    try:
        return f"{format_amount(minor, currency)} {currency}"
    except InvalidInput:
        return f"{minor} minor units of {currency}"


def _check_summary(statement: Node, sums: _Sums, currency: str) -> None:
    summary = statement.find("TxsSummry")
    if summary is None:
        return
    checks = (
        (("TtlNtries", "NbOfNtries"), sums.count, None),
        (("TtlNtries", "Sum"), sums.credit + sums.debit, currency),
        (("TtlCdtNtries", "NbOfNtries"), sums.credit_count, None),
        (("TtlCdtNtries", "Sum"), sums.credit, currency),
        (("TtlDbtNtries", "NbOfNtries"), sums.debit_count, None),
        (("TtlDbtNtries", "Sum"), sums.debit, currency),
    )
    for path, actual, amount_currency in checks:
        node = summary.find(*path)
        if node is None:
            continue
        if amount_currency is None:
            stated = _count(node)
            shown = str(actual)
        else:
            stated = _decimal(node, amount_currency).minor
            shown = _show(actual, amount_currency)
        if stated != actual:
            raise node.error(f"says {node.text} but the entries give {shown}")
    net = summary.find("TtlNtries", "TtlNetNtry")  # 001.03 and later
    net_amount = net.find("Amt") if net is not None else summary.find("TtlNtries", "TtlNetNtryAmt")
    if net_amount is not None:
        indicator_parent = net if net is not None else summary.get("TtlNtries")
        stated = _decimal(net_amount, currency).minor
        if _indicator(indicator_parent) == "DBIT":
            stated = -stated
        if stated != sums.net:
            raise net_amount.error(
                f"says a net of {_show(stated, currency)} but the entries give "
                f"{_show(sums.net, currency)}"
            )


def _balances(statement: Node) -> tuple[Money, Money, Node]:
    found: dict[str, tuple[Money, Node]] = {}
    for balance in statement.all("Bal"):
        kind = balance.get("Tp", "CdOrPrtry")
        code_node = kind.find("Cd") or kind.find("Prtry")
        if code_node is None:
            raise kind.error("lacks <Cd>")
        code = code_node.text
        if code not in (*_OPENING_CODES, CLOSING_CODE):
            continue  # available and interim balances assert nothing about the entries
        if code in found:
            raise balance.error(f"a second {code} balance")
        amount = _amount(balance.get("Amt"), allow_zero=True)
        if _indicator(balance) == "DBIT":
            amount = -amount
        found[code] = (amount, balance)
    opening_code = next((code for code in _OPENING_CODES if code in found), None)
    if opening_code is None:
        raise statement.error("lacks an opening balance (<Bal> of type OPBD or PRCD)")
    if CLOSING_CODE not in found:
        raise statement.error("lacks a closing balance (<Bal> of type CLBD)")
    opening, _ = found[opening_code]
    closing, closing_node = found[CLOSING_CODE]
    if closing.currency != opening.currency:
        raise closing_node.error(
            f"in {closing.currency}, the opening balance in {opening.currency}"
        )
    return opening, closing, closing_node


def _entry(entry: Node, currency: str) -> SettlementLine:
    amount_node = entry.get("Amt")
    amount = _amount(amount_node, allow_zero=True)
    if amount.currency != currency:
        raise amount_node.error(f"an entry in {amount.currency} on an account in {currency}")
    indicator = _indicator(entry)
    reversal_node = entry.find("RvslInd")
    reversal = False
    if reversal_node is not None:
        if reversal_node.text not in _BOOLEANS:
            raise reversal_node.error(f"{reversal_node.text!r} is not true or false")
        reversal = _BOOLEANS[reversal_node.text]
    status_node = entry.get("Sts")
    status = status_node.find("Cd") or status_node.find("Prtry") or status_node
    if status.text != "BOOK":
        raise status.error(f"status {status.text!r}: a statement lists booked (BOOK) entries")
    signed = amount if indicator == "CRDT" else -amount
    details = [tx for block in entry.all("NtryDtls") for tx in block.all("TxDtls")]
    reference: str | None = None
    if len(details) == 1:
        end_to_end = details[0].find("Refs", "EndToEndId")
        if end_to_end is not None and end_to_end.text != "NOTPROVIDED":
            reference = _reference(end_to_end)
    if reference is None:
        entry_reference = entry.find("NtryRef")
        if entry_reference is None:
            raise entry.error("lacks a reference: <NtryRef>, or one transaction's <EndToEndId>")
        reference = _reference(entry_reference)
    service_reference = entry.find("AcctSvcrRef")
    value_date = entry.find("ValDt")
    return SettlementLine(
        source=Format.CAMT053,
        line_number=entry.line,
        kind=_KINDS[(indicator, reversal)],
        reference=reference,
        psp_reference=None if service_reference is None else _reference(service_reference),
        order_reference=None,
        gross=signed,
        fee=Money.zero(currency),
        net=signed,
        batch=None,
        booked_at_ms=_date_ms(entry.get("BookgDt")),
        value_at_ms=None if value_date is None else _date_ms(value_date),
    )


def _indicator(parent: Node) -> str:
    node = parent.get("CdtDbtInd")
    if node.text not in ("CRDT", "DBIT"):
        raise node.error(f"{node.text!r} is neither CRDT nor DBIT")
    return node.text


def _amount(node: Node, *, allow_zero: bool) -> Money:
    currency = node.attributes.get("Ccy")
    if currency is None:
        raise node.error("lacks its Ccy attribute")
    return _decimal(node, currency, allow_zero=allow_zero)


def _decimal(node: Node, currency: str, *, allow_zero: bool = True) -> Money:
    try:
        return parse_amount(node.text, currency, allow_zero=allow_zero)
    except InvalidInput as exc:
        raise node.error(str(exc)) from None


def _count(node: Node) -> int:
    if not node.text.isascii() or not node.text.isdigit() or len(node.text) > 15:
        raise node.error(f"{node.text!r} is not a count")
    return int(node.text)


def _reference(node: Node) -> str:
    value = node.text
    if not value:
        raise node.error("is empty")
    if _CONTROL_RE.search(value):
        raise node.error("holds a control character (a line break or tab?)")
    if len(value) > REFERENCE_LENGTH_MAX:
        raise node.error(f"is longer than {REFERENCE_LENGTH_MAX} characters")
    return value


def _date_ms(parent: Node) -> int:
    """A `Dt` (midnight UTC) or `DtTm` child of `parent`, as epoch ms."""
    date = parent.find("Dt")
    if date is not None:
        match = _DATE_RE.match(date.text)
        if match is None:
            raise date.error(f"{date.text!r} is not a date YYYY-MM-DD")
        try:
            day = dt.datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=dt.UTC)
            return epoch_ms(day)
        except (ValueError, OverflowError) as exc:
            raise date.error(f"{date.text!r} is not a valid date ({exc})") from None
    return _datetime_ms(parent.get("DtTm"))


def _datetime_ms(node: Node) -> int:
    """An ISO date and time; one without an offset is read as UTC (it names no zone)."""
    match = _DATETIME_RE.match(node.text)
    if match is None:
        raise node.error(f"{node.text!r} is not a date and time YYYY-MM-DDThh:mm:ss")
    offset_text = match[8]
    try:
        offset = dt.timedelta(0)
        if offset_text and offset_text != "Z":
            hours, minutes = int(offset_text[1:3]), int(offset_text[4:6])
            offset = dt.timedelta(hours=hours, minutes=minutes)
            if offset_text[0] == "-":
                offset = -offset
        fraction = (match[7] or "").ljust(3, "0")[:3]
        year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
        moment = dt.datetime(
            year, month, day, hour, minute, second, int(fraction) * 1000, dt.timezone(offset)
        )
        return epoch_ms(moment)
    except (ValueError, OverflowError) as exc:
        raise node.error(f"{node.text!r} is not a valid date and time ({exc})") from None
