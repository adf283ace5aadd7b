"""Write the settlement-file fixtures of tests/unit/test_recon_fixtures.py into recon/ beside it.

Why generated: no third-party sample file is committed. Each fixture is written by payengine's
own writers (engine/reconciliation) from lines chosen to cover what the published column specs
describe: captures with fees, refunds, chargebacks and their reversals, fees, payouts, a
zero-decimal (JPY) and a three-decimal (BHD) currency, and the byte-order-mark and CRLF forms
real files come in. The test checks the committed files are exactly what this script writes.

    .venv/bin/python tests/unit/data/make_recon_fixtures.py
"""

from __future__ import annotations

from pathlib import Path

from engine.money import Money
from engine.reconciliation import (
    Format,
    LineKind,
    SettlementLine,
    StatementFacts,
    write_adyen,
    write_camt053,
    write_stripe,
)

HERE = Path(__file__).resolve().parent / "recon"
JAN_1_MS = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def line(
    source: Format,
    kind: LineKind,
    reference: str,
    psp: str | None,
    order: str | None,
    gross: int,
    fee: int,
    currency: str,
    *,
    batch: str | None = None,
    at_h: int = 0,
    value_h: int | None = None,
) -> SettlementLine:
    return SettlementLine(
        source=source,
        line_number=1,
        kind=kind,
        reference=reference,
        psp_reference=psp,
        order_reference=order,
        gross=Money(gross, currency),
        fee=Money(fee, currency),
        net=Money(gross - fee, currency),
        batch=batch,
        booked_at_ms=JAN_1_MS + at_h * HOUR_MS,
        value_at_ms=None if value_h is None else JAN_1_MS + value_h * HOUR_MS,
    )


S, A, C = Format.STRIPE, Format.ADYEN, Format.CAMT053
K = LineKind
PO_1 = {"batch": "po_1", "value_h": 48}  # every row of Stripe payout po_1, available on Jan 3
B41, B42 = {"batch": "41"}, {"batch": "42"}  # Adyen settlement batches
CB, CBR = "8835000000000022", "8845000000000023"  # Adyen's references of a dispute and reversal

STRIPE_USD = [
    line(S, K.CAPTURE, "ord_01", "txn_01", "ord_01", 2500, 103, "USD", at_h=1, **PO_1),
    line(S, K.CAPTURE, "ord_02", "txn_02", "ord_02", 10000, 320, "USD", at_h=2, **PO_1),
    line(S, K.REFUND, "re_01", "txn_03", "ord_01", -50, 0, "USD", at_h=3, **PO_1),
    line(S, K.CHARGEBACK, "dp_01", "txn_04", "ord_02", -10000, 1500, "USD", at_h=4, **PO_1),
    line(S, K.CHARGEBACK_REVERSAL, "dp_01", "txn_05", "ord_02", 10000, -1500, "USD", at_h=5, **PO_1),  # noqa: E501
    line(S, K.FEE, "Radar fees", "txn_06", None, -5, 0, "USD", at_h=6, **PO_1),
    line(S, K.PAYOUT, "po_0", "txn_07", None, -4000, 0, "USD", at_h=7, value_h=7),
]  # fmt: skip
STRIPE_JPY = [
    line(S, K.CAPTURE, "ord_10", "txn_10", "ord_10", 1500, 73, "JPY", batch="po_2", at_h=9),
    line(S, K.REFUND, "re_10", "txn_11", "ord_10", -500, 0, "JPY", batch="po_2", at_h=10),
]  # fmt: skip
ADYEN_EUR = [
    line(A, K.CAPTURE, "ord_20", "8815000000000020", "ord_20", 10000, 240, "EUR", **B41, at_h=1),
    line(A, K.REFUND, "rf_20", "8825000000000021", "ord_20", -2000, 12, "EUR", **B41, at_h=2),
    line(A, K.CHARGEBACK, CB, CB, "ord_21", -5000, 1500, "EUR", **B41, at_h=3),
    line(A, K.CHARGEBACK_REVERSAL, CBR, CBR, "ord_21", 5000, 0, "EUR", **B41, at_h=4),
    line(A, K.FEE, "Monthly fee", None, None, -200, 0, "EUR", **B41, at_h=5),
    line(A, K.PAYOUT, "41", None, None, -6548, 0, "EUR", **B41, at_h=24),
]  # fmt: skip
ADYEN_BHD = [
    line(A, K.CAPTURE, "ord_30", "8815000000000030", "ord_30", 10500, 315, "BHD", **B42, at_h=1),
    line(A, K.REFUND, "rf_30", "8825000000000031", "ord_30", -1250, 0, "BHD", **B42, at_h=2),
]  # fmt: skip
CAMT_EUR = [
    line(C, K.DEPOSIT, "41", "BANK-0001", None, 6548, 0, "EUR", at_h=36, value_h=36),
    line(C, K.PAYOUT, "pay_01", "BANK-0002", None, -3000, 0, "EUR", at_h=37),
    line(C, K.PAYOUT, "pay_02", "BANK-0003", None, -2500, 0, "EUR", at_h=37),
    line(C, K.PAYOUT_REVERSAL, "pay_02", "BANK-0004", None, 2500, 0, "EUR", at_h=48),
]  # fmt: skip
CAMT_EUR_FACTS = StatementFacts(
    "STMT-EUR-0002", "DE89370400440532013000", "EUR", Money(100_000, "EUR"),
    Money(103_548, "EUR"), JAN_1_MS + 2 * DAY_MS, 4,
)  # fmt: skip
CAMT_JPY = [
    line(C, K.DEPOSIT, "po_2", "JP-0001", None, 927, 0, "JPY", at_h=48),
    line(C, K.PAYOUT, "pay_10", None, None, -900, 0, "JPY", at_h=49),
]  # fmt: skip
CAMT_JPY_FACTS = StatementFacts(
    "STMT-JPY-0002", "JP-ACCT-778899", "JPY", Money(5_000, "JPY"), Money(5_027, "JPY"),
    None, 2,
)  # fmt: skip


def fixtures() -> dict[str, bytes]:
    """File name -> content, for every fixture."""
    return {
        "stripe_usd.csv": write_stripe(STRIPE_USD),
        # BOM, CRLF and no final newline, as a spreadsheet export leaves a file
        "stripe_usd_bom_crlf.csv": write_stripe(STRIPE_USD, newline="\r\n", bom=True).removesuffix(
            b"\r\n"
        ),
        "stripe_jpy.csv": write_stripe(STRIPE_JPY, trim_decimals=False),
        "adyen_eur.csv": write_adyen(ADYEN_EUR),
        "adyen_bhd_bom_crlf.csv": write_adyen(ADYEN_BHD, newline="\r\n", bom=True),
        "camt053_eur_v08.xml": write_camt053(CAMT_EUR_FACTS, CAMT_EUR, version="001.08"),
        "camt053_eur_v04_bom_crlf.xml": write_camt053(
            CAMT_EUR_FACTS,
            CAMT_EUR,
            version="001.04",
            newline="\r\n",
            bom=True,
        ),
        "camt053_jpy_v02.xml": write_camt053(CAMT_JPY_FACTS, CAMT_JPY, version="001.02"),
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, content in fixtures().items():
        (HERE / name).write_bytes(content)
        print(f"wrote {HERE / name} ({len(content)} bytes)")


if __name__ == "__main__":
    main()
