"""Hypothesis strategies for settlement lines each format can carry (tests/unit/test_recon_*).

Each strategy builds canonical `SettlementLine`s in the shape its format writes them (a Stripe
charge's reference is its order id, an Adyen balance movement has no fee, a bank entry has
neither fee nor batch), so `parse(write(lines))` must give them back exactly.
"""

from __future__ import annotations

import attrs
from hypothesis import strategies as st

from engine.money import AMOUNT_MINOR_MAX, Money
from engine.reconciliation import Format, LineKind, SettlementLine, StatementFacts

CURRENCIES = ("USD", "EUR", "JPY", "BHD", "GBP")
AMOUNT_MINOR_MAX_TESTED = 10**11
SECOND_MS = 1000
YEAR_2100_S = 4_102_444_800

#: References mix letters, digits, punctuation (',' and '"' force CSV quoting), symbols and
#: inner spaces, from any script; never a control character or surrounding space.
references = st.text(
    st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="\x85"),
    min_size=1,
    max_size=24,
).filter(lambda text: text == text.strip() and text != "NOTPROVIDED")
optional_references = st.none() | references
seconds_ms = st.integers(0, YEAR_2100_S).map(lambda s: s * SECOND_MS)
any_ms = st.integers(0, YEAR_2100_S * SECOND_MS)


def _signed(sign: int) -> st.SearchStrategy[int]:
    if sign > 0:
        return st.integers(1, AMOUNT_MINOR_MAX_TESTED)
    if sign < 0:
        return st.integers(-AMOUNT_MINOR_MAX_TESTED, -1)
    return st.integers(-AMOUNT_MINOR_MAX_TESTED, AMOUNT_MINOR_MAX_TESTED)


STRIPE_SIGNS = {
    LineKind.CAPTURE: 1,
    LineKind.REFUND: -1,
    LineKind.REFUND_REVERSAL: 1,
    LineKind.CHARGEBACK: -1,
    LineKind.CHARGEBACK_REVERSAL: 1,
    LineKind.FEE: 0,
    LineKind.PAYOUT: -1,
    LineKind.PAYOUT_REVERSAL: 1,
    LineKind.ADJUSTMENT: 0,
}
ADYEN_PAYMENT_SIGNS = {
    LineKind.CAPTURE: 1,
    LineKind.REFUND: -1,
    LineKind.REFUND_REVERSAL: 1,
    LineKind.CHARGEBACK: -1,
    LineKind.CHARGEBACK_REVERSAL: 1,
}
ADYEN_BALANCE_SIGNS = {LineKind.FEE: 0, LineKind.PAYOUT: -1, LineKind.ADJUSTMENT: 0}
CAMT_SIGNS = {
    LineKind.DEPOSIT: 1,
    LineKind.PAYOUT: -1,
    LineKind.PAYOUT_REVERSAL: 1,
    LineKind.DEPOSIT_REVERSAL: -1,
}


@st.composite
def stripe_lines(draw: st.DrawFn) -> SettlementLine:
    kind = draw(st.sampled_from(list(STRIPE_SIGNS)))
    currency = draw(st.sampled_from(CURRENCIES))
    gross = draw(_signed(STRIPE_SIGNS[kind]))
    fee = draw(st.integers(-(10**9), 10**9))
    reference = draw(references)
    order = reference if kind is LineKind.CAPTURE else draw(optional_references)
    return SettlementLine(
        source=Format.STRIPE,
        line_number=1,
        kind=kind,
        reference=reference,
        psp_reference=draw(references),
        order_reference=order,
        gross=Money(gross, currency),
        fee=Money(fee, currency),
        net=Money(gross - fee, currency),
        batch=draw(optional_references),
        booked_at_ms=draw(seconds_ms),
        value_at_ms=draw(st.none() | seconds_ms),
    )


