"""Reconciliation's foundation: the settlement files PSPs and banks send, read and written.

Why: every night the PSP and the bank say what money moved; reconciliation matches that against
the ledger. This package reads the real formats (Stripe's itemized reports, Adyen's Settlement
Details Report, ISO 20022 camt.053 statements) into one canonical `SettlementLine`, and writes
them (for the fake PSP and the fake bank). It is pure: bytes in, values out, no I/O, no clock.

    detect(data) -> Format                   # or raises UnsupportedFormat
    parse(data, format=None) -> Settlement   # or raises ParseError(line, column, reason)
    write_stripe / write_adyen / write_camt053

A file is taken whole or not at all: anything that could change what it says is refused with
the line, the column and the reason of the first problem, and a file of no known format says
"unsupported format" rather than "damaged". Matching and repair build on this (issue 12).
"""

from __future__ import annotations

import re

from engine.reconciliation.adyen import parse_adyen, write_adyen
from engine.reconciliation.camt053 import parse_camt053
from engine.reconciliation.camt053_write import write_camt053
from engine.reconciliation.line import (
    CurrencyTotals,
    Format,
    LineKind,
    ParseError,
    Settlement,
    SettlementLine,
    StatementFacts,
    UnsupportedFormat,
)
from engine.reconciliation.stripe import parse_stripe, write_stripe
from engine.reconciliation.text import BOM, first_record

__all__ = [
    "CurrencyTotals",
    "Format",
    "LineKind",
    "ParseError",
    "Settlement",
    "SettlementLine",
    "StatementFacts",
    "UnsupportedFormat",
    "detect",
    "parse",
    "write_adyen",
    "write_camt053",
    "write_stripe",
]

#: How much of a file detection looks at.
DETECT_HEAD_BYTES_MAX = 65_536
_STATEMENT_RE = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?BkToCstmrStmt[\s/>]")
_STRIPE_COLUMNS = {"balance_transaction_id", "reporting_category"}
_ADYEN_COLUMNS = {"psp reference", "merchant reference", "type"}
_PARSERS = {Format.STRIPE: parse_stripe, Format.ADYEN: parse_adyen, Format.CAMT053: parse_camt053}


def detect(data: bytes) -> Format:
    """The format of a settlement file, from its start; raises UnsupportedFormat otherwise.

    A camt.053 file is XML whose document holds a `BkToCstmrStmt`; a Stripe report is CSV whose
    header names `balance_transaction_id` and `reporting_category`; an Adyen report is CSV whose
    header names `Psp Reference`, `Merchant Reference` and `Type`.
    """
    head = data[:DETECT_HEAD_BYTES_MAX]
    if head.startswith(BOM):
        head = head[len(BOM) :]
    text = head.decode("utf-8", errors="replace")
    if not text.strip():
        raise UnsupportedFormat("the file is empty")
    if text.lstrip().startswith("<"):
        if _STATEMENT_RE.search(text):
            return Format.CAMT053
        raise UnsupportedFormat("an XML document that is not a camt.053 bank statement")
    header = set(first_record(text) or ())
    if header >= _STRIPE_COLUMNS:
        return Format.STRIPE
    if header >= _ADYEN_COLUMNS:
        return Format.ADYEN
    raise UnsupportedFormat(
        "neither a Stripe or Adyen report (CSV with their header) nor a camt.053 statement"
    )


def parse(data: bytes, format: Format | None = None) -> Settlement:
    """The settlement in `data`, its format detected unless given; raises ParseError."""
    return _PARSERS[format or detect(data)](data)