@st.composite
def adyen_lines(draw: st.DrawFn) -> SettlementLine:
    kind = draw(st.sampled_from([*ADYEN_PAYMENT_SIGNS, *ADYEN_BALANCE_SIGNS]))
    currency = draw(st.sampled_from(CURRENCIES))
    reference = draw(references)
    if kind in ADYEN_PAYMENT_SIGNS:
        gross = draw(_signed(ADYEN_PAYMENT_SIGNS[kind]))
        fee = draw(st.integers(-(10**9), 10**9))
        psp_reference: str | None = draw(references)
        order = reference if kind is LineKind.CAPTURE else draw(optional_references)
    else:
        gross = draw(_signed(ADYEN_BALANCE_SIGNS[kind]))
        fee = 0
        psp_reference = draw(optional_references)
        order = None
    return SettlementLine(
        source=Format.ADYEN,
        line_number=1,
        kind=kind,
        reference=reference,
        psp_reference=psp_reference,
        order_reference=order,
        gross=Money(gross, currency),
        fee=Money(fee, currency),
        net=Money(gross - fee, currency),
        batch=draw(optional_references),
        booked_at_ms=draw(seconds_ms),
        value_at_ms=None,
    )


def camt_lines(currency: str) -> st.SearchStrategy[SettlementLine]:
    @st.composite
    def build(draw: st.DrawFn) -> SettlementLine:
        kind = draw(st.sampled_from(list(CAMT_SIGNS)))
        amount = Money(draw(_signed(CAMT_SIGNS[kind])), currency)
        return SettlementLine(
            source=Format.CAMT053,
            line_number=1,
            kind=kind,
            reference=draw(references),
            psp_reference=draw(optional_references),
            order_reference=None,
            gross=amount,
            fee=Money.zero(currency),
            net=amount,
            batch=None,
            booked_at_ms=draw(any_ms),
            value_at_ms=draw(st.none() | any_ms),
        )

    return build()


@st.composite
def statements(draw: st.DrawFn) -> tuple[StatementFacts, list[SettlementLine]]:
    """A statement and its entries, the closing balance their sum."""
    currency = draw(st.sampled_from(CURRENCIES))
    lines = draw(
        st.lists(
            camt_lines(currency),
            max_size=8,
            unique_by=lambda line: line.psp_reference or object(),
        )
    )
    opening = draw(st.integers(-AMOUNT_MINOR_MAX_TESTED, AMOUNT_MINOR_MAX_TESTED))
    closing = opening + sum(line.net.minor for line in lines)
    assert abs(closing) < AMOUNT_MINOR_MAX
    facts = StatementFacts(
        statement_id=draw(references),
        account=draw(
            st.sampled_from(["DE89370400440532013000", "GB33BUKB20201555555555"]) | references
        ),
        currency=currency,
        opening=Money(opening, currency),
        closing=Money(closing, currency),
        created_at_ms=draw(st.none() | any_ms),
        entries_count=len(lines),
    )
    return facts, lines


def numbered(lines: list[SettlementLine], first: int = 2) -> list[SettlementLine]:
    """`lines` as a one-line-per-row CSV parser numbers them (the header is line 1)."""
    return [attrs.evolve(line, line_number=first + i) for i, line in enumerate(lines)]


def unnumbered(lines: tuple[SettlementLine, ...] | list[SettlementLine]) -> list[SettlementLine]:
    return [attrs.evolve(line, line_number=1) for line in lines]


@st.composite
def any_lines(draw: st.DrawFn, currency: str | None = None) -> SettlementLine:
    """A valid canonical line of any kind, sign and shape: some a format cannot carry."""
    code = currency or draw(st.sampled_from(CURRENCIES))
    gross = draw(_signed(0))
    fee = draw(st.sampled_from([0, 0, draw(_signed(0))]))
    reference = draw(references)
    return SettlementLine(
        source=Format.STRIPE,
        line_number=1,
        kind=draw(st.sampled_from(list(LineKind))),
        reference=reference,
        psp_reference=draw(optional_references),
        order_reference=draw(st.sampled_from([None, reference]) | optional_references),
        gross=Money(gross, code),
        fee=Money(fee, code),
        net=Money(gross - fee, code),
        batch=draw(st.none() | references),
        booked_at_ms=draw(seconds_ms),
        value_at_ms=draw(st.none() | seconds_ms),
    )
